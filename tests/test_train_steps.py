"""Algorithm 1's steps and the training loop: per-network gradients, resume equality, the non-finite
guard, and data-parallel training on CPU (gloo, two processes)."""
from __future__ import annotations

import os
from dataclasses import replace

import numpy as np
import pytest
import torch

from lrlivae import losses
from lrlivae.nn.config import ModelConfig
from lrlivae.nn.model import build_discriminator, build_model
from lrlivae.train import augment
from lrlivae.train.checkpoint import load_checkpoint
from lrlivae.train.loop import CheckpointSpec, Hooks, NonFiniteLoss, TrainData, Trainer, TrainSettings
from lrlivae.train.steps import LossWeights, joint_forward, joint_step

C = 4


def tiny_cfg() -> ModelConfig:
    return ModelConfig(arch="small", image_size=32, zs_dim=6, zu_dim=5, n_classes=C, width=0.25, enc_hidden=16,
                       adv_hidden=8, disc_hidden=16)


def tiny_data(n: int = 48, seed: int = 0):
    rng = np.random.default_rng(seed)
    faces = rng.integers(0, 256, size=(n, 32, 32, 3), dtype=np.uint8)
    labels = np.arange(n) % C
    return faces, labels


def _grads(params):
    return [None if p.grad is None else p.grad.clone() for p in params]


def _ref_grad(loss, params):
    g = torch.autograd.grad(loss, params, retain_graph=True, allow_unused=True)
    return [torch.zeros_like(p) if gi is None else gi for p, gi in zip(params, g)]


@pytest.mark.parametrize("gan_loss,extra", [("hinge", {}), ("bce", {}),
                                             ("hinge", {"cyc_s": 0.5, "cyc_u": 0.3, "fm": 0.2})])
def test_fused_joint_step_gives_each_network_its_own_terms(gan_loss, extra):
    torch.manual_seed(0)
    cfg = tiny_cfg()
    model, disc = build_model(cfg), build_discriminator(cfg)
    w = LossWeights(lambda_lkd=0.3, lambda_kl=0.7, lambda_rec=5.0, rec_s=2.0, rec_dec=10.0, adv_e=1.5, gan_g=0.8,
                    gan_loss=gan_loss, **extra)
    x = torch.rand(8, 3, 32, 32) * 2 - 1
    y = torch.arange(8) % C
    opt = torch.optim.SGD(model.parameters(), lr=0.0)
    opt_d = torch.optim.SGD(disc.parameters(), lr=0.0)
    # Reference: the same forward (same noise), each network's loss differentiated on its own.
    state_m, state_d = {k: v.clone() for k, v in model.state_dict().items()}, {k: v.clone() for k, v in disc.state_dict().items()}
    # scale factors of 1 (rec_s = lambda_rec = rec_dec): a plain forward whose terms we weight by hand
    plain = replace(w, rec_s=w.rec_dec, lambda_rec=w.rec_dec)
    t = joint_forward(model, disc, x, y, plain, torch.Generator().manual_seed(5))
    groups = {
        "enc_s": (list(model.enc_s.parameters()), w.rec_s * t["rec"] + w.lambda_lkd * t["lkd"]),
        "enc_u": (list(model.enc_u.parameters()), w.lambda_rec * t["rec"] + w.lambda_kl * t["kl"] + w.adv_e * t["adv_e"]),
        "dec": (list(model.dec.parameters()), w.rec_dec * t["rec"] + w.gan_g * t["g"]
                + sum(getattr(w, k) * t[k] for k in extra)),
        "adv": (list(model.adv.parameters()), t["adv_c"]),
        "disc": (list(disc.parameters()), t["d"]),
    }
    ref = {k: _ref_grad(loss, ps) for k, (ps, loss) in groups.items()}
    # The encoders get no gradient from the generator's GAN loss, nor from the decoder-only terms:
    assert set(extra) <= set(t)
    for enc in ("enc_s", "enc_u"):
        for term in ["g", *extra]:
            g = torch.autograd.grad(t[term], groups[enc][0], retain_graph=True, allow_unused=True)
            assert all(gi is None or gi.abs().max() == 0 for gi in g), (enc, term)
    # Fused: rebuild the same state and run the real step.
    model.load_state_dict(state_m)
    disc.load_state_dict(state_d)
    joint_step(model, disc, opt, opt_d, x, y, w, torch.Generator().manual_seed(5))
    for k, (ps, _) in groups.items():
        for p, r in zip(ps, ref[k]):
            got = torch.zeros_like(p) if p.grad is None else p.grad
            torch.testing.assert_close(got, r, rtol=1e-4, atol=1e-6, msg=f"{k} gradient differs")
    assert model.prior.means.grad is None and model.prior.logvar_raw.grad is None  # the prior is not trained here


def test_code_cycles_read_prior_samples_through_frozen_encoders():
    """cyc_s / cyc_u: a prior sample's codes read back by Encoder^s / the mean of Encoder^u, in eval mode:
    the encoders' batch-norm statistics do not move and their training mode is restored."""
    from lrlivae.train.steps import code_cycles

    torch.manual_seed(0)
    model = build_model(tiny_cfg())
    model.train()
    x_p = torch.rand(6, 3, 32, 32) * 2 - 1
    zs_p, zu_p = torch.randn(6, 6), torch.randn(6, 5)
    stats = {k: v.clone() for k, v in model.state_dict().items() if "running" in k}
    t = code_cycles(model, x_p, zs_p, zu_p, LossWeights(cyc_s=1.0, cyc_u=1.0))
    assert model.enc_s.training and model.enc_u.training
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in stats.items())
    with torch.no_grad():
        model.eval()
        want_s = (model.enc_s(x_p) - zs_p).pow(2).sum(1).mean()
        want_u = (model.enc_u(x_p)[0] - zu_p).pow(2).sum(1).mean()
    torch.testing.assert_close(t["cyc_s"], want_s)
    torch.testing.assert_close(t["cyc_u"], want_u)
    assert code_cycles(model, x_p, zs_p, zu_p, LossWeights()) == {}


def test_joint_losses_match_direct_computation():
    torch.manual_seed(1)
    cfg = tiny_cfg()
    model, disc = build_model(cfg), build_discriminator(cfg)
    w = LossWeights(gan_g=0.0)
    x = torch.rand(6, 3, 32, 32) * 2 - 1
    y = torch.arange(6) % C
    t = joint_forward(model, None, x, y, w, torch.Generator().manual_seed(2))
    zs = model.enc_s(x)
    mu, logvar = model.enc_u(x)
    kl = (0.5 * (mu**2 + logvar.exp() - 1 - logvar)).mean()
    torch.testing.assert_close(t["kl"], kl)
    var = model.prior.variances[y]
    nll = 0.5 * (np.log(2 * np.pi) + var.log() + (zs - model.prior.means[y]) ** 2 / var)
    torch.testing.assert_close(t["lkd"], nll.sum(1).mean(), rtol=1e-5, atol=1e-5)  # summed over dims
    torch.testing.assert_close(t["rec"], ((t["x_rec"] - x) ** 2).mean())
    assert "d" not in t  # gan_g = 0: no discriminator


def _trainer(tmp_path, faces, labels, steps, mode="joint", seed=0, **kw):
    torch.manual_seed(seed)
    cfg = tiny_cfg()
    model = build_model(cfg)
    disc = build_discriminator(cfg) if mode == "joint" else None
    s = TrainSettings(mode=mode, steps=steps, batch_size=8, n_gm=2, checkpoint_every=kw.pop("checkpoint_every", 2),
                      log_every=1, seed=seed, sigma_lr_decay_epochs=1.0)
    hooks = Hooks(kw.pop("log_fn", None), kw.pop("on_epoch", None))
    return Trainer(model, disc, TrainData(faces, np.arange(len(faces)), labels), s,
                   CheckpointSpec(tmp_path / "model.pt", "fp"), hooks=hooks, **kw)


class Killed(Exception):
    pass


@pytest.mark.parametrize("kill_at", [3, 5])
def test_resume_after_kill_ends_with_identical_weights(tmp_path, kill_at):
    faces, labels = tiny_data()
    full = _trainer(tmp_path / "a", faces, labels, steps=8)
    full.run()

    def die(metrics, step):
        if step == kill_at:
            raise Killed

    killed = _trainer(tmp_path / "b", faces, labels, steps=8, log_fn=die)
    with pytest.raises(Killed):
        killed.run()
    st = load_checkpoint(tmp_path / "b/model.pt")
    assert not st["finished"] and st["step"] == (kill_at // 2) * 2
    resumed = _trainer(tmp_path / "b", faces, labels, steps=8, seed=0)
    resumed.run()
    a, b = full.model.state_dict(), resumed.model.state_dict()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=0, msg=k)
    for k, v in full.disc.state_dict().items():
        torch.testing.assert_close(v, resumed.disc.state_dict()[k], rtol=0, atol=0, msg=k)
    assert load_checkpoint(tmp_path / "b/model.pt")["finished"]


def test_other_fingerprint_starts_over(tmp_path):
    faces, labels = tiny_data()
    t = _trainer(tmp_path, faces, labels, steps=4, mode="gm", log_fn=lambda m, s: (_ for _ in ()).throw(Killed) if s == 3 else None)
    with pytest.raises(Killed):
        t.run()
    t2 = _trainer(tmp_path, faces, labels, steps=4, mode="gm")
    t2.fingerprint = "other"
    assert not t2.try_resume()


def test_non_finite_loss_stops_and_keeps_last_good_checkpoint(tmp_path):
    faces, labels = tiny_data()

    def poison(metrics, step):
        if step == 3:  # after the step-2 checkpoint, corrupt the decoder
            with torch.no_grad():
                next(t.model.dec.parameters()).fill_(float("nan"))

    t = _trainer(tmp_path, faces, labels, steps=8, log_fn=poison)
    with pytest.raises(NonFiniteLoss, match=r"non-finite loss/joint/\w+ at step 4.*step 2\) is kept"):
        t.run()
    st = load_checkpoint(tmp_path / "model.pt")
    assert st["step"] == 2 and not st["finished"]
    assert all(torch.isfinite(v).all() for v in st["model"].values() if v.is_floating_point())


def test_sigma_learning_rate_decays_after_the_set_epochs(tmp_path):
    faces, labels = tiny_data()
    seen = []
    t = _trainer(tmp_path, faces, labels, steps=14, mode="gm", log_fn=lambda m, s: seen.append((m["epoch"], m["lr/gm_sigma"])))
    t.run()  # 48 rows / batch 8 = 6 batches per epoch; decay after 1 epoch
    assert seen[0][1] == pytest.approx(5e-4)
    assert seen[-1][1] == pytest.approx(5e-6)


def _ddp_worker(rank, world, tmp, port):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world),
                      LOCAL_RANK=str(rank))
    from lrlivae.train import distributed as ddp

    torch.set_num_threads(1)
    info, device = ddp.init_from_env("cpu")
    faces, labels = tiny_data()
    torch.manual_seed(100 + rank)  # different initial weights per rank: the broadcast must fix that
    cfg = tiny_cfg()
    model, disc = build_model(cfg), build_discriminator(cfg)
    s = TrainSettings(mode="joint", steps=3, batch_size=4, n_gm=1, checkpoint_every=100, log_every=1, seed=0)
    tr = Trainer(model, disc, TrainData(faces, np.arange(len(faces)), labels), s,
                 CheckpointSpec(tmp / f"ckpt{rank}.pt", "fp"), dist=info)
    tr.run()
    torch.save({k: v.clone() for k, v in model.state_dict().items()}, tmp / f"rank{rank}.pt")
    torch.distributed.destroy_process_group()


def test_data_parallel_ranks_hold_identical_weights(tmp_path):
    import torch.multiprocessing as mp

    from tests.conftest import closed_port

    mp.spawn(_ddp_worker, args=(2, tmp_path, closed_port()), nprocs=2, join=True)
    a, b = torch.load(tmp_path / "rank0.pt"), torch.load(tmp_path / "rank1.pt")
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=0, msg=k)
    assert (tmp_path / "ckpt0.pt").exists() and not (tmp_path / "ckpt1.pt").exists()  # rank 0 writes


def test_gm_shift_translates_the_batch(tmp_path):
    faces, labels = tiny_data()
    t = _trainer(tmp_path, faces, labels, steps=1, mode="gm")
    x = torch.arange(2 * 3 * 32 * 32, dtype=torch.float32).reshape(2, 3, 32, 32)
    assert torch.equal(augment.shift(x, t.s.gm_shift, t.generator), x)  # gm_shift = 0: unchanged
    t.s.gm_shift = 3
    y = augment.shift(x, t.s.gm_shift, t.generator)
    assert y.shape == x.shape
    dy, dx = [(i, j) for i in range(-3, 4) for j in range(-3, 4)
              if torch.equal(y[:, :, 4:28, 4:28], x[:, :, 4 + i : 28 + i, 4 + j : 28 + j])][0]
    assert max(abs(dy), abs(dx)) <= 3


def test_gm_flip_mirrors_about_half_the_images(tmp_path):
    faces, labels = tiny_data()
    t = _trainer(tmp_path, faces, labels, steps=1, mode="gm")
    x = torch.randn(200, 3, 8, 8)
    assert torch.equal(augment.flip(x, t.s.gm_flip, t.generator), x)  # gm_flip off: unchanged
    t.s.gm_flip = True
    y = augment.flip(x, t.s.gm_flip, t.generator)
    mirrored = torch.tensor([torch.equal(y[i], x[i].flip(-1)) for i in range(len(x))])
    kept = torch.tensor([torch.equal(y[i], x[i]) for i in range(len(x))])
    assert bool((mirrored | kept).all())  # every image is either itself or its mirror
    assert 70 < int(mirrored.sum()) < 130  # about half of them mirrored


def test_gm_color_scales_each_images_light_within_its_range(tmp_path):
    faces, labels = tiny_data()
    t = _trainer(tmp_path, faces, labels, steps=1, mode="gm")
    x = torch.rand(300, 3, 8, 8) * 1.2 - 0.9  # pixels in [-0.9, 0.3]: no clipping at gain <= 1.44
    assert torch.equal(augment.color(x, t.s.gm_color, t.generator), x)  # gm_color 0: unchanged
    t.s.gm_color = 0.2
    y = augment.color(x, t.s.gm_color, t.generator)
    gain = ((y + 1) / (x + 1)).flatten(2)  # (B, 3, pixels): one gain per image and channel
    torch.testing.assert_close(gain, gain[:, :, :1].expand_as(gain), rtol=1e-4, atol=1e-4)
    g = gain[:, :, 0]
    b = g[:, 1]  # green carries the brightness alone
    t_ = g[:, 0] / b - 1
    torch.testing.assert_close(g[:, 2] / b, 1 - t_, rtol=1e-4, atol=1e-4)  # blue moves opposite to red
    assert 0.8 - 1e-5 <= float(b.min()) and float(b.max()) <= 1.2 + 1e-5 and float(b.std()) > 0.08
    assert float(t_.abs().max()) <= 0.2 + 1e-4 and float(t_.std()) > 0.08
    assert float(augment.color(torch.ones(4, 3, 2, 2), t.s.gm_color, t.generator).max()) <= 1.0  # clipped to the pixel range


def test_adversary_reads_the_mean_of_z_u_when_asked():
    torch.manual_seed(3)
    cfg = tiny_cfg()
    model = build_model(cfg)
    x = torch.rand(6, 3, 32, 32) * 2 - 1
    y = torch.arange(6) % C
    mean_w = LossWeights(gan_g=0.0, adv_input="mean")
    # reading mu_u, the adversary's losses do not depend on the sampling noise; reading z_u they do
    a = joint_forward(model, None, x, y, mean_w, torch.Generator().manual_seed(1))
    b = joint_forward(model, None, x, y, mean_w, torch.Generator().manual_seed(2))
    torch.testing.assert_close(a["adv_c"], b["adv_c"])
    torch.testing.assert_close(a["adv_c"], losses.adv_classifier_loss(model.adv(model.enc_u(x)[0]), y))
    s1 = joint_forward(model, None, x, y, LossWeights(gan_g=0.0), torch.Generator().manual_seed(1))
    s2 = joint_forward(model, None, x, y, LossWeights(gan_g=0.0), torch.Generator().manual_seed(2))
    assert not torch.allclose(s1["adv_c"], s2["adv_c"])


def test_epoch_callback_runs_at_epoch_ends_at_most_max_times(tmp_path):
    """A set of two batches has an epoch end every other step: 100 GM steps call on_epoch at most
    MAX_EPOCH_CALLS times (each at an epoch end), and once at the last step."""
    from lrlivae.train.loop import MAX_EPOCH_CALLS

    faces, labels = tiny_data(16)
    calls = []
    t = _trainer(tmp_path, faces, labels, 100, mode="gm", checkpoint_every=1000,
                 on_epoch=lambda tr, epoch: calls.append((tr.step, tr.gm_sampler.epoch_progress)))
    t.run()
    steps = [s for s, _ in calls]
    assert steps[-1] == 100 and len(calls) <= MAX_EPOCH_CALLS + 1
    inner = steps[:-1]  # the last step is always called
    assert all(b - a >= 100 // MAX_EPOCH_CALLS for a, b in zip(inner, inner[1:]))
    assert all(s % 2 == 0 for s in steps)  # epoch ends of a two-batch set



def _match_trainer(path, faces, labels, steps=8, match=0.5, mode="renorm", **kw):
    torch.manual_seed(0)
    cfg = tiny_cfg()
    model, disc = build_model(cfg), build_discriminator(cfg)
    s = TrainSettings(mode="joint", steps=steps, batch_size=8, n_gm=1, checkpoint_every=2, log_every=1, seed=0,
                      dec_bn_refresh=2, dec_bn_match=match, dec_bn_match_mode=mode)
    return Trainer(model, disc, TrainData(faces, np.arange(len(faces)), labels), s,
                   CheckpointSpec(path / "model.pt", "fp"), hooks=Hooks(kw.pop("log_fn", None)), **kw)


def _dec_stats(model) -> list[torch.Tensor]:
    return [b.clone() for n, b in model.dec.named_buffers() if n.endswith(("running_mean", "running_var",
                                                                           "rec_mean", "rec_var"))]


@pytest.mark.parametrize("mode", ["renorm", "fixed"])
def test_decoder_trained_on_the_statistics_of_use_gives_users_what_training_saw(tmp_path, mode):
    """dec_bn_match: for the last steps the decoder's batch norms give in training what they give in use,
    from statistics refreshed at the switch (fixed: they stay; renorm: they follow the batches); training
    goes on, no refresh at the end replaces them, and the protocol's train/eval gap (training mode as
    training ran) is 0, where the same decoder on batch statistics differs."""
    from lrlivae.evaluate.realism import train_eval_gap
    from lrlivae.nn.decoder import decoder_statistics, set_decoder_statistics

    faces, labels = tiny_data()
    seen = {}

    def watch(metrics, step):
        if step == 5:  # the switch is before step 5 (8 steps, the last half)
            seen["mode"] = decoder_statistics(t.model)
            seen["stats"] = _dec_stats(t.model)
            seen["weights"] = [p.detach().clone() for p in t.model.dec.parameters()]

    t = _match_trainer(tmp_path, faces, labels, mode=mode, log_fn=watch)
    t.run()
    assert seen["mode"] == mode and decoder_statistics(t.model) == mode
    moved = [not torch.equal(a, b) for a, b in zip(seen["stats"], _dec_stats(t.model))]
    assert (any(moved) if mode == "renorm" else not any(moved))
    assert any(not torch.equal(a, b) for a, b in zip(seen["weights"], t.model.dec.parameters()))
    assert train_eval_gap(t.model, C, n=16) < 1e-5
    assert load_checkpoint(tmp_path / "model.pt")["model"]["dec.fc.1.stats_mode"].item() == (2 if mode == "renorm" else 1)
    # on batch statistics the same decoder's training mode differs: the setting is what makes the gap 0
    set_decoder_statistics(t.model, "batch")
    assert train_eval_gap(t.model, C, n=16) > 1e-3
    # a later stage without the setting starts on batch statistics again
    set_decoder_statistics(t.model, mode)
    later = _match_trainer(tmp_path / "later", faces, labels, match=0.0)
    later.model.load_state_dict(t.model.state_dict())
    later._start()
    assert decoder_statistics(later.model) == "batch"


@pytest.mark.parametrize("kill_at", [3, 5, 7])
def test_resume_across_the_statistics_switch_ends_with_identical_weights(tmp_path, kill_at):
    faces, labels = tiny_data()
    full = _match_trainer(tmp_path / "a", faces, labels)
    full.run()

    def die(metrics, step):
        if step == kill_at:
            raise Killed

    with pytest.raises(Killed):
        _match_trainer(tmp_path / "b", faces, labels, log_fn=die).run()
    resumed = _match_trainer(tmp_path / "b", faces, labels)
    resumed.run()
    a, b = full.model.state_dict(), resumed.model.state_dict()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=0, msg=k)
