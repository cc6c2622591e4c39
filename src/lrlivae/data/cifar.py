"""CIFAR-10 and CIFAR-100 in their "python" pickle format.

    cifar-10-batches-py/   data_batch_1 .. data_batch_5, test_batch, batches.meta (label_names)
    cifar-100-python/      train, test, meta (fine_label_names)

`root` may be that folder or the folder containing it. Each image becomes a FaceRecord whose
`pixels` holds the 32x32x3 uint8 RGB array, identity = the class name, path = "<file>#<index>" and
factors["cifar_split"] = "train" or "test".

The files are pickles; they are read with an unpickler that only admits the numpy array
reconstruction functions and plain containers, so a tampered file cannot run code. A missing,
unreadable or malformed batch file raises (the data set is incomplete); an image whose label is out
of range becomes a Reject.
"""
from __future__ import annotations

import io
import os
import pickle
from pathlib import Path
from typing import Any

import numpy as np

from lrlivae.records import FaceRecord, Reject, SourceListing

CIFAR10_DIR = "cifar-10-batches-py"
CIFAR100_DIR = "cifar-100-python"
CIFAR10_FILES = {"train": [f"data_batch_{i}" for i in range(1, 6)], "test": ["test_batch"]}
CIFAR100_FILES = {"train": ["train"], "test": ["test"]}

_ALLOWED_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy.core.numeric", "_frombuffer"),
    ("numpy._core.numeric", "_frombuffer"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("_codecs", "encode"),
    ("copy_reg", "_reconstructor"),
    ("copyreg", "_reconstructor"),
    ("__builtin__", "object"),
    ("builtins", "object"),
}


class _SafeUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in _ALLOWED_GLOBALS:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}")
        return super().find_class(module, name)


def load_pickle(path: str | os.PathLike) -> dict:
    """A CIFAR pickle as a dict with str keys (bytes keys and values of label names decoded)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"CIFAR file not found: {path}")
    try:
        data = path.read_bytes()
    except OSError as e:
        raise OSError(f"cannot read CIFAR file {path}: {e.strerror or e}") from e
    try:
        obj = _SafeUnpickler(io.BytesIO(data), encoding="bytes").load()
    except Exception as e:  # noqa: BLE001 - any unpickling failure means a corrupt file
        raise ValueError(f"CIFAR file {path} is not a readable pickle: {e}") from e
    if not isinstance(obj, dict):
        raise ValueError(f"CIFAR file {path} does not hold a dict")
    return {(k.decode("latin-1") if isinstance(k, bytes) else str(k)): v for k, v in obj.items()}


def _names(values: Any, path: Path, key: str) -> list[str]:
    if not isinstance(values, (list, tuple)):
        raise ValueError(f"CIFAR file {path}: {key} is not a list")
    return [v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v) for v in values]


def _locate(root: Path, dirname: str) -> Path:
    if not root.exists():
        raise FileNotFoundError(f"CIFAR folder not found: {root}")
    if (root / dirname).is_dir():
        return root / dirname
    return root


def read_cifar(
    root: str | os.PathLike,
    variant: str = "cifar10",
    splits: tuple[str, ...] = ("train", "test"),
) -> SourceListing:
    """Records for the images of `splits` of CIFAR-10 (variant "cifar10") or CIFAR-100 ("cifar100")."""
    if variant == "cifar10":
        folder = _locate(Path(root), CIFAR10_DIR)
        meta_path, names_key, label_key, files = folder / "batches.meta", "label_names", "labels", CIFAR10_FILES
    elif variant == "cifar100":
        folder = _locate(Path(root), CIFAR100_DIR)
        meta_path, names_key, label_key, files = folder / "meta", "fine_label_names", "fine_labels", CIFAR100_FILES
    else:
        raise ValueError(f"unknown CIFAR variant {variant!r}; expected 'cifar10' or 'cifar100'")
    for s in splits:
        if s not in files:
            raise ValueError(f"unknown CIFAR split {s!r}; expected 'train' or 'test'")

    meta = load_pickle(meta_path)
    if names_key not in meta:
        raise ValueError(f"CIFAR meta file {meta_path} has no {names_key}")
    class_names = _names(meta[names_key], meta_path, names_key)

    records: list[FaceRecord] = []
    rejects: list[Reject] = []
    for split in splits:
        for fname in files[split]:
            path = folder / fname
            batch = load_pickle(path)
            if "data" not in batch or label_key not in batch:
                raise ValueError(f"CIFAR file {path} lacks 'data' or '{label_key}'")
            data = np.asarray(batch["data"])
            labels = list(np.asarray(batch[label_key]).reshape(-1))
            if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
                raise ValueError(f"CIFAR file {path}: data must be uint8 (N, 3072), got {data.dtype} {data.shape}")
            if len(labels) != data.shape[0]:
                raise ValueError(f"CIFAR file {path}: {data.shape[0]} images but {len(labels)} labels")
            images = np.ascontiguousarray(data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))
            for i, label in enumerate(labels):
                where = f"{path}#{i}"
                label = int(label)
                if not 0 <= label < len(class_names):
                    rejects.append(Reject(where, f"label {label} out of range (0..{len(class_names) - 1})"))
                    continue
                records.append(
                    FaceRecord(
                        path=where,
                        identity=class_names[label],
                        factors={"cifar_split": split},
                        pixels=images[i],
                    )
                )
    return SourceListing(records, rejects)
