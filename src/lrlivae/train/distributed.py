"""Data parallelism through torch.distributed, launched with torchrun.

Every process holds a full replica. Parameters and buffers are broadcast from rank 0 at the start;
after each backward pass the gradients are averaged across processes (one all-reduce per flattened
bucket), and batch-norm / spectral-norm buffers are averaged before every checkpoint, so all ranks
hold identical weights. Works with the gloo backend on CPU and NCCL on CUDA.

    torchrun --nproc_per_node=8 -m pipeline.cli train-joint            # one machine, 8 GPUs
    torchrun --nnodes=2 --node_rank=R --nproc_per_node=8 \\
             --rdzv_backend=c10d --rdzv_endpoint=HOST:29500 -m pipeline.cli train-joint
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world > 1


def init_from_env(device: str = "auto") -> tuple[DistInfo, torch.device]:
    """Join the process group torchrun describes (WORLD_SIZE > 1), pick this process's device."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    dev = torch.device(device)
    if dev.type == "cuda":
        dev = torch.device("cuda", local if dev.index is None else dev.index)
        torch.cuda.set_device(dev)
    if world > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if dev.type == "cuda" else "gloo")
    return DistInfo(rank, world, local), dev


def broadcast_state(module: torch.nn.Module) -> None:
    """Copy rank 0's parameters and buffers to every rank."""
    if not (dist.is_available() and dist.is_initialized()):
        return
    with torch.no_grad():
        for t in list(module.parameters()) + list(module.buffers()):
            dist.broadcast(t.data, src=0)


def allreduce_grads(params, world: int) -> None:
    """Average .grad over ranks, in one flattened all-reduce."""
    if world <= 1:
        return
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)
    flat.div_(world)
    offset = 0
    for g in grads:
        n = g.numel()
        g.copy_(flat[offset : offset + n].view_as(g))
        offset += n


def average_buffers(module: torch.nn.Module, world: int) -> None:
    """Average floating-point buffers (batch-norm running statistics, spectral-norm vectors)."""
    if world <= 1:
        return
    with torch.no_grad():
        for b in module.buffers():
            if b.is_floating_point():
                dist.all_reduce(b)
                b.div_(world)


def barrier(info: DistInfo) -> None:
    if info.enabled:
        dist.barrier()


def all_finite(value: torch.Tensor, info: DistInfo) -> bool:
    """True when `value` is finite on every rank (so all ranks stop together)."""
    ok = torch.isfinite(value.detach()).all().to(torch.float32).reshape(1)
    if info.enabled:
        dist.all_reduce(ok, op=dist.ReduceOp.MIN)
    return bool(ok.item() > 0)
