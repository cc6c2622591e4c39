"""Source readers: FaceScrub lists, image folders, CASIA-WebFace, CIFAR pickles, dispatch."""
from __future__ import annotations

import hashlib
import os
import pickle
import sys
import types
from pathlib import Path

import numpy as np
import pytest

from lrlivae.data.casia import read_casia
from lrlivae.data.cifar import read_cifar
from lrlivae.data.facescrub import facescrub_image_stem, read_facescrub
from lrlivae.data.imagefolder import read_imagefolder
from lrlivae.records import FaceRecord, Reject, SourceListing
from lrlivae.data.sources import SOURCE_KINDS, list_source

HEADER = "name\timage_id\tface_id\turl\tbbox\tsha256"


def _touch(path: Path, data: bytes = b"x") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


# ------------------------------------------------------------------------------------- FaceScrub


def test_facescrub_image_stem():
    assert facescrub_image_stem("Aaron Eckhart", 7) == "Aaron_Eckhart/Aaron_Eckhart_7"
    assert facescrub_image_stem("AC/DC Fan", 3) == "AC_DC_Fan/AC_DC_Fan_3"


@pytest.fixture()
def facescrub(tmp_path):
    images = tmp_path / "images"
    a = _touch(images / "Aaron_Eckhart" / "Aaron_Eckhart_1.jpg", b"one")
    b = _touch(images / "Aaron_Eckhart" / "Aaron_Eckhart_2.PNG", b"two")
    c = _touch(images / "Anne_Hathaway" / "Anne_Hathaway_10.jpeg", b"three")
    sha_a = hashlib.sha256(b"one").hexdigest()
    actors = tmp_path / "facescrub_actors.txt"
    actors.write_text(
        "\n".join(
            [
                HEADER,
                f"Aaron Eckhart\t1\t1\thttp://x/1.jpg\t10,20,110,140\t{sha_a}",
                "Aaron Eckhart\t2\t2\thttp://x/2.jpg\t0,0,50,60\t",
                "",
                "Aaron Eckhart\t3\t3\thttp://x/3.jpg\t1,2,30,40\t" + "0" * 64,  # no file
                "Aaron Eckhart\t4\t4\thttp://x/4.jpg\t1,2,30",  # 5 columns
                "Aaron Eckhart\tfour\t5\thttp://x/5.jpg\t1,2,30,40\t",  # bad image_id
                "Aaron Eckhart\t6\t6\thttp://x/6.jpg\t1,2,x,40\t",  # bad bbox
                "Aaron Eckhart\t7\t7\thttp://x/7.jpg\t50,2,30,40\t",  # empty bbox
                "Aaron Eckhart\t8\t8\thttp://x/8.jpg\t1,2,30,40\tnothex",  # bad sha
                "Aaron Eckhart\t9\t1\thttp://x/9.jpg\t1,2,30,40\t",  # duplicate face_id
            ]
        )
        + "\n"
    )
    actresses = tmp_path / "facescrub_actresses.txt"
    # Windows line ends and a different column order must also work.
    actresses.write_bytes(
        b"face_id\tname\timage_id\turl\tbbox\tsha256\r\n10\tAnne Hathaway\t1\thttp://y/1.jpg\t5,6,70,90\t\r\n"
    )
    return images, actors, actresses, (a, b, c), sha_a


def test_facescrub_records_and_rejects(facescrub):
    images, actors, actresses, (a, b, c), sha_a = facescrub
    listing = read_facescrub(images, [actors, actresses])
    assert [r.path for r in listing.records] == [str(a), str(b), str(c)]
    r0, r1, r2 = listing.records
    assert r0.identity == "Aaron Eckhart" and r0.box == (10.0, 20.0, 110.0, 140.0) and r0.sha256 == sha_a
    assert r1.sha256 is None and r1.box == (0.0, 0.0, 50.0, 60.0)
    assert r2.identity == "Anne Hathaway" and r2.box == (5.0, 6.0, 70.0, 90.0)

    reasons = {rj.path: rj.reason for rj in listing.rejects}
    missing = [rj for rj in listing.rejects if rj.reason == "missing file"]
    assert len(missing) == 1 and "Aaron_Eckhart_3" in missing[0].path
    for line in (6, 7, 8, 9, 10, 11):
        key = f"{actors}:{line}"
        assert key in reasons, (line, reasons)
        assert "facescrub_actors.txt" in reasons[key] and f"line {line}" in reasons[key]
    assert "columns" in reasons[f"{actors}:6"]
    assert "integer" in reasons[f"{actors}:7"]
    assert "bbox" in reasons[f"{actors}:8"] and "bbox" in reasons[f"{actors}:9"]
    assert "sha256" in reasons[f"{actors}:10"]
    assert "duplicate face_id 1" in reasons[f"{actors}:11"]
    assert len(listing.rejects) == 7


def test_facescrub_default_lists_found_next_to_images(facescrub):
    images, actors, actresses, _, _ = facescrub
    listing = read_facescrub(images)  # lists sit in the parent folder
    assert len(listing.records) == 3
    via_dispatch = list_source("facescrub", images, lists=[actresses])
    assert [r.identity for r in via_dispatch.records] == ["Anne Hathaway"]


def test_facescrub_missing_list_or_root_raises(tmp_path, facescrub):
    images, *_ = facescrub
    with pytest.raises(FileNotFoundError, match="nope.txt"):
        read_facescrub(images, [tmp_path / "nope.txt"])
    with pytest.raises(FileNotFoundError, match="no_images"):
        read_facescrub(tmp_path / "no_images", [])
    empty = tmp_path / "empty_root" / "imgs"
    empty.mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match="facescrub_actors.txt"):
        read_facescrub(empty)


# ---------------------------------------------------------------------------------- image folder


def _tree(root: Path) -> None:
    _touch(root / "bob" / "b.JPG")
    _touch(root / "bob" / "a.png")
    _touch(root / "bob" / "notes.txt")
    _touch(root / "bob" / ".hidden.jpg")
    _touch(root / "alice" / "z.jpeg")
    _touch(root / "alice" / "sub" / "deep.jpg")  # nested: ignored
    (root / "carol").mkdir()  # empty: skipped
    _touch(root / "dave" / "readme.md")  # no images: skipped
    _touch(root / "stray.jpg")  # not in an identity folder: ignored


def test_imagefolder_sorted_and_filtered(tmp_path):
    _tree(tmp_path)
    listing = read_imagefolder(tmp_path)
    got = [(r.identity, Path(r.path).name) for r in listing.records]
    assert got == [("alice", "z.jpeg"), ("bob", "a.png"), ("bob", "b.JPG")]
    assert listing.rejects == []
    assert list_source("imagefolder", tmp_path).records == listing.records


def test_imagefolder_missing_root(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing_root"):
        read_imagefolder(tmp_path / "missing_root")


# ----------------------------------------------------------------------------------------- CASIA


@pytest.fixture()
def casia(tmp_path):
    for i in range(10):
        for j in range(3):
            _touch(tmp_path / f"{i:07d}" / f"{j:03d}.jpg")
    (tmp_path / "0000099").mkdir()  # empty identity
    return tmp_path


def test_casia_all(casia):
    listing = read_casia(casia)
    assert len(listing.records) == 30
    assert listing.records[0].identity == "0000000"
    assert all(r.factors["true_identity"] == r.identity for r in listing.records)


def test_casia_subset_is_deterministic(casia):
    a = read_casia(casia, n_identities=4, seed=3)
    b = read_casia(casia, n_identities=4, seed=3)
    ids = sorted({r.identity for r in a.records})
    assert len(ids) == 4 and len(a.records) == 12
    assert [r.path for r in a.records] == [r.path for r in b.records]
    others = {tuple(sorted({r.identity for r in read_casia(casia, n_identities=4, seed=s).records})) for s in range(8)}
    assert len(others) > 1  # the seed matters
    with pytest.raises(ValueError, match="only 10"):
        read_casia(casia, n_identities=11)


def test_casia_drop_labels(casia):
    listing = list_source("casia", casia, n_identities=2, drop_labels=True, seed=1)
    assert len(listing.records) == 6
    assert all(r.identity == "" for r in listing.records)
    truth = {r.factors["true_identity"] for r in listing.records}
    assert len(truth) == 2
    labelled = read_casia(casia, n_identities=2, seed=1)
    assert truth == {r.identity for r in labelled.records}


# ----------------------------------------------------------------------------------------- CIFAR


def _images(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, 3072), dtype=np.uint8)


def _dump(path: Path, obj, protocol: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        pickle.dump(obj, f, protocol=protocol)


def make_cifar10(root: Path, per_batch: int = 3) -> dict[str, np.ndarray]:
    d = root / "cifar-10-batches-py"
    names = [n.encode() for n in ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")]
    _dump(d / "batches.meta", {b"label_names": names, b"num_cases_per_batch": per_batch}, 2)
    data = {}
    for i, fname in enumerate([f"data_batch_{k}" for k in range(1, 6)] + ["test_batch"]):
        x = _images(per_batch, i)
        labels = [(i + k) % 10 for k in range(per_batch)]
        # Like the original files: bytes keys; mixed protocols to cover numpy's pickling paths.
        _dump(d / fname, {b"batch_label": fname.encode(), b"labels": labels, b"data": x}, 2 if i % 2 else 5)
        data[fname] = x
    return data


def test_cifar10(tmp_path):
    data = make_cifar10(tmp_path)
    listing = read_cifar(tmp_path, "cifar10")
    assert len(listing.records) == 18 and not listing.rejects
    r = listing.records[0]
    folder = tmp_path / "cifar-10-batches-py"
    assert r.path == f"{folder / 'data_batch_1'}#0"
    assert r.identity == "airplane"
    assert r.factors == {"cifar_split": "train"}
    assert r.pixels.shape == (32, 32, 3) and r.pixels.dtype == np.uint8
    x = data["data_batch_1"][0]
    np.testing.assert_array_equal(r.pixels[..., 0].ravel(), x[:1024])  # red plane first
    np.testing.assert_array_equal(r.pixels[..., 2].ravel(), x[2048:])
    test = [q for q in listing.records if q.factors["cifar_split"] == "test"]
    assert len(test) == 3 and test[0].path.endswith("test_batch#0")
    # Given the batches folder itself, and through the dispatcher.
    assert len(read_cifar(folder, "cifar10").records) == 18
    assert len(list_source("cifar10", tmp_path, n_identities=2).records) > 0


def test_cifar10_bad_label_and_missing_batch(tmp_path):
    make_cifar10(tmp_path)
    d = tmp_path / "cifar-10-batches-py"
    _dump(d / "test_batch", {"labels": [1, 42], "data": _images(2, 9)}, 4)  # str keys work too
    listing = read_cifar(tmp_path, "cifar10")
    assert len(listing.records) == 16
    assert listing.rejects == [Reject(f"{d / 'test_batch'}#1", "label 42 out of range (0..9)")]
    os.remove(d / "data_batch_3")
    with pytest.raises(FileNotFoundError, match="data_batch_3"):
        read_cifar(tmp_path, "cifar10")


def test_cifar_refuses_code_in_pickles(tmp_path):
    make_cifar10(tmp_path)
    d = tmp_path / "cifar-10-batches-py"
    _dump(d / "batches.meta", {"label_names": [os.getcwd]}, 4)  # a callable reference
    with pytest.raises(ValueError, match="batches.meta"):
        read_cifar(tmp_path, "cifar10")


def test_cifar100(tmp_path):
    d = tmp_path / "cifar-100-python"
    fine = [f"class{i}".encode() for i in range(100)]
    _dump(d / "meta", {b"fine_label_names": fine, b"coarse_label_names": [b"c"] * 20}, 2)
    _dump(d / "train", {b"fine_labels": [5, 99], b"coarse_labels": [0, 1], b"data": _images(2, 1)}, 2)
    _dump(d / "test", {b"fine_labels": [0], b"coarse_labels": [0], b"data": _images(1, 2)}, 2)
    listing = list_source("cifar100", tmp_path)
    assert [r.identity for r in listing.records] == ["class5", "class99", "class0"]
    assert [r.factors["cifar_split"] for r in listing.records] == ["train", "train", "test"]
    with pytest.raises(FileNotFoundError):
        read_cifar(tmp_path / "nowhere", "cifar100")


# -------------------------------------------------------------------------------------- dispatch


def test_unknown_kind_names_valid_kinds(tmp_path):
    with pytest.raises(ValueError) as e:
        list_source("lfw", tmp_path)
    for k in SOURCE_KINDS:
        assert k in str(e.value)


def test_synthetic_dispatch_is_lazy(tmp_path, monkeypatch):
    calls = []

    def read_synthetic(root):
        calls.append(root)
        return SourceListing([FaceRecord(path="a.png", identity="0"), FaceRecord(path="b.png", identity="1")])

    fake = types.ModuleType("lrlivae.data.synthetic")
    fake.read_synthetic = read_synthetic
    monkeypatch.setitem(sys.modules, "lrlivae.data.synthetic", fake)
    listing = list_source("synthetic", tmp_path, drop_labels=True)
    assert calls == [tmp_path]
    assert [r.identity for r in listing.records] == ["", ""]
    assert [r.factors["true_identity"] for r in listing.records] == ["0", "1"]


def test_lists_only_for_facescrub(tmp_path):
    with pytest.raises(ValueError, match="facescrub"):
        list_source("imagefolder", tmp_path, lists=[tmp_path / "x.txt"])
