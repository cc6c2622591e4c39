"""The baselines (cVAE, cGAN, cVAE-GAN): loss terms against direct computations, gradient routing,
generation, checkpoints and resume through the shared loop, and the stages end to end on tiny data."""
from __future__ import annotations

import copy
import json
import math

import mlflow
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from typer.testing import CliRunner

from lrlivae.baselines import KINDS, BaselineConfig, BaselineWeights, LabelBound, build_baseline, build_discriminator
from lrlivae.baselines import losses as bl
from lrlivae.baselines.models import disc_features
from lrlivae.baselines.steps import STEPS
from lrlivae.baselines.train import BaselineTrainer
from lrlivae.nn.config import ModelConfig
from lrlivae.train.loop import CheckpointSpec, Hooks, TrainData, TrainSettings
from pipeline.cli import app
from tests.conftest import write_params
from tests.test_training_stages import N_ID, make_aligned, train_params

C, Z, S = 3, 4, 16


def tiny_cfg(kind: str) -> BaselineConfig:
    net = ModelConfig(arch="small", image_size=S, n_classes=C, width=0.25, enc_hidden=16, disc_hidden=16,
                      zs_dim=2, zu_dim=2)
    return BaselineConfig(kind=kind, z_dim=Z, net=net)


def build(kind: str, seed: int = 0):
    torch.manual_seed(seed)
    cfg = tiny_cfg(kind)
    return build_baseline(cfg), build_discriminator(cfg)


def batch(b: int = 6, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(b, 3, S, S, generator=g) * 2 - 1, torch.arange(b) % C


def optimisers(model, disc):
    gen = [p for n, p in model.named_parameters() if not n.startswith("cls.")]
    crit = list(disc.parameters()) if disc is not None else []
    crit += list(model.cls.parameters()) if hasattr(model, "cls") else []
    return torch.optim.Adam(gen), (torch.optim.Adam(crit) if crit else None)


def grads(params):
    return [None if p.grad is None else p.grad.clone() for p in params]


def autograd(loss, params):
    return torch.autograd.grad(loss, params, retain_graph=True, allow_unused=True)


def assert_grads(actual, expected, what):
    for a, e in zip(actual, expected):
        if e is None or not e.abs().sum():
            assert a is None or torch.allclose(a, torch.zeros_like(a), atol=1e-7), what
        else:
            assert torch.allclose(a, e, rtol=1e-4, atol=1e-6), what


# ------------------------------------------------------------------------------------------ pure losses
def test_feature_matching_terms_match_loops():
    g = torch.Generator().manual_seed(0)
    f_r, f_f = torch.randn(5, 3, generator=g), torch.randn(7, 3, generator=g)
    y_r, y_f = torch.tensor([0, 0, 1, 2, 2]), torch.tensor([0, 1, 1, 1, 3, 3, 0])
    pair = np.mean([0.5 * np.sum((f_r[i].numpy() - f_f[i].numpy()) ** 2) for i in range(5)])
    assert bl.pairwise_feature_matching(f_r, f_f[:5]).item() == pytest.approx(pair, rel=1e-6)
    mean = 0.5 * np.sum((f_r.numpy().mean(0) - f_f.numpy().mean(0)) ** 2)
    assert bl.mean_feature_matching(f_r, f_f).item() == pytest.approx(mean, rel=1e-6)
    per_class = [0.5 * np.sum((f_r[y_r == c].numpy().mean(0) - f_f[y_f == c].numpy().mean(0)) ** 2)
                 for c in (0, 1)]  # classes 2 (real only) and 3 (fake only) are not in both batches
    assert bl.class_mean_feature_matching(f_r, y_r, f_f, y_f).item() == pytest.approx(np.mean(per_class), rel=1e-6)
    logits = torch.randn(5, 4, generator=g)
    ce = -np.mean([logits[i].log_softmax(0)[y_r[i]].item() for i in range(5)])
    assert bl.classifier_loss(logits, y_r).item() == pytest.approx(ce, rel=1e-6)
    # the real side is a target: no gradient reaches it
    f_r.requires_grad_(True)
    f_f.requires_grad_(True)
    bl.class_mean_feature_matching(f_r, y_r, f_f, y_f).backward()
    assert f_r.grad is None and f_f.grad is not None


# ------------------------------------------------------------------------------------------ steps
def test_cvae_step_matches_rec_plus_kl_by_hand():
    model, disc = build("cvae")
    x, y = batch()
    w = BaselineWeights(rec=10.0, kl=0.3)
    opt_g, opt_d = optimisers(model, disc)
    g = torch.Generator().manual_seed(5)
    total, s = STEPS["cvae"](model, disc, opt_g, opt_d, x, y, w, g)
    ref = copy.deepcopy(model)  # parameters are unchanged: the step only fills .grad
    mu, logvar = ref.enc(x, y)
    eps = torch.randn(mu.shape, generator=torch.Generator().manual_seed(5))
    x_rec = ref.dec.dec(F.one_hot(y, C).float(), mu + torch.exp(0.5 * logvar) * eps)
    rec = ((x - x_rec) ** 2).mean()
    kl = (0.5 * (mu ** 2 + logvar.exp() - 1 - logvar)).sum(1).mean() / Z
    assert s["loss/cvae/rec"].item() == pytest.approx(rec.item(), rel=1e-5)
    assert s["loss/cvae/kl"].item() == pytest.approx(kl.item(), rel=1e-5)
    assert total.item() == pytest.approx(10 * rec.item() + 0.3 * kl.item(), rel=1e-5)
    params = list(model.parameters())
    assert_grads(grads(params), autograd(10 * rec + 0.3 * kl, list(ref.parameters())), "cvae gradients")


def test_cgan_step_hinge_terms_with_projection_by_hand():
    model, disc = build("cgan")
    x, y = batch()
    opt_g, opt_d = optimisers(model, disc)
    ref_g, ref_d = copy.deepcopy(model), copy.deepcopy(disc)  # same spectral-norm state as before the step
    total, s = STEPS["cgan"](model, disc, opt_g, opt_d, x, y, BaselineWeights(), torch.Generator().manual_seed(3))
    z = torch.randn(6, Z, generator=torch.Generator().manual_seed(3))
    x_fake = ref_g.decode(z, y)
    both = torch.cat([x, x_fake])
    h = ref_d.act(ref_d.fc_hidden(ref_d.features(both)))  # (2B, hidden)
    yy = torch.cat([y, y])
    d = ref_d.fc_out(h).squeeze(1) + (ref_d.embed(yy) * h).sum(1)  # projection: psi(h) + <embed(y), h>
    d_real, d_fake = d[:6], d[6:]
    d_loss = F.relu(1 - d_real).mean() + F.relu(1 + d_fake).mean()
    g_loss = -d_fake.mean()
    assert s["loss/cgan/d"].item() == pytest.approx(d_loss.item(), rel=1e-5)
    assert s["loss/cgan/g"].item() == pytest.approx(g_loss.item(), rel=1e-5)
    assert total.item() == pytest.approx(g_loss.item(), rel=1e-5)
    # D sees only its hinge loss, G only its own
    assert_grads(grads(list(disc.parameters())), autograd(d_loss, list(ref_d.parameters())), "D gradients")
    assert_grads(grads(list(model.parameters())), autograd(g_loss, list(ref_g.parameters())), "G gradients")


def test_cvaegan_step_terms_and_gradient_routing_by_hand():
    model, disc = build("cvaegan")
    x, y = batch()
    w = BaselineWeights(rec=2.0, kl=0.5, fm_d=0.3, fm_c=0.2, gd=1.5, gc=0.7, gan_loss="bce")
    opt_g, opt_d = optimisers(model, disc)
    ref, ref_d = copy.deepcopy(model), copy.deepcopy(disc)
    total, s = STEPS["cvaegan"](model, disc, opt_g, opt_d, x, y, w, torch.Generator().manual_seed(9))
    g = torch.Generator().manual_seed(9)
    mu, logvar = ref.enc(x, y)
    z = mu + torch.exp(0.5 * logvar) * torch.randn(mu.shape, generator=g)
    x_f = ref.decode(z, y)
    x_p = ref.decode(torch.randn(6, Z, generator=g), y)
    logit, f_d = disc_features(ref_d, torch.cat([x, x_f, x_p]))
    ref.cls.eval()
    _, f_c = ref.cls(torch.cat([x, x_f, x_p]))  # features from running statistics
    ref.cls.train()
    c_logit, _ = ref.cls(x)
    kl = (0.5 * (mu ** 2 + logvar.exp() - 1 - logvar)).mean()
    rec = ((x - x_f) ** 2).mean()
    fm_d = 0.5 * ((f_d[:6].detach() - f_d[6:12]) ** 2).sum(1).mean()
    fm_c = 0.5 * ((f_c[:6].detach() - f_c[6:12]) ** 2).sum(1).mean()
    gd = 0.5 * ((f_d[:6].detach().mean(0) - f_d[12:].mean(0)) ** 2).sum()
    gc = torch.stack([0.5 * ((f_c[:6][y == c].detach().mean(0) - f_c[12:][y == c].mean(0)) ** 2).sum()
                      for c in range(C)]).mean()
    sig = torch.sigmoid(logit)
    d_loss = -(sig[:6].log().mean() + (1 - sig[6:12]).log().mean() + (1 - sig[12:]).log().mean())
    c_loss = -c_logit.log_softmax(1)[torch.arange(6), y].mean()
    expected = {"kl": kl, "rec": rec, "fm_d": fm_d, "fm_c": fm_c, "gd": gd, "gc": gc, "d": d_loss, "c": c_loss}
    for k, v in expected.items():
        assert s[f"loss/cvaegan/{k}"].item() == pytest.approx(v.item(), rel=1e-4, abs=1e-7), k
    l_g = 2.0 * rec + 0.3 * fm_d + 0.2 * fm_c
    assert total.item() == pytest.approx((0.5 * kl + l_g + 1.5 * gd + 0.7 * gc).item(), rel=1e-5)
    # E: kl L_KL + L_G;  G: L_G + gd L_GD + gc L_GC;  D: L_D;  C: L_C
    assert_grads(grads(list(model.enc.parameters())), autograd(0.5 * kl + l_g, list(ref.enc.parameters())), "E")
    assert_grads(grads(list(model.dec.parameters())), autograd(l_g + 1.5 * gd + 0.7 * gc, list(ref.dec.parameters())),
                 "G")
    assert_grads(grads(list(disc.parameters())), autograd(d_loss, list(ref_d.parameters())), "D")
    assert_grads(grads(list(model.cls.parameters())), autograd(c_loss, list(ref.cls.parameters())), "C")


# ------------------------------------------------------------------------------------------ models
@pytest.mark.parametrize("kind", KINDS)
def test_generation_is_class_conditional_and_in_range(kind):
    model, _ = build(kind)
    model.eval()
    g = torch.Generator().manual_seed(0)
    out = model.generate(y=2, n=5, generator=g)
    assert out.x.shape == (5, 3, S, S) and out.z.shape == (5, Z) and (out.y == 2).all()
    assert out.x.min() >= -1 and out.x.max() <= 1
    assert model.dec.dec.fc[0].in_features == C + Z  # the decoder reads concat(onehot(c), z)
    z = torch.randn(4, Z)
    zeros, ones = torch.zeros(4, dtype=torch.long), torch.ones(4, dtype=torch.long)
    a, b = model.generate(y=zeros, z=z).x, model.generate(y=ones, z=z).x
    assert not torch.allclose(a, b)  # the label changes the image
    assert torch.equal(a, model.generate(y=zeros, z=z).x)  # eval mode: deterministic
    with pytest.raises(ValueError):
        model.generate(y=C, n=1)
    if kind != "cgan":
        x, y = batch()
        rec = LabelBound(model, y).reconstruct(x)
        assert rec.x_rec.shape == x.shape and torch.equal(rec.z, rec.mu)


# ------------------------------------------------------------------------------------------ the loop
def _trainer(kind, tmp_path, steps, log_fn=None, faces=None):
    model, disc = build(kind)
    rng = np.random.default_rng(0)
    faces = rng.integers(0, 255, size=(24, S, S, 3), dtype=np.uint8) if faces is None else faces
    labels = np.arange(24) % C
    settings = TrainSettings(mode="joint", steps=steps, batch_size=6, checkpoint_every=2, log_every=1, seed=0)
    extra = {"kind": kind, "baseline_config": model.cfg.to_dict(), "identities": ["a", "b", "c"]}
    return BaselineTrainer(model, disc, TrainData(faces, np.arange(24), labels), settings, BaselineWeights(),
                           CheckpointSpec(tmp_path / "model.pt", "fp", extra), hooks=Hooks(log_fn)), faces


@pytest.mark.parametrize("kind", KINDS)
def test_trainer_runs_resumes_and_writes_a_self_describing_checkpoint(kind, tmp_path, capsys):
    from pipeline.baselines import load_baseline

    logged = []
    t, faces = _trainer(kind, tmp_path / "a", 4, log_fn=lambda m, step: logged.append(m))
    t.run()
    out = capsys.readouterr()
    progress = out.out + out.err
    assert f"{kind}: " in progress and "joint: " not in progress  # the bar names the baseline it trains
    assert len(logged) == 4 and all(math.isfinite(v) for m in logged for v in m.values())
    assert f"loss/{kind}/total" in logged[-1]
    st = torch.load(tmp_path / "a/model.pt", weights_only=True)
    assert st["finished"] and st["kind"] == kind and st["step"] == 4
    model, _, _ = load_baseline(tmp_path / "a/model.pt")
    assert not model.training and model.kind == kind
    for k, v in t.model.state_dict().items():
        assert torch.equal(model.state_dict()[k], v), k

    def die(m, step):
        if step == 3:
            raise KeyboardInterrupt  # after the checkpoint of step 2
    broken, _ = _trainer(kind, tmp_path / "b", 4, log_fn=die, faces=faces)
    with pytest.raises(KeyboardInterrupt):
        broken.run()
    resumed, _ = _trainer(kind, tmp_path / "b", 4, faces=faces)
    assert resumed.try_resume() and resumed.step == 2
    resumed, _ = _trainer(kind, tmp_path / "b", 4, faces=faces)
    resumed.run()
    for k, v in t.model.state_dict().items():
        assert torch.equal(resumed.model.state_dict()[k], v), k


# ------------------------------------------------------------------------------------------ stages
def test_baseline_stages_and_comparison_end_to_end(tmp_path, isolated_mlflow, monkeypatch):
    monkeypatch.chdir(tmp_path)
    make_aligned(tmp_path / "data/aligned/labeled")
    p = train_params()
    p["train_evaluator"] = {"epochs": 1, "batch_size": 8, "lr": 0.05, "optimizer": "sgd"}
    p["evaluate"].update({"per_class": 4, "splits": 2, "figure_classes": 2, "nuisance_factors": ["light_x"]})
    write_params(tmp_path / "params.yaml", p)
    runs = [["train-gm"], ["train-joint"], ["train-evaluator"], ["evaluate", "--model", "models/train_joint/model.pt",
                                                                  "--joint-model", "models/train_joint/model.pt"]]
    for kind in KINDS:
        runs += [["train-baseline", "--kind", kind], ["evaluate-baseline", "--kind", kind]]
    for args in runs + [["compare", "--ours-joint", "reports/evaluate_train_joint.json"]]:
        r = CliRunner().invoke(app, args, catch_exceptions=False)
        assert r.exit_code == 0, (args, r.output)
    for kind in KINDS:
        st = torch.load(tmp_path / f"models/baselines/{kind}/model.pt", weights_only=True)
        assert st["kind"] == kind and st["identities"] == [f"id_{i:04d}" for i in range(N_ID)]
        m = json.loads((tmp_path / f"reports/baselines/{kind}.json").read_text())
        assert 1.0 <= m["inception_score"] <= N_ID + 1e-6 and "fcd" in m and "intra_class_diversity" in m
        assert ("inpaint_psnr_eyes" in m) == (kind != "cgan") and ("z_probe_accuracy" in m) == (kind != "cgan")
        assert (tmp_path / f"reports/baselines/{kind}/figures/samples.png").exists()
        assert (tmp_path / f"reports/baselines/{kind}/disentanglement.csv").exists() == (kind != "cgan")
    cmp = json.loads((tmp_path / "reports/comparison.json").read_text())
    for model in ("ours", "ours_train_joint") + KINDS:
        assert f"inception_score/{model}" in cmp and f"intra_class_diversity/{model}" in cmp
    assert "inpaint_psnr_mouth/cvaegan" in cmp and "inpaint_psnr_mouth/cgan" not in cmp
    assert "label_free_nuisance/cvae" in cmp and "label_free_nuisance/ours" in cmp and "label_free_identity/cgan" not in cmp
    md = (tmp_path / "reports/comparison.md").read_text()
    assert "Inception Score" in md and "cVAE-GAN" in md and "n/a" in md
    client = mlflow.MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    exp = client.get_experiment_by_name("lrlivae")
    group = cmp["comparison"]
    tagged = client.search_runs([exp.experiment_id], filter_string=f"tags.comparison = '{group}'")
    assert sorted(r.data.tags["model"] for r in tagged) == sorted(["ours", "ours_train_joint", *KINDS, "all"])
    by_model = {r.data.tags["model"]: r for r in tagged}
    assert by_model["cvae"].data.metrics["inception_score"] == pytest.approx(cmp["inception_score/cvae"])


def test_baselines_take_their_own_decoder_depth(tmp_path):
    """baselines.common.dec_depth sets the baselines' decoder depth; left out, they share model.dec_depth."""
    from pipeline.baselines import baseline_config
    from pipeline.params import load_params

    p = load_params(write_params(tmp_path / "a.yaml", {"model": {"dec_depth": 2}, "baselines": {"common": {"dec_depth": 0}}}))
    cfg = baseline_config(p, "cvaegan", 64, 5)
    assert cfg.net.dec_depth == 0 and p.model.dec_depth == 2
    n_convs = lambda c: sum(isinstance(m, torch.nn.Conv2d) for m in build_baseline(c).modules())  # noqa: E731
    shared = baseline_config(load_params(write_params(tmp_path / "b.yaml", {"model": {"dec_depth": 2}})), "cvaegan", 64, 5)
    assert shared.net.dec_depth == 2
    assert n_convs(shared) == n_convs(cfg) + 2 * 3  # two extra conv3x3 at each of the decoder's three scales
