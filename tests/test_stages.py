"""The synth and align stages end to end, as commands, on a shrunken copy of the real params."""
from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from typer.testing import CliRunner

from pipeline.cli import app
from pipeline.params import load_params
from tests.conftest import closed_port, copy_dvc_yaml, tiny_params, write_params


def _run(args):
    result = CliRunner().invoke(app, args, catch_exceptions=False)
    return result


@pytest.fixture(scope="module")
def synth_dir(tmp_path_factory):
    """A tiny synthetic set rendered once for the module."""
    root = tmp_path_factory.mktemp("synth")
    write_params(root / "params.yaml", tiny_params())
    copy_dvc_yaml(root)
    import os

    old = os.getcwd()
    os.chdir(root)
    os.environ["DVC_ROOT"] = str(root)
    try:
        res = _run(["synth", "--params", "params.yaml"])
        assert res.exit_code == 0, res.output
    finally:
        os.chdir(old)
        os.environ.pop("DVC_ROOT", None)
    return root


def test_synth_then_align_with_tracking_server_down(synth_dir, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DVC_ROOT", str(tmp_path))
    copy_dvc_yaml(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://127.0.0.1:{closed_port()}")
    write_params(tmp_path / "params.yaml", tiny_params())
    raw = synth_dir / "data/raw/synthetic"
    res = _run(["align", "--labeled-root", str(raw / "labeled"), "--unlabeled-root", str(raw / "unlabeled")])
    assert res.exit_code == 0, res.output
    m = json.loads((tmp_path / "reports/align.json").read_text())
    sizes = {k: v["n_identities"] * v["images_per_identity"] for k, v in tiny_params()["synth"].items()
             if k in ("labeled", "unlabeled")}
    assert m["labeled_images"] == sizes["labeled"] and m["unlabeled_images"] == sizes["unlabeled"]
    assert m["labeled_detection_rate"] >= 0.75
    for name in ("labeled", "unlabeled"):
        d = tmp_path / "data/aligned" / name
        faces = np.load(d / "faces.npy", mmap_mode="r")
        index = pd.read_parquet(d / "index.parquet")
        assert faces.dtype == np.uint8 and faces.shape[1:] == (64, 64, 3)
        assert len(faces) == len(index) == m[f"{name}_accepted"]
        assert set(index["split"]) <= {"train", "val", "test"}
        for col in ("path", "identity", "split", "box_x0", "lm_0_x", "detector", "f_yaw"):
            assert col in index.columns
        assert (d / "rejects.csv").exists() and (d / "preview.png").exists()
        assert not list((tmp_path / "data/aligned").glob(".*tmp*"))
    unl = pd.read_parquet(tmp_path / "data/aligned/unlabeled/index.parquet")
    assert (unl["identity"] == "").all() and unl["true_identity"].str.len().min() > 0
    lab = pd.read_parquet(tmp_path / "data/aligned/labeled/index.parquet")
    assert not set(unl["true_identity"]) & set(lab["identity"])
    (record,) = (tmp_path / "mlflow-pending").iterdir()  # the result waits for the server
    assert json.loads((record / "record.json").read_text())["metrics"]


def test_align_is_identical_for_any_worker_count(synth_dir, tmp_path, isolated_mlflow):
    from pipeline.align import align_set

    raw = synth_dir / "data/raw/synthetic/labeled"
    outs = []
    for workers in (1, 2):
        p = load_params(write_params(tmp_path / f"p{workers}.yaml", tiny_params(**{"align.workers": workers})))
        out = tmp_path / f"w{workers}"
        align_set("labeled", p.align.labeled, raw, [], out, p)
        outs.append(out)
    a, b = (np.load(o / "faces.npy") for o in outs)
    np.testing.assert_array_equal(a, b)
    pd.testing.assert_frame_equal(pd.read_parquet(outs[0] / "index.parquet"), pd.read_parquet(outs[1] / "index.parquet"))


def _bad_files(folder: Path) -> dict[str, str]:
    """One of each kind of bad input, in an identity folder; returns name -> expected reason word."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "empty.jpg").write_bytes(b"")
    (folder / "text.jpg").write_text("this is not an image\n")
    good = np.random.default_rng(0).integers(0, 255, size=(80, 80, 3), dtype=np.uint8)
    Image.fromarray(good).save(folder / "whole.jpg")
    data = (folder / "whole.jpg").read_bytes()
    (folder / "truncated.jpg").write_bytes(data[: len(data) // 2])
    (folder / "whole.jpg").unlink()
    Image.fromarray(good).save(folder / "noface.png")
    Image.new("CMYK", (90, 90), (10, 20, 30, 0)).save(folder / "cmyk.jpg")
    Image.new("P", (90, 90)).save(folder / "palette.png")
    Image.fromarray(np.full((70, 70), 40000, np.uint16)).save(folder / "deep16.png")
    Image.new("L", (20000, 20000), 128).save(folder / "huge.png")
    return {"empty.jpg", "text.jpg", "truncated.jpg", "noface.png", "cmyk.jpg", "palette.png", "deep16.png", "huge.png"}


def test_bad_inputs_are_rejected_not_fatal(synth_dir, tmp_path, isolated_mlflow):
    from pipeline.align import align_set

    # An identity-per-folder tree of good synthetic frames plus every kind of bad file.
    src = tmp_path / "tree"
    meta = pd.read_parquet(synth_dir / "data/raw/synthetic/labeled/meta.parquet")
    for rel, ident in zip(meta["path"], meta["identity"]):
        (src / ident).mkdir(parents=True, exist_ok=True)
        shutil.copy(synth_dir / "data/raw/synthetic/labeled" / rel, src / ident / Path(rel).name)
    bad = _bad_files(src / "id_0000")
    p = load_params(write_params(tmp_path / "p.yaml", tiny_params(**{"align.labeled.source": "imagefolder", "align.landmarks": "none"})))
    metrics = align_set("labeled", p.align.labeled, src, [], tmp_path / "out", p)
    with open(tmp_path / "out/rejects.csv") as f:
        rejects = {Path(r["path"]).name: r["reason"] for r in csv.DictReader(f)}
    assert bad <= set(rejects), rejects
    assert all(reason for reason in rejects.values())
    assert metrics["labeled_accepted"] >= 0.75 * len(meta)


def test_too_few_accepted_fails_cleanly(tmp_path, isolated_mlflow):
    from pipeline.align import AlignStageError, align_set

    src = tmp_path / "tree"
    _bad_files(src / "someone")
    p = load_params(write_params(tmp_path / "p.yaml", tiny_params(**{"align.labeled.source": "imagefolder"})))
    with pytest.raises(AlignStageError, match="min_accept_fraction"):
        align_set("labeled", p.align.labeled, src, [], tmp_path / "out", p)
    assert not (tmp_path / "out").exists()  # no half-written output under the final name
