"""On a CUDA device (run with `-m gpu`): joint training in fp32 and bf16 gives finite losses, and the
bf16 model's reconstructions stay close to the fp32 model's after the same steps."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from lrlivae.nn.model import build_discriminator, build_model
from lrlivae.train.loop import CheckpointSpec, TrainData, Trainer, TrainSettings
from tests.test_train_steps import tiny_cfg, tiny_data

pytestmark = pytest.mark.gpu


@pytest.fixture(autouse=True)
def _needs_cuda():
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA device")


def _train(tmp_path, precision: str):
    torch.manual_seed(0)
    faces, labels = tiny_data(64)
    cfg = tiny_cfg()
    model, disc = build_model(cfg).cuda(), build_discriminator(cfg).cuda()
    s = TrainSettings(mode="joint", steps=20, batch_size=16, n_gm=1, checkpoint_every=100, log_every=5,
                      precision=precision)
    t = Trainer(model, disc, TrainData(faces, np.arange(len(faces)), labels), s,
                CheckpointSpec(tmp_path / f"{precision}.pt", "fp"), device="cuda")
    t.run()
    return model


def test_joint_training_on_cuda_in_fp32_and_bf16(tmp_path):
    x = torch.rand(8, 3, 32, 32, device="cuda") * 2 - 1
    recs = []
    for precision in ("fp32", "bf16"):
        model = _train(tmp_path, precision).eval()
        with torch.no_grad():
            rec = model.reconstruct(x, sample=False).x_rec.float()
        assert torch.isfinite(rec).all()
        recs.append(rec)
    assert float((recs[0] - recs[1]).abs().mean()) < 0.2


def test_batches_prefetched_to_cuda_are_the_batches_fetched_on_the_spot(tmp_path):
    """The background thread's pinned-memory copies on a side stream give the very batches, on the device."""
    faces, labels = tiny_data(64)
    trainers = []
    for prefetch in (True, False):
        s = TrainSettings(mode="joint", steps=4, batch_size=16, n_gm=2, checkpoint_every=100, seed=0)
        cfg = tiny_cfg()
        t = Trainer(build_model(cfg).cuda(), build_discriminator(cfg).cuda(),
                    TrainData(faces, np.arange(len(faces)), labels), s,
                    CheckpointSpec(tmp_path / f"{prefetch}.pt", "fp"), device="cuda")
        t.prefetch = prefetch
        trainers.append(t)
    ahead, direct = trainers
    n = 0
    for step in range(4):
        ahead.step = direct.step = step
        for name in ["gm_sampler"] * 2 + ["joint_sampler"]:
            xa, ya = ahead._batch(getattr(ahead, name))
            xd, yd = direct._batch(getattr(direct, name))
            assert xa.is_cuda and xa.is_contiguous(memory_format=torch.channels_last)
            assert torch.equal(xa, xd) and torch.equal(ya, yd)
            n += 1
    assert ahead._prefetcher.hits == n - 1
    ahead._stop_prefetch()
