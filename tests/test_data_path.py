"""The training data path: batches gathered ahead by the background thread are exactly the batches gathered
on the spot (bit-identical weights on CPU, augmentation included), checkpoints count the batches consumed
so resuming stays exact, no thread outlives a run, and the step benchmark's figures are consistent."""
from __future__ import annotations

import importlib.util
import json
import threading

import numpy as np
import pytest
import torch

from lrlivae.nn.model import build_discriminator, build_model
from lrlivae.train.checkpoint import load_checkpoint
from lrlivae.train.loop import CheckpointSpec, Hooks, TrainData, Trainer, TrainSettings
from lrlivae.train.prefetch import Prefetcher, gather
from lrlivae.train.sampler import EpochSampler
from tests.conftest import REPO
from tests.test_train_steps import C, tiny_cfg, tiny_data


def _memmapped(tmp_path, n: int = 48, seed: int = 0):
    """tiny_data's faces as the Trainer reads an aligned set: a memory-mapped uint8 .npy."""
    faces, labels = tiny_data(n, seed)
    path = tmp_path / f"faces{seed}.npy"
    np.save(path, faces)
    return np.load(path, mmap_mode="r"), labels


def _trainer(folder, faces, labels, steps, prefetch=True, mode="joint", labeled=None, log_fn=None, **settings):
    """A Trainer on the tiny config, GM-step augmentation on (it draws from the trainer's generator)."""
    torch.manual_seed(0)
    cfg = tiny_cfg()
    model, disc = build_model(cfg), build_discriminator(cfg)
    s = TrainSettings(mode=mode, steps=steps, batch_size=8, n_gm=2, log_every=1, seed=0, gm_shift=2, gm_flip=True,
                      gm_color=0.2, **{"checkpoint_every": 100, **settings})
    t = Trainer(model, disc, TrainData(faces, np.arange(len(faces)), labels, labeled), s,
                CheckpointSpec(folder / "model.pt", "fp"), hooks=Hooks(log_fn))
    t.prefetch = prefetch
    return t


def _prefetch_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("batch-prefetch")]


def _assert_same_weights(a: Trainer, b: Trainer) -> None:
    for mod_a, mod_b in ((a.model, b.model), (a.disc, b.disc)):
        sb = mod_b.state_dict()
        for k, v in mod_a.state_dict().items():
            assert torch.equal(v, sb[k]), k


def test_prefetched_batches_are_the_batches_fetched_on_the_spot(tmp_path):
    faces, labels = _memmapped(tmp_path)
    ahead = _trainer(tmp_path / "a", faces, labels, steps=5)
    direct = _trainer(tmp_path / "b", faces, labels, steps=5, prefetch=False)
    n = 0
    for step in range(5):  # the order run() takes them in: n_gm GM batches, then the joint batch
        for t in (ahead, direct):
            t.step = step
        for sampler_name in ["gm_sampler"] * ahead.s.n_gm + ["joint_sampler"]:
            xa, ya = ahead._batch(getattr(ahead, sampler_name))
            xd, yd = direct._batch(getattr(direct, sampler_name))
            assert torch.equal(xa, xd) and torch.equal(ya, yd)
            assert xa.is_contiguous(memory_format=torch.channels_last) and xa.dtype == torch.float32
            n += 1
    pf = ahead._prefetcher
    assert pf.misses == 1 and pf.hits == n - 1  # every batch but the first came from the thread
    assert ahead.gm_sampler.state_dict() == direct.gm_sampler.state_dict()
    ahead._stop_prefetch()
    assert not _prefetch_threads()


@pytest.mark.parametrize("mode", ["joint", "semi"])
def test_prefetching_trains_to_bit_identical_weights(tmp_path, mode):
    faces, labels = _memmapped(tmp_path)
    kw = {}
    if mode == "semi":  # unlabeled batches mixed with labeled ones (a second set) and GM steps on those
        l_faces, l_labels = _memmapped(tmp_path, seed=1)
        kw = {"labeled": (l_faces, np.arange(len(l_faces)), l_labels), "mix_labeled": 0.5, "semi_n_gm": 1}
        labels = np.full(len(faces), -1)
    ahead = _trainer(tmp_path / "a", faces, labels, steps=6, mode=mode, **kw)
    direct = _trainer(tmp_path / "b", faces, labels, steps=6, prefetch=False, mode=mode, **kw)
    if mode == "semi":
        assert {ahead._mixed_step_is_labeled(s) for s in range(6)} == {True, False}  # both kinds of step
    ahead.run()
    direct.run()
    _assert_same_weights(ahead, direct)
    assert torch.equal(ahead.generator.get_state(), direct.generator.get_state())  # augmentation draws in step
    assert not _prefetch_threads()


class Killed(Exception):
    pass


def test_a_killed_run_resumes_exactly_and_its_checkpoint_counts_consumed_batches(tmp_path):
    faces, labels = _memmapped(tmp_path)
    full = _trainer(tmp_path / "a", faces, labels, steps=8)
    full.run()

    def die(metrics, step):
        if step == 5:
            raise Killed

    killed = _trainer(tmp_path / "b", faces, labels, steps=8, checkpoint_every=2, log_fn=die)
    with pytest.raises(Killed):
        killed.run()  # the batch of step 6 was being gathered ahead when the run died
    assert not _prefetch_threads()
    st = load_checkpoint(tmp_path / "b/model.pt")
    # step 4: 4 x n_gm = 8 GM batches and 4 joint batches consumed (6 batches of 8 rows per epoch)
    assert st["step"] == 4
    assert st["sampler_gm"] == {"epoch": 1, "position": 2} and st["sampler_joint"] == {"epoch": 0, "position": 4}
    resumed = _trainer(tmp_path / "b", faces, labels, steps=8)
    resumed.run()
    _assert_same_weights(full, resumed)


def test_a_batch_other_than_the_one_foreseen_is_gathered_on_the_spot(tmp_path):
    faces, labels = _memmapped(tmp_path)
    labels = torch.as_tensor(labels)
    sampler = EpochSampler(np.arange(len(faces)), 8, seed=3)
    pf = Prefetcher("cpu")
    try:
        pf.ahead(sampler, faces, labels)
        assert sampler.state_dict() == {"epoch": 0, "position": 0}  # the prefetcher moved a copy
        rows = np.arange(8)  # not the sampler's next batch
        x, y = pf.take(faces, labels, rows)
        want_x, want_y = gather(faces, labels, rows, torch.device("cpu"))
        assert torch.equal(x, want_x) and torch.equal(y, want_y) and (pf.hits, pf.misses) == (0, 1)
        pf.ahead(sampler, faces, labels)
        x, _ = pf.take(faces, labels, sampler.next())
        assert pf.hits == 1
    finally:
        pf.close()


def test_evaluation_batches_are_device_sized_and_do_not_change_the_codes(tmp_path):
    from lrlivae.encode import encode_rows, eval_batch

    assert eval_batch("cpu") == 256 and eval_batch(torch.device("cuda", 0)) == 1024 and eval_batch("cuda", 7) == 7
    faces, _ = _memmapped(tmp_path, n=20)
    model = build_model(tiny_cfg())
    a, b = encode_rows(model, faces, np.arange(20)), encode_rows(model, faces, np.arange(20), batch=6)
    np.testing.assert_allclose(a.zs, b.zs, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(a.mu, b.mu, rtol=1e-5, atol=1e-6)


# ------------------------------------------------------------------------------------------ the benchmark
@pytest.fixture(scope="module")
def step_profile():
    spec = importlib.util.spec_from_file_location("step_profile", REPO / "bench/step_profile.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


TINY = {"image_size": 32, "zs_dim": 6, "zu_dim": 5, "width": 0.25, "enc_hidden": 16, "adv_hidden": 8,
        "disc_hidden": 16}


def test_step_profile_figures_are_positive_and_consistent(tmp_path, step_profile):
    sp = step_profile
    faces = sp.write_faces(tmp_path, 64, 32)
    r = sp.measure("small", "fp32", False, torch.device("cpu"), batch=4, steps=1, warmup=1, classes=C, n_gm=2,
                   faces=faces, folder=tmp_path, cfg_overrides=TINY)
    assert 0 < r["flops"]["gm"] < r["flops"]["joint"]
    for kind in ("gm", "joint"):
        k = r[kind]
        assert k["seconds_per_step"] > 0 and k["images_per_s"] * k["seconds_per_step"] == pytest.approx(4)
        assert k["achieved_tflops"] == pytest.approx(r["flops"][kind] / k["seconds_per_step"] / 1e12)
        assert k["mfu"] is None  # no peak known for a CPU
    ph = r["joint_phases"]
    assert all(ph[p] > 0 for p in ("data", "forward", "backward", "optimizer"))
    assert ph["forward"] + ph["backward"] == pytest.approx(ph["forward_backward"])
    assert 0 < ph["data_share"] < 1
    assert r["loop_prefetch"]["prefetch_hits"] == r["loop_prefetch"]["batches"] == 3  # n_gm + 1, one iteration
    assert r["loop_direct"]["prefetch_hits"] is None
    assert 0 <= r["loop_prefetch"]["data_wait_share"] < 1
    assert "spectral_norm" in r and r["estimate_320k"]["measured_hours"] > 0
    assert "peak unknown" in sp.summary(r)
    json.dumps(r)  # every figure is plain JSON
    assert not _prefetch_threads()


def test_flop_count_grows_with_the_batch_and_mfu_uses_the_peak(tmp_path, step_profile):
    sp = step_profile
    faces = sp.write_faces(tmp_path, 32, 32)
    counts = []
    for batch in (2, 4):
        t = sp.build_trainer("small", batch, torch.device("cpu"), "fp32", C, 1, faces, tmp_path, cfg_overrides=TINY)
        t.prefetch = False
        counts.append(sp.count_flops(t, *t._batch(t.joint_sampler)))
    assert counts[1]["joint"] > counts[0]["joint"] and counts[1]["gm"] > counts[0]["gm"]
    assert counts[1]["joint"] <= 2 * counts[0]["joint"]  # linear in the batch plus a batch-free part
    r = sp.rates(96, 5e12, 0.05, 1e15)
    assert r["achieved_tflops"] == pytest.approx(100) and r["mfu"] == pytest.approx(0.1)
    assert sp.device_peak(torch.device("cpu"), "bf16", peak_tflops=10)[0] == 10e12
    # 1 iteration = n_gm GM steps + 1 joint step; 3.6e15 FLOP at 1e15 FLOP/s x 1.0 -> 1 hour per 1000
    assert sp.flop_estimate_hours(1e15, 0.6e15, 3, 1e15, utilisation=1.0, iterations=1000) == pytest.approx(1.0)


@pytest.mark.slow
def test_compiled_training_matches_uncompiled(tmp_path):
    """TrainSettings.compile: the same losses and (nearly) the same weights after a few steps (CPU, inductor)."""
    faces, labels = _memmapped(tmp_path)
    logs = {}
    trainers = {}
    for comp in (False, True):
        t = _trainer(tmp_path / str(comp), faces, labels, steps=3, compile=comp)
        logs[comp] = []
        t.log_fn = lambda m, s, out=logs[comp]: out.append(m)
        t.run()
        trainers[comp] = t
    for a, b in zip(logs[False], logs[True]):
        for k, v in a.items():
            if k.startswith("loss/"):
                assert np.isfinite(b[k]) and b[k] == pytest.approx(v, rel=1e-3, abs=1e-4), k
    sb = trainers[True].model.state_dict()
    assert list(sb) == list(trainers[False].model.state_dict())  # checkpoints keep their names
    for k, v in trainers[False].model.state_dict().items():
        torch.testing.assert_close(sb[k], v, rtol=1e-3, atol=1e-4, msg=k)
