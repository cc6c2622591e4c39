"""Semi-supervised fine-tuning (Sec. 3.6): unlabeled batches use the ambiguous Gaussian of Eq. 11 and
never touch label-dependent losses; the stage resumes; swap and verification measurements."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

from lrlivae.data.aligned import AlignedWriter
from lrlivae.evaluate.swap import swap_grid, verification_auc
from lrlivae.nn.model import build_discriminator, build_model
from lrlivae.train.checkpoint import load_checkpoint
from lrlivae.train.loop import CheckpointSpec, Hooks, TrainData, Trainer, TrainSettings
from lrlivae.train.steps import LossWeights, joint_forward, joint_step
from pipeline.cli import app
from tests.conftest import write_params
from tests.test_train_steps import Killed, tiny_cfg, tiny_data
from tests.test_training_stages import make_aligned, train_params


def test_unlabeled_batch_uses_eq11_and_no_label_terms(monkeypatch):
    torch.manual_seed(0)
    cfg = tiny_cfg()
    model, disc = build_model(cfg), build_discriminator(cfg)
    with torch.no_grad():
        model.prior.means.normal_()
        model.prior.logvar_raw.uniform_(-1, 1)
    seen = {}
    real_forward = disc.forward

    def spy(x, y=None):
        seen["y"] = y
        return real_forward(x, y)

    monkeypatch.setattr(disc, "forward", spy)
    x = torch.rand(6, 3, 32, 32) * 2 - 1
    t = joint_forward(model, disc, x, None, LossWeights(), torch.Generator().manual_seed(1))
    assert "adv_e" not in t and "adv_c" not in t
    assert seen["y"] is None  # the discriminator's unconditional part
    # L_lkd against Eq. 11 computed directly from the mixture, in float64
    mu = model.prior.means.detach().double()
    var = model.prior.variances.detach().double()
    mu_t = mu.mean(0)
    var_t = var.mean(0) + (mu**2).mean(0) - mu_t**2
    zs = model.enc_s(x).detach().double()
    nll = 0.5 * (np.log(2 * np.pi) + var_t.log() + (zs - mu_t) ** 2 / var_t)
    torch.testing.assert_close(t["lkd"].double(), nll.sum(1).mean(), rtol=1e-4, atol=1e-4)
    # gradients: none to the adversarial classifier or the prior
    opt = torch.optim.SGD(model.parameters(), lr=0.0)
    opt_d = torch.optim.SGD(disc.parameters(), lr=0.0)
    _, scalars = joint_step(model, disc, opt, opt_d, x, None, LossWeights(), torch.Generator().manual_seed(1))
    assert all(p.grad is None for p in model.adv.parameters())
    assert model.prior.means.grad is None and model.prior.logvar_raw.grad is None
    assert all(p.grad is not None for p in model.enc_s.parameters())
    assert not any(k.startswith("loss/joint/adv") for k in scalars)


def test_semi_mode_never_reads_labels_and_resumes(tmp_path):
    faces, labels = tiny_data()
    poisoned = np.full(len(faces), 10**6)  # any read of these labels would fail

    def trainer(path, log_fn=None):
        torch.manual_seed(0)
        cfg = tiny_cfg()
        s = TrainSettings(mode="semi", steps=6, batch_size=8, checkpoint_every=2, log_every=1, seed=0)
        return Trainer(build_model(cfg), build_discriminator(cfg), TrainData(faces, np.arange(len(faces)), poisoned), s,
                       CheckpointSpec(path / "model.pt", "fp"), hooks=Hooks(log_fn))

    full = trainer(tmp_path / "a")
    full.run()

    def die(m, step):
        if step == 3:
            raise Killed

    with pytest.raises(Killed):
        trainer(tmp_path / "b", die).run()
    resumed = trainer(tmp_path / "b")
    resumed.run()
    for k, v in full.model.state_dict().items():
        torch.testing.assert_close(v, resumed.model.state_dict()[k], rtol=0, atol=0, msg=k)


def test_verification_auc_and_swap_grid_geometry():
    ids = np.repeat(np.arange(4), 5)
    perfect = np.eye(4)[ids] + 0.01 * np.random.default_rng(0).normal(size=(20, 4))
    assert verification_auc(perfect, ids) == pytest.approx(1.0)
    random = np.random.default_rng(1).normal(size=(400, 8))
    assert abs(verification_auc(random, np.repeat(np.arange(20), 20)) - 0.5) < 0.05
    torch.manual_seed(0)
    cfg = tiny_cfg()
    model = build_model(cfg)
    faces = np.random.default_rng(0).integers(0, 255, size=(10, 32, 32, 3), dtype=np.uint8)
    grid = swap_grid(model, faces, np.array([0, 1, 2]), np.array([3, 4]))
    assert grid.shape == (4 * 34 + 2, 3 * 34 + 2, 3)
    np.testing.assert_array_equal(grid[2:34, 36:68], faces[3])  # first row: the z_u sources
    np.testing.assert_array_equal(grid[36:68, 2:34], faces[0])  # first column: the z_s sources


def make_unlabeled(root, n_id=3, per_id=6, seed=1):
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    w = AlignedWriter(root / "faces.npy", capacity=n_id * per_id, size=64)
    rows = []
    for i in range(n_id):
        for k in range(per_id):
            w.append(np.clip(rng.normal(50 + 60 * i, 25, size=(64, 64, 3)), 0, 255).astype(np.uint8))
            rows.append({"path": f"u{i}/{k}.jpg", "identity": "", "true_identity": f"id_{100 + i:04d}",
                         "split": "test" if k < 2 else "train"})
    w.close()
    pd.DataFrame(rows).to_parquet(root / "index.parquet")


def test_finetune_semi_stage_end_to_end(tmp_path, isolated_mlflow, monkeypatch):
    monkeypatch.chdir(tmp_path)
    make_aligned(tmp_path / "data/aligned/labeled")
    make_unlabeled(tmp_path / "data/aligned/unlabeled")
    p = train_params()
    p["finetune_semi"].update({"steps": 4, "batch_size": 8, "checkpoint_every": 2, "log_every": 2, "device": "cpu",
                               "grid_classes": 2, "grid_size": 3, "swap_pairs": 20, "predictor_epochs": 1})
    write_params(tmp_path / "params.yaml", p)
    for cmd in ("train-gm", "train-joint", "finetune-semi"):
        r = CliRunner().invoke(app, [cmd], catch_exceptions=False)
        assert r.exit_code == 0, r.output
    m = json.loads((tmp_path / "reports/finetune_semi.json").read_text())
    for key in ("before_verification_auc", "after_verification_auc", "gm_labeled_test_accuracy"):
        assert 0 <= m[key] <= 1, key
    assert (tmp_path / "reports/figures/finetune_semi/swap_after.png").exists()
    st = load_checkpoint(tmp_path / "models/finetune_semi/model.pt")
    assert st["finished"] and st["stage"] == "finetune_semi" and st["mode"] == "semi"
