"""Stage `fetch_facescrub`: download the FaceScrub images named by the official list files.

Resumable: images already in the output folder that verify are skipped, so running the stage again
(or `dvc repro` with the output marked `persist: true`) continues where a killed run stopped. Writes
`<out>/manifest.csv` (one row per list row) and flat metrics (counts) to the metrics JSON. With no
list files (neither `--list` nor `fetch_facescrub.lists`) it downloads nothing, says so and writes
metrics of zero. `--dry-run` parses the lists and prints identities, images and hosts, writing nothing.
"""
from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Sequence

from lrlivae.io import atomic_write_json
from pipeline.params import Params
from pipeline.schema import values_for
from pipeline.tracking import stage_run

EMPTY_METRICS = {"rows": 0, "ok": 0, "skipped": 0, "failed": 0, "malformed": 0, "complete": 0,
                 "bytes_downloaded": 0, "seconds": 0.0}


def run(params: Params, params_path: Path, lists: Sequence[str | Path], out_root: Path, metrics_path: Path,
        dry_run: bool = False) -> dict:
    """Download the images of `lists` (default: `fetch_facescrub.lists`) into `out_root`; with `dry_run`
    only parse the lists and print what would be fetched (no files, no metrics, no MLflow run)."""
    from lrlivae.fetch.download import FetchOptions, fetch_facescrub
    from lrlivae.fetch.fetch_report import plan_facescrub

    cfg = params.fetch_facescrub
    chosen = [Path(p) for p in (list(lists) or cfg.lists)]
    if dry_run:
        if not chosen:
            print("fetch_facescrub --dry-run: no list files given (pass --list FILE or set fetch_facescrub.lists)")
            return {}
        plan = plan_facescrub(chosen)
        print("fetch_facescrub: " + plan.describe())
        return {"rows": len(plan.rows), "identities": plan.identities, "hosts": len(plan.hosts),
                "malformed": len(plan.malformed)}
    if not chosen:
        atomic_write_json(metrics_path, EMPTY_METRICS)
        print("fetch_facescrub: no list files given (pass --list FILE or set fetch_facescrub.lists in "
              "params.yaml); nothing downloaded")
        return dict(EMPTY_METRICS)
    with stage_run("fetch_facescrub", params.model_dump(mode="json"), params_path) as tracker:
        tracker.set_tags({"lists": ",".join(str(p) for p in chosen)})
        options = FetchOptions(**values_for(cfg, FetchOptions))
        summary = fetch_facescrub(chosen, out_root, options)
        metrics = summary.metrics()
        atomic_write_json(metrics_path, metrics)
        tracker.log_metrics(metrics)
        with tempfile.TemporaryDirectory() as d:
            text = Path(d) / "fetch_summary.txt"
            text.write_text(summary.describe() + "\n")
            tracker.log_artifact(text)
    print("fetch_facescrub: " + summary.describe(), flush=True)
    return metrics
