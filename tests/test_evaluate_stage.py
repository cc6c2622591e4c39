"""Stages train_evaluator and evaluate end to end on a tiny aligned set."""
from __future__ import annotations

import json

from typer.testing import CliRunner

from pipeline.cli import app
from tests.conftest import write_params
from tests.test_training_stages import make_aligned, train_params

KEYS = ("inception_score", "inception_score_std", "inception_score_real", "intra_class_diversity",
        "intra_class_diversity_real", "fcd", "zs_accuracy", "zu_probe_accuracy", "zs_probe_accuracy",
        "chance_accuracy", "inpaint_psnr_eyes", "inpaint_ssim_bottom_half", "disentanglement_gap",
        "evaluator_real_accuracy", "class_acc_recon", "class_acc_zs_prior_zu", "class_acc_mean_zs", "class_acc_prior",
        "zs_spread_ratio_median", "zs_mahalanobis_sq_mean", "zs_prior_to_code_distance", "gm_sigma_median",
        "zu_std_mean", "zu_mu_norm_mean", "zu_aggregate_var_mean")


def test_train_evaluator_and_evaluate(tmp_path, isolated_mlflow, monkeypatch):
    monkeypatch.chdir(tmp_path)
    make_aligned(tmp_path / "data/aligned/labeled")
    p = train_params()
    p["train_evaluator"] = {"epochs": 2, "batch_size": 8, "lr": 0.05, "optimizer": "sgd"}
    p["evaluate"].update({"per_class": 4, "splits": 2, "figure_classes": 2, "nuisance_factors": ["light_x"]})
    write_params(tmp_path / "params.yaml", p)
    for args in (["train-gm"], ["train-joint"], ["train-evaluator"],
                 ["evaluate", "--model", "models/train_joint/model.pt", "--joint-model", "models/train_gm/model.pt"]):
        r = CliRunner().invoke(app, args, catch_exceptions=False)
        assert r.exit_code == 0, r.output
    ev = json.loads((tmp_path / "reports/train_evaluator.json").read_text())
    assert 0 <= ev["evaluator_test_accuracy"] <= 1
    m = json.loads((tmp_path / "reports/evaluate.json").read_text())
    for k in KEYS:
        assert k in m, k
    assert 1.0 <= m["inception_score"] <= 4.0 + 1e-6  # at most the number of classes
    for k in ("class_acc_recon", "class_acc_prior", "generated_class_accuracy"):
        assert 0 <= m[k] <= 1, k
    # the second model is scored by the same protocol into its own file, and shown beside the first
    other = json.loads((tmp_path / "reports/evaluate_train_joint.json").read_text())
    assert set(KEYS) <= set(other) and other["fcd"] != m["fcd"]
    assert "| metric | scored model | train_joint |" in (tmp_path / "reports/evaluate.md").read_text()
    assert (tmp_path / "reports/evaluate.md").read_text().count("![") >= 5
    for name in ("samples", "interpolate_zs", "vary_zu", "zu_dimensions", "inpainting", "training_curves"):
        assert (tmp_path / f"reports/figures/evaluate/{name}.png").exists(), name
