"""Stage `align`, the worker side: each process builds its detector and landmarker once from the align
settings, then aligns records one by one (`align_records`: in input order, with `align.workers` processes);
an error inside a worker becomes a reject row, never a stopped stage."""
from __future__ import annotations

from multiprocessing import get_context

from lrlivae.progress import progress
from lrlivae.records import FaceRecord, Reject
from pipeline.params import AlignParams

_WORKER: dict = {}


def _init_worker(cfg: dict) -> None:
    from lrlivae.faces.detect import make_detector
    from lrlivae.faces.landmarks import make_landmarker

    det_opts = dict(cfg["opencv"]) if cfg["detector"] == "opencv" else {}
    if cfg["detector"] == "face_alignment":
        det_opts["device"] = cfg["device"]
    dl = cfg.get("dlib") or {}
    if cfg["detector"] in ("dlib_hog", "dlib_cnn"):
        det_opts = {k: dl[k] for k in ("upsample", "min_score", "max_side") if k in dl}
    lm_opts = {"device": cfg["device"]} if cfg["landmarks"] == "face_alignment" else {}
    if cfg["landmarks"] == "dlib":
        lm_opts = {"model": dl.get("landmark_model", "5")}
    _WORKER["detector"] = make_detector(cfg["detector"], **det_opts)
    _WORKER["landmarker"] = make_landmarker(cfg["landmarks"], **lm_opts)
    _WORKER["cfg"] = cfg


def _process(record: FaceRecord):
    from lrlivae.faces.process import align_record

    cfg = _WORKER["cfg"]
    try:
        return align_record(
            record,
            _WORKER["detector"],
            _WORKER["landmarker"],
            size=cfg["size"],
            margin=cfg["margin"],
            min_score=cfg["min_score"],
            max_pixels=cfg["max_pixels"],
        )
    except Exception as e:  # one bad file among thousands must not stop the stage
        return Reject(record.path, f"unexpected error: {type(e).__name__}: {e}")


def _check_backends(cfg: AlignParams) -> None:
    """Fail before any work, with a message naming what is missing, when a dlib backend's files are absent
    (inside the workers every error becomes a reject row)."""
    from lrlivae.faces.dlib_faces import import_dlib, model_path

    if cfg.detector in ("dlib_hog", "dlib_cnn") or cfg.landmarks == "dlib":
        import_dlib()
    if cfg.detector == "dlib_cnn":
        model_path("cnn")
    if cfg.landmarks == "dlib":
        model_path(cfg.dlib.landmark_model)


def align_records(records: list[FaceRecord], cfg: AlignParams, desc: str = "align"):
    """Yield align_record results in input order, with `cfg.workers` processes."""
    if "auto" in (cfg.detector, cfg.landmarks):
        raise ValueError("align_records needs the backends resolved for a source: AlignParams.for_source(kind)")
    worker_cfg = cfg.model_dump(mode="json")
    _check_backends(cfg)
    if cfg.workers <= 1 or len(records) < 2:
        _init_worker(worker_cfg)
        for r in progress(records, desc=desc, unit="img", mininterval=1.0):
            yield _process(r)
        return
    ctx = get_context("spawn") if cfg.detector == "face_alignment" or cfg.landmarks == "face_alignment" else get_context()
    chunk = max(1, min(32, len(records) // (cfg.workers * 8) or 1))
    with ctx.Pool(cfg.workers, initializer=_init_worker, initargs=(worker_cfg,)) as pool:
        for result in progress(pool.imap(_process, records, chunksize=chunk), total=len(records), desc=desc, unit="img",
                               mininterval=1.0):
            yield result
