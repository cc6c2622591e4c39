"""The toy example (Sec. 4.1, Fig. 2): data, metrics, both models' steps and losses, the figure, the stage."""
from __future__ import annotations

import copy
import json
import math

import mlflow
import numpy as np
import pytest
import torch
from scipy.stats import wasserstein_distance
from typer.testing import CliRunner

from lrlivae.baselines.losses import class_mean_feature_matching, mean_feature_matching
from lrlivae.priors import randn
from lrlivae.toy import ToyConfig, class_metrics, sample_half_circles, sliced_wasserstein, std_ratio, train_toy
from lrlivae.toy.data import real_std_y
from lrlivae.toy.figure import COLOURS, fig2
from lrlivae.toy.metrics import projection_directions
from lrlivae.toy.models import ToyCVAEGAN, ToyDiscriminator, ToyLrLiVAE
from lrlivae.toy.train import cvaegan_step
from lrlivae.train.steps import gm_step, joint_step
from pipeline.cli import app
from pipeline.params import ParamsError, load_params
from tests.conftest import tiny_params, write_params


# ------------------------------------------------------------------------------------------ data
def test_half_circles_geometry_and_noise():
    pts, y = sample_half_circles(4000, noise=0.0, seed=1)
    assert pts.shape == (12000, 2) and pts.dtype == np.float32 and np.bincount(y).tolist() == [4000] * 3
    centres = np.array([-2.2, 0.0, 2.2])[y]
    radius = np.hypot(pts[:, 0] - centres, pts[:, 1])
    np.testing.assert_allclose(radius, 1.0, atol=1e-5)  # on the unit circles ...
    assert pts[:, 1].min() >= -1e-6  # ... upper halves only
    noisy, y2 = sample_half_circles(4000, noise=0.15, seed=1)
    np.testing.assert_array_equal(y, y2)
    resid = noisy - pts  # same seed: the same angles, then the noise
    assert resid.std(axis=0) == pytest.approx([0.15, 0.15], rel=0.05)
    for c, centre in enumerate((-2.2, 0.0, 2.2)):  # E cos t = 0 on U(0, pi): the class mean x is the centre
        assert noisy[y == c, 0].mean() == pytest.approx(centre, abs=0.03)
        assert noisy[y == c, 1].std() == pytest.approx(real_std_y(0.15), rel=0.04)
    wide, _ = sample_half_circles(10, spacing=5.0, seed=0)
    assert wide[20:, 0].mean() > 3.5
    np.testing.assert_array_equal(sample_half_circles(5, seed=3)[0], sample_half_circles(5, seed=3)[0])


# ------------------------------------------------------------------------------------------ metrics
def test_std_ratio():
    a = np.random.default_rng(0).normal(size=(500, 2))
    assert std_ratio(a, a) == pytest.approx(1.0)
    assert std_ratio(a * [1.0, 2.0], a, axis=1) == pytest.approx(2.0)
    assert std_ratio(a * [1.0, 2.0], a, axis=0) == pytest.approx(1.0)


def test_sliced_wasserstein_identity_translation_and_unequal_sizes():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(400, 2))
    assert sliced_wasserstein(a, a) == pytest.approx(0.0, abs=1e-12)
    assert sliced_wasserstein(a, np.concatenate([a, a])) == pytest.approx(0.0, abs=1e-12)  # same distribution
    shift = np.array([0.6, -0.8])  # |s| = 1
    theta = projection_directions(128, 2, 0)
    exact = np.abs(shift @ theta).mean()  # each projection is shifted by <s, theta>
    assert sliced_wasserstein(a + shift, a) == pytest.approx(exact, rel=1e-9)
    assert sliced_wasserstein(a + shift, a, projections=4000) == pytest.approx(2 / math.pi, rel=0.02)
    assert sliced_wasserstein(a + 2 * shift, a) > sliced_wasserstein(a + shift, a) > 0.5
    b = rng.normal(loc=0.3, size=(250, 2))  # unequal sizes: each 1-D W1 as scipy computes it
    want = np.mean([wasserstein_distance(a @ t, b @ t) for t in theta.T])
    assert sliced_wasserstein(a, b) == pytest.approx(want, rel=1e-9)


def test_class_metrics_keys_and_real_floor():
    real, ry = sample_half_circles(500, seed=10)
    gen, gy = sample_half_circles(500, seed=11)
    m = class_metrics(gen, gy, real, ry, 3, projections=32)
    for name in ("std_ratio_y", "std_ratio_x", "swd"):
        assert name in m and all(f"{name}_class{c}" in m for c in range(3))
    assert m["std_ratio_y"] == pytest.approx(1.0, abs=0.1) and m["swd"] < 0.1
    squashed = gen * [1.0, 0.5] + [0.0, 0.3]  # y range halved: a "conservative" generator
    assert class_metrics(squashed, gy, real, ry, 3)["std_ratio_y"] == pytest.approx(0.5 * m["std_ratio_y"])


# ------------------------------------------------------------------------------------------ models and steps
def _batch(n=24, seed=0):
    pts, y = sample_half_circles(n // 3, seed=seed)
    return torch.from_numpy(pts), torch.from_numpy(y)


def test_cvaegan_step_terms_and_gradients_match_a_direct_computation():
    torch.manual_seed(0)
    cfg = ToyConfig(lambda_kl=0.7, lambda_rec=3.0, rec_dec=5.0, fm=2.0)
    model, disc = ToyCVAEGAN(3, 2), ToyDiscriminator(3)
    x, y = _batch()
    m2, d2 = copy.deepcopy(model), copy.deepcopy(disc)
    opt_g, opt_d = torch.optim.Adam(model.parameters()), torch.optim.Adam(disc.parameters())
    out = cvaegan_step(model, disc, opt_g, opt_d, x, y, cfg, torch.Generator().manual_seed(5))
    # direct computation with the same noise
    g = torch.Generator().manual_seed(5)
    mu, logvar = m2.encode(x, y)
    z = mu + torch.exp(0.5 * logvar) * randn(tuple(mu.shape), generator=g)
    x_rec = m2.decode(z, y)
    x_p = m2.decode(randn((len(x), 2), generator=g), y)
    rec, kl = ((x_rec - x) ** 2).mean(), (0.5 * (mu**2 + logvar.exp() - 1 - logvar)).mean()
    h_real, h_p = d2.features(x), d2.features(x_p)
    fm_d = 0.5 * ((h_real.mean(0) - h_p.mean(0)) ** 2).sum()
    fm_c = torch.stack([0.5 * ((h_real[y == c].mean(0) - h_p[y == c].mean(0)) ** 2).sum() for c in range(3)]).mean()
    d_loss = (torch.nn.functional.softplus(-d2(x, y)).mean() + torch.nn.functional.softplus(d2(x_rec, y)).mean()
              + torch.nn.functional.softplus(d2(x_p, y)).mean())
    for key, want in (("rec", rec), ("kl", kl), ("fm_d", fm_d), ("fm_c", fm_c), ("d", d_loss),
                      ("total", 5.0 * rec + 0.7 * kl + 2.0 * (fm_d + fm_c))):
        assert out[f"loss/cvaegan/{key}"].item() == pytest.approx(want.item(), rel=1e-5), key
    # each network gets its own terms: encoder lambda_kl KL + lambda_rec rec, generator rec_dec rec + fm FM, D L_D
    enc_loss, gen_loss = 0.7 * kl + 3.0 * rec, 5.0 * rec + 2.0 * (fm_d + fm_c)
    for net, net2, loss in ((model.enc, m2.enc, enc_loss), (model.gen, m2.gen, gen_loss), (disc, d2, d_loss)):
        want = torch.autograd.grad(loss, list(net2.parameters()), retain_graph=True)
        for p, w in zip(net.parameters(), want):
            torch.testing.assert_close(p.grad, w, rtol=1e-4, atol=1e-6)


def test_baseline_feature_matching_is_the_direct_formula():
    h_r, h_f = torch.randn(10, 4), torch.randn(7, 4)
    y_r, y_f = torch.tensor([0, 1] * 5), torch.tensor([0, 1, 0, 1, 0, 1, 1])
    assert mean_feature_matching(h_r, h_f).item() == pytest.approx(
        0.5 * ((h_r.mean(0) - h_f.mean(0)) ** 2).sum().item(), rel=1e-6)
    per = [0.5 * ((h_r[y_r == c].mean(0) - h_f[y_f == c].mean(0)) ** 2).sum() for c in (0, 1)]
    assert class_mean_feature_matching(h_r, y_r, h_f, y_f).item() == pytest.approx(np.mean([p.item() for p in per]))


def test_ours_runs_the_image_models_steps():
    torch.manual_seed(0)
    cfg = ToyConfig()
    model, disc = ToyLrLiVAE(3, 2, 2), ToyDiscriminator(3)
    x, y = _batch()
    opt_gm = torch.optim.Adam([*model.enc_s.parameters(), *model.prior.parameters()])
    _, gm = gm_step(model, opt_gm, x, y, cfg.weights())
    assert model.prior.means.grad is not None and math.isfinite(gm["loss/gm/total"].item())
    opt_g = torch.optim.Adam([p for n in ("enc_s", "enc_u", "dec", "adv") for p in getattr(model, n).parameters()])
    opt_d = torch.optim.Adam(disc.parameters())
    model.prior.zero_grad(set_to_none=True)
    _, out = joint_step(model, disc, opt_g, opt_d, x, y, cfg.weights(), torch.Generator().manual_seed(0))
    for k in ("loss/joint/rec", "loss/joint/lkd", "loss/joint/kl", "loss/joint/adv_e", "loss/joint/adv_c",
              "loss/joint/d", "loss/joint/g"):
        assert math.isfinite(out[k].item()), k
    assert out["loss/joint/rec"].item() == pytest.approx(((model.reconstruct(x) - x) ** 2).mean().item(), rel=0.5)
    assert model.prior.means.grad is None  # the prior learns in GM steps only
    assert all(p.grad is not None for p in disc.parameters())
    assert model.generate(y).shape == (len(y), 2)


@pytest.mark.parametrize("kind", ["ours", "cvaegan"])
def test_training_reduces_the_reconstruction_error(kind):
    pts, y = sample_half_circles(200, seed=0)
    cfg = ToyConfig(epochs=4, batch_size=32)
    run = train_toy(kind, pts, y, cfg, seed=0, snapshot_epochs=(1, 4), snapshot_per_class=50)
    rec = "loss/joint/rec" if kind == "ours" else "loss/cvaegan/rec"
    assert all(math.isfinite(v) for row in run.history for v in row.values())
    assert run.history[-1][rec] < run.history[0][rec]
    assert sorted(run.snapshots) == [1, 4]
    g, gy = run.snapshots[4]
    assert g.shape == (150, 2) and np.bincount(gy).tolist() == [50] * 3 and np.isfinite(g).all()
    again = train_toy(kind, pts, y, cfg, seed=0, snapshot_epochs=(4,), snapshot_per_class=50)
    np.testing.assert_array_equal(again.snapshots[4][0], g)  # deterministic in the seed


# ------------------------------------------------------------------------------------------ figure, params, stage
def test_fig2_draws_every_cell():
    pts, y = sample_half_circles(50, seed=0)
    img = fig2({"ours": {1: (pts, y), 5: (pts, y)}, "cvaegan": {1: (pts, y)}}, [1, 5], real=pts)
    assert img.ndim == 3 and img.shape[2] == 3 and img.dtype == np.uint8
    for colour in COLOURS:
        assert (img == colour).all(axis=2).sum() > 50


def test_figure_epochs_must_lie_in_the_run(tmp_path):
    p = tiny_params(**{"toy.figure_epochs": [1, 3]})
    with pytest.raises(ParamsError, match="toy: .*figure_epochs"):
        load_params(write_params(tmp_path / "params.yaml", p))


def test_toy_stage_end_to_end(tmp_path, isolated_mlflow, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_params(tmp_path / "params.yaml", tiny_params(**{"toy.seeds": [0, 1]}))
    r = CliRunner().invoke(app, ["toy"], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    m = json.loads((tmp_path / "reports/toy.json").read_text())
    for kind in ("ours", "cvaegan"):
        for name in ("std_ratio_y", "swd"):
            for suffix in ("", "_seed_std", "_seed0", "_seed1", "_class0", "_class2"):
                assert math.isfinite(m[f"{kind}_{name}{suffix}"]), f"{kind}_{name}{suffix}"
        assert m[f"{kind}_swd"] == pytest.approx(np.mean([m[f"{kind}_swd_class{c}"] for c in range(3)]))
    assert m["n_seeds"] == 2 and 0 <= m["seeds_ours_swd_lower"] <= 2 and "real_swd" in m
    report = (tmp_path / "reports/toy.md").read_text()
    assert "claim" in report and "![Fig. 2](figures/toy/fig2.png)" in report
    assert (tmp_path / "reports/figures/toy/fig2.png").exists()
    client = mlflow.MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    exp = client.get_experiment_by_name("lrlivae")
    (run,) = [r for r in client.search_runs([exp.experiment_id]) if r.data.tags["stage"] == "toy"]
    assert run.data.metrics["ours_swd"] == pytest.approx(m["ours_swd"])
    assert len(client.get_metric_history(run.info.run_id, "cvaegan/seed1/swd")) == 2  # figure epochs 1, 2
    assert run.data.params["toy.epochs"] == "2"
    assert [a.path for a in client.list_artifacts(run.info.run_id, "images")] == ["images/fig2.png"]
