"""Stage `align`, the people of each set: those with too few accepted photos left out (their rows dropped
from the set), the people table (`reports/align_people.csv`: photos listed, accepted, per split, kept or
left out and why), and the check that what was kept can feed every later stage (`stage_problems`)."""
from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd

from lrlivae.data.aligned import FACES
from lrlivae.io import atomic_write_bytes
from lrlivae.records import FaceRecord


def _person(rec: FaceRecord) -> str:
    return str(rec.factors.get("true_identity") or rec.identity or "")


def leave_out_people(tmp: Path, index: pd.DataFrame, min_photos: int, size: int):
    """Drop the rows of people with fewer than `min_photos` accepted photos from the set in `tmp` (faces.npy
    rewritten with the rows kept, in order). Returns the index kept and {person: accepted photos} left out."""
    counts = index["identity"].value_counts()
    few = {str(p): int(n) for p, n in counts.items() if p and n < min_photos}
    if not few:
        return index, {}
    keep = ~index["identity"].isin(list(few))
    rows = np.flatnonzero(keep.to_numpy())
    faces = np.load(tmp / FACES, mmap_mode="r")
    kept_faces = np.lib.format.open_memmap(tmp / "faces.keep.npy", mode="w+", dtype=np.uint8,
                                           shape=(len(rows), size, size, 3))
    for i in range(0, len(rows), 4096):  # in chunks: a set may not fit in memory
        kept_faces[i:i + 4096] = faces[rows[i:i + 4096]]
    kept_faces.flush()
    del faces, kept_faces
    (tmp / "faces.keep.npy").replace(tmp / FACES)
    kept = index[keep].reset_index(drop=True)
    kept["row"] = np.arange(len(kept))
    return kept, few


def left_out_reason(n: int, min_photos: int) -> str:
    return f"{n} accepted photo{'s' * (n != 1)}, fewer than align.min_photos = {min_photos}"


def people_rows(set_name: str, records: list[FaceRecord], index: pd.DataFrame, left_out: dict[str, int],
                 min_photos: int) -> list[dict]:
    """One row per person of the set: photos listed, accepted, per split, kept or left out (and why)."""
    listed = Counter(_person(rec) for rec in records)
    key = "true_identity" if "true_identity" in index else "identity"
    per_split = (pd.crosstab(index[key].astype(str), index["split"]) if len(index)
                 else pd.DataFrame(columns=["train", "val", "test"]))
    rows = []
    for person in sorted(p for p in listed if p):
        counts = per_split.loc[person] if person in per_split.index else {}
        splits = {s: int(counts.get(s, 0)) for s in ("train", "val", "test")}
        n = left_out.get(person, sum(splits.values()))
        status = "kept" if n and person not in left_out else f"left out: {left_out_reason(n, min_photos)}"
        rows.append({"set": set_name, "person": person, "photos": listed[person], "accepted": n, **splits,
                     "status": status})
    return rows


# (metric, its minimum, the stages that need it, what it counts, why): what every later stage needs of the sets
_NEEDS = (
    ("labeled_identities", 2, "train_gm, train_joint, train_evaluator", "labeled person(s) kept",
     "the Gaussian-mixture prior and the classifiers need at least 2"),
    ("labeled_train", 2, "train_gm, train_joint, baselines", "labeled training photo(s)", "a batch needs at least 2"),
    ("unlabeled_train", 2, "finetune_semi", "unlabeled training photo(s)", "a batch needs at least 2"),
    ("unlabeled_test", 2, "finetune_semi", "unlabeled test photo(s)", "the swap figures and scores need at least 2"),
)


def stage_problems(metrics: dict, people: list[dict], sets: list[str]) -> list[str]:
    """What stops a later stage on these aligned sets, each naming the stage and why: checked before any
    training, so that a set too small fails here and not an hour later. Training stages need two rows per
    batch (a smaller set trains with the batches it holds); the figures need test photos of every person."""
    problems = [f"{stages}: {metrics.get(key, 0)} {what}; {why}" for key, least, stages, what, why in _NEEDS
                if key.split("_")[0] in sets and metrics.get(key, 0) < least]
    no_test = [r["person"] for r in people if r["set"] == "labeled" and r["status"] == "kept" and not r["test"]]
    if no_test:
        problems.append(f"evaluate, compare: no test photo for {len(no_test)} labeled person(s) "
                        f"({', '.join(no_test[:5])}{', ...' if len(no_test) > 5 else ''}); raise align.min_photos "
                        "or align.split.test")
    return problems


def write_people(path: Path, people: list[dict]) -> None:
    cols = ["set", "person", "photos", "accepted", "train", "val", "test", "status"]
    atomic_write_bytes(path, pd.DataFrame(people, columns=cols).to_csv(index=False).encode())
