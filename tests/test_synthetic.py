"""The built-in synthetic face set: determinism, metadata, landmarks, reading back, detectability."""
from __future__ import annotations

import math

import cv2
import numpy as np
import pandas as pd
import pytest

from lrlivae.data import synthetic as S
from lrlivae.records import FaceRecord, SourceListing

LM_COLS = [f"lm_{i}_{c}" for i in range(5) for c in ("x", "y")]
BOX_COLS = ["box_x0", "box_y0", "box_x1", "box_y1"]


def _files(root):
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted((root / "images").rglob("*.jpg"))}


@pytest.fixture(scope="module")
def small_set(tmp_path_factory):
    root = tmp_path_factory.mktemp("synth") / "labeled"
    meta = S.generate_set(root, n_identities=3, images_per_identity=4, seed=7, set_name="labeled", progress=False)
    return root, meta


def test_factor_tables_and_samplers_agree():
    rng = np.random.default_rng(0)
    ident, nui = S.sample_identity(rng), S.sample_nuisance(rng, (128, 160))
    assert list(ident) == list(S.IDENTITY_FACTORS)
    assert list(nui) == list(S.NUISANCE_FACTORS)
    assert not set(S.IDENTITY_FACTORS) & set(S.NUISANCE_FACTORS)
    assert S.FRAME_FACTORS <= set(S.NUISANCE_FACTORS)
    for table, values in ((S.IDENTITY_FACTORS, ident), (S.NUISANCE_FACTORS, nui)):
        for name, kind in table.items():
            assert kind in ("continuous", "discrete")
            assert isinstance(values[name], int if kind == "discrete" else float), name
    assert 1 <= sum(ident[a] for a in S.ACCESSORIES) <= 2
    assert 128 <= nui["frame_size"] <= 160


def test_render_frame_outputs():
    rng = np.random.default_rng(3)
    ident, nui = S.sample_identity(rng), S.sample_nuisance(rng)
    img, lm, box = S.render_frame(ident, nui, rng)
    n = nui["frame_size"]
    assert img.shape == (n, n, 3) and img.dtype == np.uint8
    assert lm.shape == (5, 2) and np.isfinite(lm).all()
    assert len(box) == 4 and box[0] < box[2] and box[1] < box[3]
    assert img.std() > 10  # not blank


def test_same_seed_same_bytes_and_worker_count_irrelevant(tmp_path, small_set):
    root1, meta1 = small_set
    root2 = tmp_path / "again"
    meta2 = S.generate_set(root2, n_identities=3, images_per_identity=4, seed=7, set_name="labeled",
                           workers=2, progress=False)
    pd.testing.assert_frame_equal(meta1, meta2)
    assert _files(root1) == _files(root2)
    assert (root2 / "meta.parquet").is_file() and not list(root2.glob("*.tmp"))


def test_render_is_deterministic_and_seed_dependent():
    def draw(seed):
        ident = S.sample_identities(1, seed=seed, set_name="labeled")[0]
        rng = S.frame_rng(seed, "labeled", 0, 0)
        nui = S.sample_nuisance(rng)
        return S.render_frame(ident, nui, rng)

    a, b, c = draw(1), draw(1), draw(2)
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1]) and a[2] == b[2]
    assert a[0].shape != c[0].shape or not np.array_equal(a[0], c[0])


def test_unlabeled_identities_disjoint_from_labeled(tmp_path):
    lab = S.generate_set(tmp_path / "lab", n_identities=3, images_per_identity=1, seed=0, set_name="labeled",
                         progress=False)
    unl = S.generate_set(tmp_path / "unl", n_identities=2, images_per_identity=2, seed=0, set_name="unlabeled",
                         identity_offset=3, progress=False)
    assert set(lab["identity"]) == {"id_0000", "id_0001", "id_0002"}
    assert set(unl["identity"]) == {"id_0003", "id_0004"}
    id_cols = [f"f_{k}" for k in S.IDENTITY_FACTORS]
    lab_ids = {tuple(r) for r in lab[id_cols].drop_duplicates().itertuples(index=False)}
    unl_ids = {tuple(r) for r in unl[id_cols].drop_duplicates().itertuples(index=False)}
    assert len(lab_ids) == 3 and len(unl_ids) == 2 and not lab_ids & unl_ids


def test_metadata_columns_and_landmarks(small_set):
    root, meta = small_set
    assert len(meta) == 12
    expected = {"path", "identity", *LM_COLS, *BOX_COLS}
    expected |= {f"f_{k}" for k in {**S.IDENTITY_FACTORS, **S.NUISANCE_FACTORS}}
    assert expected <= set(meta.columns)
    assert pd.read_parquet(root / "meta.parquet").equals(meta)
    for k, kind in {**S.IDENTITY_FACTORS, **S.NUISANCE_FACTORS}.items():
        assert meta[f"f_{k}"].dtype == (np.int64 if kind == "discrete" else np.float64), k
    # identity factors are constant within an identity
    for k in S.IDENTITY_FACTORS:
        assert (meta.groupby("identity")[f"f_{k}"].nunique() == 1).all(), k
    for _, row in meta.iterrows():
        assert row["path"] == f"images/{row['identity']}/{int(row['path'][-8:-4]):04d}.jpg"
        img = cv2.imread(str(root / row["path"]))
        h, w = img.shape[:2]
        assert h == w == row["f_frame_size"]
        lm = row[LM_COLS].to_numpy(float).reshape(5, 2)
        x0, y0, x1, y1 = row[BOX_COLS].to_numpy(float)
        assert (lm >= 0).all() and (lm[:, 0] < w).all() and (lm[:, 1] < h).all()
        assert (lm[:, 0] >= x0).all() and (lm[:, 0] <= x1).all() and (lm[:, 1] >= y0).all() and (lm[:, 1] <= y1).all()
        assert 0 <= x0 < x1 <= w and 0 <= y0 < y1 <= h
        # un-roll: rotate by -roll about the eye midpoint; then eyes above nose above mouth
        r = math.radians(row["f_roll"])
        rot = np.array([[math.cos(r), math.sin(r)], [-math.sin(r), math.cos(r)]])
        p = (lm - lm[:2].mean(0)) @ rot.T
        assert p[0, 0] < p[1, 0] and p[3, 0] < p[4, 0]  # left is left
        assert max(p[0, 1], p[1, 1]) < p[2, 1] < min(p[3, 1], p[4, 1])
        assert abs(p[0, 1] - p[1, 1]) < 0.15 * (p[1, 0] - p[0, 0])  # the eye line is level once un-rolled


def test_read_synthetic_round_trip(small_set):
    root, meta = small_set
    listing = S.read_synthetic(root)
    assert isinstance(listing, SourceListing) and not listing.rejects
    assert len(listing.records) == len(meta)
    rec = listing.records[5]
    row = meta.iloc[5]
    assert isinstance(rec, FaceRecord)
    assert rec.identity == row["identity"]
    assert (root / row["path"]).samefile(rec.path)
    np.testing.assert_allclose(rec.landmarks, row[LM_COLS].to_numpy(float).reshape(5, 2))
    np.testing.assert_allclose(rec.box, row[BOX_COLS].to_numpy(float))
    assert set(rec.factors) == set(S.IDENTITY_FACTORS) | set(S.NUISANCE_FACTORS)
    for k, kind in {**S.IDENTITY_FACTORS, **S.NUISANCE_FACTORS}.items():
        assert type(rec.factors[k]) is (int if kind == "discrete" else float), k
        assert rec.factors[k] == row[f"f_{k}"]


def test_read_synthetic_missing_image_is_rejected(tmp_path):
    root = tmp_path / "s"
    S.generate_set(root, n_identities=1, images_per_identity=3, seed=0, set_name="labeled", progress=False)
    (root / "images" / "id_0000" / "0001.jpg").unlink()
    listing = S.read_synthetic(root)
    assert len(listing.records) == 2
    assert len(listing.rejects) == 1 and "0001.jpg" in listing.rejects[0].path


def test_read_synthetic_errors_name_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="meta.parquet"):
        S.read_synthetic(tmp_path)
    (tmp_path / "meta.parquet").write_bytes(b"not a parquet file")
    with pytest.raises(ValueError, match="meta.parquet"):
        S.read_synthetic(tmp_path)
    pd.DataFrame({"path": ["a.jpg"], "identity": ["id_0000"]}).to_parquet(tmp_path / "meta.parquet")
    with pytest.raises(ValueError, match="lacks columns"):
        S.read_synthetic(tmp_path)


def test_haar_cascade_finds_the_faces():
    """A stock Viola-Jones detector finds the face in nearly every frame (the full acceptance figure,
    >= 95% over the default sets, is measured by bench/synth_quality.py)."""
    cascade = cv2.CascadeClassifier(cv2.data.haarcascades + "haarcascade_frontalface_default.xml")
    identities = S.sample_identities(10, seed=11, set_name="labeled")
    found = 0
    n = 40
    for j in range(n):
        rng = S.frame_rng(11, "labeled", j % 10, j)
        nui = S.sample_nuisance(rng)
        img, _, box = S.render_frame(identities[j % 10], nui, rng)
        img = S.decode_jpeg(S.encode_jpeg(img, nui["jpeg_quality"]))
        dets = cascade.detectMultiScale(cv2.cvtColor(img, cv2.COLOR_RGB2GRAY), scaleFactor=1.1, minNeighbors=4,
                                        minSize=(30, 30))
        cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
        found += any(x <= cx <= x + w and y <= cy <= y + h for x, y, w, h in dets)
    assert found / n >= 0.9, f"Haar cascade found {found}/{n} faces"
