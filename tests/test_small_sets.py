"""Small real photo sets through `align`: the source and backends chosen by what a folder holds, people with
too few photos left out and listed, a check naming every later stage the kept sets cannot feed, and the data
set on the MLflow parent run. Photos: scikit-image's LFW faces, re-framed (tests/photo_folder.py)."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("dlib")
pytest.importorskip("skimage")

from pipeline.params import load_params  # noqa: E402
from pipeline.schema import AlignParams, AlignSource  # noqa: E402
from tests.conftest import tiny_params, write_params  # noqa: E402
from tests.photo_folder import make_photo_folder  # noqa: E402


def _params(tmp_path, **over):
    return load_params(write_params(tmp_path / "params.yaml", tiny_params(**over)))


def _run_align(tmp_path, labeled, unlabeled=None, **over):
    from pipeline.align import run

    p = _params(tmp_path, **over)
    sets = {"labeled": (labeled, [])}
    if unlabeled is not None:
        sets["unlabeled"] = (unlabeled, [])
    return run(p, tmp_path / "params.yaml", sets, tmp_path / "aligned", tmp_path / "align.json",
               tmp_path / "people.csv")


def test_auto_source_and_backends_follow_what_the_folder_holds(tmp_path):
    photos = make_photo_folder(tmp_path / "photos", people=1, photos_per_person=1)
    synthetic = tmp_path / "synthetic"
    synthetic.mkdir()
    (synthetic / "meta.parquet").write_bytes(b"")
    assert AlignSource(root=str(photos)).resolved() == "imagefolder"
    assert AlignSource(root=str(synthetic)).resolved() == "synthetic"
    assert AlignSource(root=str(tmp_path / "nowhere")).resolved() == ""
    assert AlignSource(root=str(photos), source="casia").resolved() == "casia"
    cfg = AlignParams()
    assert (cfg.for_source("synthetic").detector, cfg.for_source("synthetic").landmarks) == ("opencv", "annotations")
    assert (cfg.for_source("imagefolder").detector, cfg.for_source("imagefolder").landmarks) == ("dlib_hog", "dlib")
    fixed = AlignParams(detector="opencv", landmarks="none").for_source("imagefolder")
    assert (fixed.detector, fixed.landmarks) == ("opencv", "none")


def test_people_with_too_few_photos_are_left_out_listed_and_the_parent_run_has_the_data(tmp_path, isolated_mlflow):
    import mlflow

    labeled = make_photo_folder(tmp_path / "labeled", people=3, photos_per_person=5)
    make_photo_folder(labeled, people=1, photos_per_person=2, first=3)  # one person with 2 photos
    unlabeled = make_photo_folder(tmp_path / "unlabeled", people=2, photos_per_person=5, first=10)
    m = _run_align(tmp_path, labeled, unlabeled)

    people = pd.read_csv(tmp_path / "people.csv")
    few = people[people["person"] == "person_003"].iloc[0]
    assert few["status"] == "left out: 2 accepted photos, fewer than align.min_photos = 3"
    kept = people[(people["set"] == "labeled") & (people["status"] == "kept")]
    assert len(kept) == 3 and (kept["train"] >= 2).all() and (kept["test"] >= 1).all()
    assert m["labeled_people_left_out"] == 1 and m["labeled_photos_left_out"] == 2 and m["labeled_identities"] == 3
    index = pd.read_parquet(tmp_path / "aligned/labeled/index.parquet")
    faces = np.load(tmp_path / "aligned/labeled/faces.npy")
    assert len(faces) == len(index) == m["labeled_accepted"] == 15 and "person_003" not in set(index["identity"])
    assert list(index["row"]) == list(range(len(index)))
    rejects = pd.read_csv(tmp_path / "aligned/labeled/rejects.csv")
    assert rejects["reason"].str.startswith("person person_003 left out").sum() == 2
    assert json.loads((tmp_path / "align.json").read_text())["unlabeled_train"] >= 2

    client = mlflow.MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    exp_id = client.get_experiment_by_name("lrlivae").experiment_id
    (parent,) = client.search_runs([exp_id], "tags.run_type = 'pipeline'")
    assert parent.data.tags["data.labeled.source"] == "imagefolder"
    assert parent.data.tags["data.labeled.root"] == str(labeled.resolve())
    assert len(parent.data.tags["data.labeled.digest"]) == 16
    assert parent.data.metrics["data/labeled_identities"] == 3
    assert parent.data.metrics["data/labeled_people_left_out"] == 1


def test_a_set_too_small_stops_before_training_naming_each_stage(tmp_path, isolated_mlflow):
    from pipeline.align import AlignStageError

    labeled = make_photo_folder(tmp_path / "labeled", people=2, photos_per_person=3)
    make_photo_folder(labeled, people=1, photos_per_person=1, first=2)
    unlabeled = make_photo_folder(tmp_path / "unlabeled", people=1, photos_per_person=2, first=10)
    with pytest.raises(AlignStageError) as e:
        _run_align(tmp_path, labeled, unlabeled, **{"align.min_photos": 1})
    msg = str(e.value)
    assert "nothing was trained" in msg
    assert "evaluate, compare: no test photo for 1 labeled person(s) (person_002)" in msg
    assert "finetune_semi:" in msg and "unlabeled test photo(s)" in msg
    assert (tmp_path / "people.csv").exists()  # what was found is written before the stop


def test_headline_names_of_the_data_and_the_identity_judge():
    from pipeline.tracking_parent import headline

    got = headline("align", {"labeled_identities": 30, "labeled_rejected_no_face": 1, "seconds": 3.0})
    assert got == {"data/labeled_identities": 30.0, "data/labeled_rejected_no_face": 1.0}
    got = headline("evaluate", {"identity_judge/accuracy": 0.6, "fcd": 3.0, "identity_judge/seconds": 9.0})
    assert got == {"identity_judge/accuracy": 0.6, "fcd": 3.0}
    assert headline("evaluate_baseline", {"identity_judge/auc": 0.9}, "cvae") == {"identity_judge/auc/cvae": 0.9}
    assert headline("compare", {"label_free_identity/ours": 0.2}) == {"label_free_identity/ours": 0.2}
