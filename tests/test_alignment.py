"""Similarity alignment onto the 64x64 template, box crops, and the aligned-array writer/reader."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from lrlivae.data.aligned import AlignedFaces, AlignedWriter, to_float_tensor, to_uint8_images
from lrlivae.faces.align import (
    align_box,
    align_landmarks,
    similarity_transform,
    template,
    transform_points,
)
from pipeline.align import assign_splits
from pipeline.params import Split


def test_similarity_recovers_a_known_transform():
    rng = np.random.default_rng(0)
    src = rng.uniform(0, 100, size=(5, 2))
    theta, s, t = 0.3, 1.7, np.array([12.0, -4.0])
    rot = np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])
    dst = s * src @ rot.T + t
    m = similarity_transform(src, dst)
    np.testing.assert_allclose(transform_points(m, src), dst, atol=1e-9)


def test_similarity_rejects_degenerate_points():
    with pytest.raises(ValueError, match="degenerate"):
        similarity_transform(np.ones((5, 2)), template())
    with pytest.raises(ValueError, match="NaN"):
        similarity_transform(np.full((5, 2), np.nan), template())


def test_align_puts_landmarks_on_the_template():
    # A 300x300 image with coloured dots at rotated, scaled template positions.
    theta, s = -0.25, 3.0
    rot = np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])
    lms = s * template() @ rot.T + np.array([60.0, 90.0])
    img = np.zeros((300, 300, 3), np.uint8)
    for x, y in lms:
        img[int(round(y)) - 2 : int(round(y)) + 3, int(round(x)) - 2 : int(round(x)) + 3] = 255
    crop, m = align_landmarks(img, lms)
    assert crop.shape == (64, 64, 3) and crop.dtype == np.uint8
    for x, y in template():
        assert crop[int(round(y)), int(round(x))].max() > 100  # each dot lands on its template point


def test_huge_downscale_is_area_averaged():
    # Fine stripes average to grey instead of aliasing into black/white.
    img = np.zeros((4000, 4000, 3), np.uint8)
    img[:, ::2] = 255
    crop, _ = align_box(img, (0, 0, 4000, 4000), margin=0.0)
    assert abs(float(crop[8:56, 8:56].mean()) - 127.5) < 10 and crop[8:56, 8:56].std() < 20


def test_box_crop_centres_the_box():
    img = np.zeros((200, 200, 3), np.uint8)
    img[50:150, 80:120] = 200
    crop, m = align_box(img, (80, 50, 120, 150), margin=0.0)
    centre = transform_points(m, np.array([[100.0, 100.0]]))[0]
    np.testing.assert_allclose(centre, [32, 32])
    with pytest.raises(ValueError, match="empty box"):
        align_box(img, (10, 10, 10, 20))


def test_writer_shrinks_and_reader_round_trips(tmp_path):
    rng = np.random.default_rng(1)
    crops = rng.integers(0, 256, size=(7, 64, 64, 3), dtype=np.uint8)
    w = AlignedWriter(tmp_path / "faces.npy", capacity=20, size=64)
    for c in crops:
        w.append(c)
    w.close()
    arr = np.load(tmp_path / "faces.npy", mmap_mode="r")
    assert arr.shape == (7, 64, 64, 3)
    np.testing.assert_array_equal(arr, crops)
    assert (tmp_path / "faces.npy").stat().st_size == arr.offset + crops.nbytes
    pd.DataFrame(
        {"identity": ["b", "a", "b", "", "a", "a", "b"], "split": ["train", "train", "test", "train", "val", "test", "train"]}
    ).to_parquet(tmp_path / "index.parquet")
    ds = AlignedFaces(tmp_path)
    assert ds.identities == ["a", "b"]
    assert ds.labels().tolist() == [1, 0, 1, -1, 0, 0, 1]
    ds.labels()[:] = 5  # each caller gets its own array: the set's labels do not change under it
    assert ds.labels().tolist() == [1, 0, 1, -1, 0, 0, 1]
    assert ds.split_indices("test").tolist() == [2, 5]
    # labeled rows: the split's rows that carry one of the identities, ascending; the unlabeled row 3 never
    assert ds.labeled_rows("train").tolist() == [0, 1, 6]
    assert ds.labeled_rows("train", ["b"]).tolist() == [0, 6]
    assert ds.labels(["b"]).tolist() == [0, -1, 0, -1, -1, -1, 0]
    assert ds.labeled_rows("val", ["b"]).tolist() == []
    with pytest.raises(ValueError, match="split"):
        ds.labeled_rows("training")
    rows = np.array([5, 0, 3])
    np.testing.assert_array_equal(ds.images(rows), crops[rows])
    x = ds.batch(rows)
    assert x.shape == (3, 3, 64, 64) and float(x.min()) >= -1 and float(x.max()) <= 1
    np.testing.assert_array_equal(to_uint8_images(to_float_tensor(crops)), crops)


def test_reader_names_missing_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="faces.npy"):
        AlignedFaces(tmp_path)


def test_splits_are_deterministic_and_per_identity():
    groups = [f"id{i % 5}" for i in range(100)]
    paths = [f"img{i:03d}.jpg" for i in range(100)]
    split = Split(train=0.6, val=0.2, test=0.2)
    a = assign_splits(groups, paths, [None] * 100, split, seed=0)
    b = assign_splits(groups[::-1], paths[::-1], [None] * 100, split, seed=0)
    assert a == b[::-1]  # independent of input order
    for g in set(groups):
        labs = [s for s, gg in zip(a, groups) if gg == g]
        assert labs.count("train") == 12 and labs.count("val") == 4 and labs.count("test") == 4
    c = assign_splits(groups, paths, [None] * 100, split, seed=1)
    assert c != a
    # CIFAR keeps its official test split
    d = assign_splits(["cat"] * 6, [str(i) for i in range(6)], ["train"] * 4 + ["test"] * 2, split, seed=0)
    assert d[4:] == ["test", "test"] and set(d[:4]) <= {"train", "val"}
