"""The synthetic face set on disk: render a set into a folder (images/<identity>/<index>.jpg and
meta.parquet), and read a generated set back as FaceRecords.

Seeding: image i of identity g (g counting the set's identity offset) is drawn from
SeedSequence((seed, set code, g, i, 1)), so the output does not depend on the number of workers.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pandas as pd

from lrlivae.records import FaceRecord, Reject, SourceListing
from lrlivae.data.synthetic.factors import IDENTITY_FACTORS, NUISANCE_FACTORS
from lrlivae.data.synthetic.identity import sample_identities, set_code
from lrlivae.data.synthetic.nuisance import sample_nuisance
from lrlivae.data.synthetic.render import encode_jpeg, render_frame

_LM_COLUMNS = [f"lm_{i}_{c}" for i in range(5) for c in ("x", "y")]
_BOX_COLUMNS = ["box_x0", "box_y0", "box_x1", "box_y1"]


def identity_name(index: int) -> str:
    """Folder and label of global identity `index`: id_0000, id_0001, ..."""
    return f"id_{index:04d}"


def frame_rng(seed: int, set_name: str, identity_index: int, image_index: int) -> np.random.Generator:
    """The generator of one frame, from (seed, set, global identity index, image index)."""
    return np.random.default_rng(np.random.SeedSequence([seed, set_code(set_name), identity_index, image_index, 1]))


def generate_set(
    out_dir: Path,
    *,
    n_identities: int,
    images_per_identity: int,
    seed: int,
    set_name: str,
    identity_offset: int = 0,
    frame_size: tuple[int, int] = (128, 160),
    workers: int = 1,
    progress: bool = True,
) -> pd.DataFrame:
    """Render a set into out_dir: images/<identity>/<index:04d>.jpg and meta.parquet (written last,
    atomically). Identities are named id_<offset + k>. Returns the metadata table."""
    if n_identities < 1 or images_per_identity < 1:
        raise ValueError("n_identities and images_per_identity must be >= 1")
    out_dir = Path(out_dir)
    identities = sample_identities(n_identities, seed=seed, set_name=set_name, identity_offset=identity_offset)
    tasks = []
    for k, ident in enumerate(identities):
        gid = identity_offset + k
        (out_dir / "images" / identity_name(gid)).mkdir(parents=True, exist_ok=True)
        for i in range(images_per_identity):
            tasks.append((str(out_dir), gid, i, ident, int(seed), set_name, tuple(int(v) for v in frame_size)))
    rows = _run_tasks(tasks, workers, f"synth {set_name}" if progress else None)
    return _write_meta(out_dir, rows)


def _run_tasks(tasks: list[tuple], workers: int, desc: str | None) -> list[dict]:
    """Render every task (in order) in this process or a pool of `workers`, with a progress bar
    named `desc` (none when None). Returns the metadata rows."""
    bar = None
    if desc is not None:
        from lrlivae.progress import progress as progress_bar

        bar = progress_bar(total=len(tasks), desc=desc, unit="img")
    rows: list[dict] = []
    if workers <= 1:
        prev = cv2.getNumThreads()
        cv2.setNumThreads(1)
        try:
            for t in tasks:
                rows.append(_render_task(t))
                if bar is not None:
                    bar.update(1)
        finally:
            cv2.setNumThreads(prev)
    else:
        import multiprocessing as mp

        with mp.get_context().Pool(int(workers), initializer=_worker_init) as pool:
            for row in pool.imap(_render_task, tasks, chunksize=8):
                rows.append(row)
                if bar is not None:
                    bar.update(1)
    if bar is not None:
        bar.close()
    return rows


def _worker_init() -> None:
    cv2.setNumThreads(1)


def _render_task(task) -> dict:
    """Render, encode and write one frame; returns its metadata row."""
    out_dir, ident_index, image_index, identity, seed, set_name, frame_size = task
    rng = frame_rng(seed, set_name, ident_index, image_index)
    nui = sample_nuisance(rng, frame_size)
    img, lm, box = render_frame(identity, nui, rng)
    name = identity_name(ident_index)
    rel = f"images/{name}/{image_index:04d}.jpg"
    data = encode_jpeg(img, nui["jpeg_quality"])
    with open(Path(out_dir) / rel, "wb") as f:
        f.write(data)
    row: dict[str, Any] = {"path": rel, "identity": name, "width": img.shape[1], "height": img.shape[0]}
    for i in range(5):
        row[f"lm_{i}_x"] = float(lm[i, 0])
        row[f"lm_{i}_y"] = float(lm[i, 1])
    row.update(zip(_BOX_COLUMNS, (float(v) for v in box)))
    for k, v in identity.items():
        row[f"f_{k}"] = v
    for k, v in nui.items():
        row[f"f_{k}"] = v
    return row


def _write_meta(out_dir: Path, rows: list[dict]) -> pd.DataFrame:
    """The metadata table of the rows (factor columns typed by kind), written to
    out_dir/meta.parquet through a temporary name."""
    meta = pd.DataFrame(rows)
    for k, kind in {**IDENTITY_FACTORS, **NUISANCE_FACTORS}.items():
        col = f"f_{k}"
        meta[col] = meta[col].astype("int64" if kind == "discrete" else "float64")
    tmp = out_dir / "meta.parquet.tmp"
    meta.to_parquet(tmp, index=False)
    os.replace(tmp, out_dir / "meta.parquet")
    return meta


def read_synthetic(root: Path) -> SourceListing:
    """FaceRecords of a generated set (a folder with meta.parquet and images/)."""
    root = Path(root)
    meta_path = root / "meta.parquet"
    if not meta_path.is_file():
        raise FileNotFoundError(f"synthetic set metadata not found: {meta_path} (generate the set first)")
    try:
        meta = pd.read_parquet(meta_path)
    except Exception as e:  # noqa: BLE001 - any parse failure means a broken file
        raise ValueError(f"cannot read synthetic set metadata {meta_path}: {e}") from e
    needed = ["path", "identity", *_LM_COLUMNS, *_BOX_COLUMNS]
    missing = [c for c in needed if c not in meta.columns]
    if missing:
        raise ValueError(f"{meta_path} lacks columns {missing}")
    factor_cols = [c for c in meta.columns if c.startswith("f_")]
    records: list[FaceRecord] = []
    rejects: list[Reject] = []
    lm_all = meta[_LM_COLUMNS].to_numpy(np.float64).reshape(-1, 5, 2)
    box_all = meta[_BOX_COLUMNS].to_numpy(np.float64)
    factors = {c[2:]: meta[c].tolist() for c in factor_cols}
    for i, (rel, ident) in enumerate(zip(meta["path"], meta["identity"])):
        path = root / str(rel)
        if not path.is_file():
            rejects.append(Reject(str(path), "image listed in meta.parquet is missing"))
            continue
        fac = {}
        for name, values in factors.items():
            v = values[i]
            fac[name] = int(v) if isinstance(v, (int, np.integer)) else float(v)
        records.append(
            FaceRecord(
                path=str(path),
                identity=str(ident),
                box=tuple(float(v) for v in box_all[i]),
                landmarks=lm_all[i].copy(),
                factors=fac,
            )
        )
    return SourceListing(records=records, rejects=rejects)
