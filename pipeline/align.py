"""Stage `align`: detect, align and crop every source image of the labeled and unlabeled sets.

Writes `<out>/<set>/faces.npy`, `index.parquet`, `rejects.csv` and `preview.png` for each set (built in a
temporary folder and renamed into place), and flat metrics to `reports/align.json`. Bad inputs never
stop the stage: they become rows of rejects.csv; the stage fails only when the accepted fraction of a
set falls below `align.min_accept_fraction`, or when what was kept cannot feed a later stage.
The worker processes: pipeline.align_workers; the people left out, the people table and the checks of
what later stages need: pipeline.align_people.
"""
from __future__ import annotations

import csv
import time
import zlib
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from lrlivae.data.aligned import FACES, INDEX, REJECTS, AlignedWriter
from lrlivae.io import atomic_write_json, image_grid, replace_dir, save_png, temp_dir_beside
from lrlivae.records import FaceRecord, Reject
from pipeline.align_people import leave_out_people, left_out_reason, people_rows, stage_problems, write_people
from pipeline.align_workers import align_records
from pipeline.params import AlignParams, AlignSource, Params
from pipeline.tracking import stage_run

if TYPE_CHECKING:
    from lrlivae.faces.process import AlignedFace

NO_FACE_PREFIX = "no face"


class AlignStageError(RuntimeError):
    pass


# ------------------------------------------------------------------------------ splits
def assign_splits(groups: list[str], paths: list[str], cifar_split: list[str | None], split, seed: int) -> list[str]:
    """Deterministic per-identity split: within each group (identity), rows ordered by source path are
    shuffled by a generator seeded from (seed, group) and cut by the split fractions. CIFAR rows keep
    their official test split; the validation rows come from its training part."""
    out = [""] * len(groups)
    by_group: dict[tuple[str, str], list[int]] = {}
    for i, (g, cs) in enumerate(zip(groups, cifar_split)):
        by_group.setdefault((g, cs or ""), []).append(i)
    for (g, cs), rows in sorted(by_group.items()):
        rows = sorted(rows, key=lambda i: paths[i])
        rng = np.random.default_rng([seed, zlib.crc32(g.encode()), zlib.crc32(cs.encode())])
        rows = [rows[i] for i in rng.permutation(len(rows))]
        n = len(rows)
        if cs == "test":
            labels = ["test"] * n
        elif cs == "train":
            n_val = int(round(n * split.val / (split.train + split.val)))
            labels = ["val"] * n_val + ["train"] * (n - n_val)
        else:
            n_test = int(round(n * split.test))
            n_val = int(round(n * split.val))
            if n >= 3:  # every identity with a few images lands in train and test
                n_test = max(1, n_test)
                n_val = min(n_val, n - n_test - 1)
            labels = ["test"] * n_test + ["val"] * n_val + ["train"] * (n - n_test - n_val)
        for i, lab in zip(rows, labels):
            out[i] = lab
    return out


# ------------------------------------------------------------------------------ one set
def source_kind(set_name: str, src: AlignSource, root: Path) -> str:
    """The source kind that reads `root` (`source: auto` decided by what the folder holds)."""
    kind = src.model_copy(update={"root": str(root)}).resolved()
    if not kind:
        raise AlignStageError(f"{set_name}: source folder {root} does not exist")
    return kind


def _listing(kind: str, src: AlignSource, root: Path, lists: list[Path], seed: int):
    from lrlivae.data.sources import list_source

    # drop_labels blanks identities and keeps the truth in factors["true_identity"] (evaluation only)
    return list_source(
        kind, root, lists=lists or None, n_identities=src.n_identities, drop_labels=src.drop_labels, seed=seed
    )


def align_set(set_name: str, src: AlignSource, root: Path, lists: list[Path], out: Path, params: Params,
              people: list[dict] | None = None) -> dict:
    """Align one set into `out` (replaced atomically). Returns its metrics (keys prefixed by set name);
    appends a row per person to `people` when given."""
    kind = source_kind(set_name, src, root)
    cfg = params.align.for_source(kind)
    listing = _listing(kind, src, root, lists, params.seed)
    records = listing.records
    if not records and not listing.rejects:
        raise AlignStageError(f"{set_name}: source {kind!r} at {root} lists no images")
    tmp = temp_dir_beside(out)
    index, rejects = _align_into(tmp / FACES, records, cfg, set_name)
    rejects = list(listing.rejects) + rejects
    n_aligned = len(index)
    left_out: dict[str, int] = {}
    if n_aligned and not src.drop_labels:  # a labeled person needs photos for train and test
        aligned = index
        index, left_out = leave_out_people(tmp, index, cfg.min_photos, cfg.size)
        rejects += [Reject(path, f"person {who} left out: {left_out_reason(left_out[who], cfg.min_photos)}")
                    for path, who in zip(aligned["path"], aligned["identity"]) if who in left_out]
    _add_splits(index, cfg, params.seed)
    _write_set_files(tmp, index, rejects)
    n_total = len(records) + len(listing.rejects)
    metrics = _set_metrics(set_name, index, rejects, n_total, n_aligned)
    metrics[f"{set_name}_people_left_out"] = len(left_out)
    metrics[f"{set_name}_photos_left_out"] = n_aligned - len(index)
    if people is not None:
        people.extend(people_rows(set_name, records, index, left_out, cfg.min_photos))
    _stop_when_too_few_accepted(set_name, n_aligned, n_total, cfg, tmp, out)
    replace_dir(tmp, out)
    return metrics


def _align_into(faces_path: Path, records: list[FaceRecord], cfg: AlignParams, set_name: str):
    """Align `records`, appending the crops to the array at `faces_path`: (index of the accepted rows,
    rejects), both in input order."""
    writer = AlignedWriter(faces_path, capacity=len(records), size=cfg.size)
    rows: list[dict] = []
    rejects: list[Reject] = []
    for rec, res in zip(records, align_records(records, cfg, desc=f"align {set_name}")):
        if isinstance(res, Reject):
            rejects.append(res)
            continue
        rows.append(_index_row(writer.append(res.crop), rec, res))
    writer.close()
    return pd.DataFrame(rows), rejects


def _index_row(row: int, rec: FaceRecord, res: AlignedFace) -> dict:
    """One index.parquet row: the source, the detection (box, five landmarks) and the record's factors."""
    entry = {
        "row": row,
        "path": rec.path,
        "identity": rec.identity,
        "detector": res.detector,
        "method": res.method,
        "score": float(res.score),
        "source_mode": res.source_mode,
        "faces_found": int(res.faces_found),
        "face_kept": res.face_kept,
    }
    box = res.box if res.box is not None else (np.nan,) * 4
    entry.update({f"box_{k}": float(v) for k, v in zip(("x0", "y0", "x1", "y1"), box)})
    lms = np.full((5, 2), np.nan) if res.landmarks is None else np.asarray(res.landmarks, dtype=float)
    for i in range(5):
        entry[f"lm_{i}_x"], entry[f"lm_{i}_y"] = float(lms[i, 0]), float(lms[i, 1])
    for k, v in rec.factors.items():
        entry[k if k in ("true_identity", "cifar_split") else f"f_{k}"] = v
    return entry


def _add_splits(index: pd.DataFrame, cfg: AlignParams, seed: int) -> None:
    """The `split` column: per identity (the true one when labels were dropped), see `assign_splits`."""
    n_ok = len(index)
    if n_ok:
        groups = (index["true_identity"] if "true_identity" in index else index["identity"]).fillna("").astype(str)
        cifar = index["cifar_split"].tolist() if "cifar_split" in index else [None] * n_ok
        index["split"] = assign_splits(groups.tolist(), index["path"].tolist(), cifar, cfg.split, seed)
    else:
        index["split"] = pd.Series(dtype=str)


def _write_set_files(tmp: Path, index: pd.DataFrame, rejects: list[Reject]) -> None:
    """index.parquet, rejects.csv and (when a face was accepted) preview.png beside faces.npy in `tmp`."""
    n_ok = len(index)
    index.to_parquet(tmp / INDEX, index=False)
    with open(tmp / REJECTS, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "reason"])
        w.writerows((r.path, r.reason) for r in rejects)
    if n_ok:
        faces = np.load(tmp / FACES, mmap_mode="r")
        pick = np.linspace(0, n_ok - 1, num=min(64, n_ok)).astype(int)
        save_png(tmp / "preview.png", image_grid(np.asarray(faces[pick]), ncol=8))
        del faces


def _set_metrics(set_name: str, index: pd.DataFrame, rejects: list[Reject], n_total: int, n_aligned: int) -> dict:
    """The set's flat metrics: counts, accept fraction and detection rate (of the images that decoded, before
    people with too few photos were left out), rejects by reason, splits."""
    n_ok = len(index)
    no_face = sum(r.reason.startswith(NO_FACE_PREFIX) for r in rejects)
    decoded = n_aligned + no_face
    accept = n_aligned / n_total if n_total else 0.0
    metrics = {
        f"{set_name}_images": n_total,
        f"{set_name}_accepted": n_ok,
        f"{set_name}_rejected": len(rejects),
        f"{set_name}_accept_fraction": round(accept, 6),
        f"{set_name}_detection_rate": round(n_aligned / decoded, 6) if decoded else 0.0,
        f"{set_name}_identities": int(index["identity"].replace("", np.nan).nunique()) if n_ok else 0,
        f"{set_name}_several_faces": int((index["faces_found"] > 1).sum()) if n_ok else 0,
        f"{set_name}_grey_or_high_depth": int((~index["source_mode"].isin(["RGB", ""])).sum()) if n_ok else 0,
    }
    for s in ("train", "val", "test"):
        metrics[f"{set_name}_{s}"] = int((index["split"] == s).sum()) if n_ok else 0
    metrics[f"{set_name}_rejected_no_face"] = no_face
    metrics[f"{set_name}_rejected_file"] = sum(not r.reason.startswith((NO_FACE_PREFIX, "person ")) for r in rejects)
    return metrics


def _stop_when_too_few_accepted(set_name: str, n_ok: int, n_total: int, cfg: AlignParams, tmp: Path,
                                out: Path) -> None:
    """Under `align.min_accept_fraction`: keep the built set as `<out>.rejected-run` and raise."""
    accept = n_ok / n_total if n_total else 0.0
    if accept < cfg.min_accept_fraction:
        import shutil

        kept = out.parent / f"{out.name}.rejected-run"
        shutil.rmtree(kept, ignore_errors=True)
        tmp.rename(kept)
        raise AlignStageError(
            f"{set_name}: only {n_ok} of {n_total} images ({accept:.1%}) were aligned, under "
            f"align.min_accept_fraction = {cfg.min_accept_fraction}; see {kept / REJECTS} for the reasons"
        )


def data_tags(params: Params, sets: dict[str, tuple[Path, list[Path]]], out_dir: Path) -> dict[str, str]:
    """What the parent run says of its data: each set's folder, source kind and the aligned set's digest."""
    from pipeline.tracking_store import aligned_digest

    tags = {}
    for name, (root, _) in sets.items():
        src: AlignSource = getattr(params.align, name)
        tags[f"data.{name}.root"] = str(Path(root).resolve())
        tags[f"data.{name}.source"] = source_kind(name, src, Path(root))
        try:
            tags[f"data.{name}.digest"] = aligned_digest(Path(out_dir) / name)
        except Exception:  # an absent set says so; the digest is for reading, not for the stage
            tags[f"data.{name}.digest"] = "unknown"
    return tags


def run(
    params: Params,
    params_path: Path,
    sets: dict[str, tuple[Path, list[Path]]],
    out_dir: Path,
    metrics_path: Path,
    people_path: Path | None = None,
) -> dict:
    """Align each named set: sets = {'labeled': (root, list_files), 'unlabeled': (root, list_files)}; then
    check that every later stage can run on what was kept (AlignStageError naming each one that cannot)."""
    metrics: dict[str, float] = {}
    people: list[dict] = []
    with stage_run("align", params.model_dump(mode="json"), params_path) as tracker:
        start = time.perf_counter()
        for set_name, (root, lists) in sets.items():
            src: AlignSource = getattr(params.align, set_name)
            out = Path(out_dir) / set_name
            metrics.update(align_set(set_name, src, Path(root), lists, out, params, people))
            tracker.log_artifact(out / "preview.png", artifact_path=f"preview_{set_name}")
            tracker.log_artifact(out / REJECTS, artifact_path=f"rejects_{set_name}")
            left = metrics[f"{set_name}_people_left_out"]
            print(
                f"align {set_name}: {metrics[f'{set_name}_accepted']}/{metrics[f'{set_name}_images']} accepted, "
                f"detection rate {metrics[f'{set_name}_detection_rate']:.3f}; split train / val / test "
                f"{metrics[f'{set_name}_train']} / {metrics[f'{set_name}_val']} / {metrics[f'{set_name}_test']}"
                + (f"; {left} person(s) left out (align.min_photos = {params.align.min_photos})" if left else "")
            )
        seconds = time.perf_counter() - start
        if people_path is not None:
            Path(people_path).parent.mkdir(parents=True, exist_ok=True)
            write_people(Path(people_path), people)
            tracker.log_artifact(people_path, artifact_path="people")
        for row in people:
            if row["status"] != "kept":
                print(f"align {row['set']}: {row['person']} {row['status']}")
        atomic_write_json(metrics_path, metrics)
        tracker.log_result({**metrics, "seconds": seconds})
        tracker.set_parent_tags(data_tags(params, sets, out_dir))
        problems = stage_problems(metrics, people, list(sets))
        if problems:
            raise AlignStageError("the aligned sets cannot feed every stage (nothing was trained):\n  - "
                                  + "\n  - ".join(problems))
    return metrics
