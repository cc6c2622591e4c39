"""Stage `synth`: generate the built-in synthetic face sets (labeled and unlabeled identities)."""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
from PIL import Image

from lrlivae.io import atomic_write_json, image_grid, replace_dir, temp_dir_beside
from pipeline.params import Params
from pipeline.tracking import stage_run


def _preview(root: Path, meta, n: int = 24) -> np.ndarray:
    frames = []
    for rel in meta["path"].iloc[:: max(1, len(meta) // n)][:n]:
        frames.append(np.asarray(Image.open(root / rel).convert("RGB").resize((96, 96))))
    return image_grid(np.stack(frames), ncol=8)


def run(params: Params, params_path: Path, out_labeled: Path, out_unlabeled: Path, metrics_path: Path) -> dict:
    from lrlivae.data.synthetic import generate_set

    cfg = params.synth
    metrics: dict[str, float] = {}
    with stage_run("synth", params.model_dump(mode="json"), params_path) as tracker:
        start = time.perf_counter()
        for set_name, set_cfg, out, offset in (
            ("labeled", cfg.labeled, Path(out_labeled), 0),
            ("unlabeled", cfg.unlabeled, Path(out_unlabeled), cfg.labeled.n_identities),
        ):
            tmp = temp_dir_beside(out)
            meta = generate_set(
                tmp,
                n_identities=set_cfg.n_identities,
                images_per_identity=set_cfg.images_per_identity,
                seed=params.seed,
                set_name=set_name,
                identity_offset=offset,
                frame_size=tuple(cfg.frame_size),
                workers=cfg.workers,
            )
            preview = _preview(tmp, meta)
            replace_dir(tmp, out)
            tracker.log_image(preview, f"synth_preview_{set_name}.png")
            metrics[f"{set_name}_frames"] = len(meta)
            metrics[f"{set_name}_identities"] = int(meta["identity"].nunique())
        seconds = time.perf_counter() - start
        atomic_write_json(metrics_path, metrics)
        tracker.log_metrics({**metrics, "seconds": seconds})
    print(f"synth: {metrics['labeled_frames']} labeled + {metrics['unlabeled_frames']} unlabeled frames in {seconds:.1f}s")
    return metrics
