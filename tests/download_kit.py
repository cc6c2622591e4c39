"""Loopback servers, lists and manifests shared by the downloader tests (test_download, test_http_fetch)."""
from __future__ import annotations

import csv
import hashlib
import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from lrlivae.fetch.download import MANIFEST_COLUMNS
from tests.loopback import Server

HEADER = "name\timage_id\tface_id\turl\tbbox\tsha256"
FAST = dict(workers=4, per_host=4, timeout=3.0, retries=2, backoff=0.01, progress=False)


def _image(fmt: str, seed: int = 0) -> bytes:
    rng = np.random.default_rng(seed)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (24, 32, 3), dtype=np.uint8)).save(buf, format=fmt)
    return buf.getvalue()


JPEG, PNG = _image("JPEG", 1), _image("PNG", 2)


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


PROXY_VARS = ("http_proxy", "https_proxy", "no_proxy", "all_proxy", "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "ALL_PROXY")


@pytest.fixture(autouse=True)
def no_env_proxy(monkeypatch):
    """Tests talk to loopback servers directly unless they set a proxy themselves."""
    for var in PROXY_VARS:
        monkeypatch.delenv(var, raising=False)


@pytest.fixture(scope="module")
def server():
    srv = Server("127.0.0.1").start()
    yield srv
    srv.close()


@pytest.fixture(scope="module")
def server2():
    """A second host: 127.0.0.2 (Linux routes all of 127/8 to loopback)."""
    srv = Server("127.0.0.2").start()
    yield srv
    srv.close()


def serve(body: bytes, ctype: str = "image/jpeg"):
    return lambda h, n: h.reply(200, body, ctype)


def status(code: int, body: bytes = b"<html>gone</html>"):
    return lambda h, n: h.reply(code, body, "text/html")


def write_list(path: Path, rows) -> Path:
    """rows: (name, face_id, url, sha256 or '')."""
    lines = [HEADER] + [f"{n}\t{fid}\t{fid}\t{url}\t1,2,20,22\t{s}" for n, fid, url, s in rows]
    path.write_text("\n".join(lines) + "\n")
    return path


def manifest(out: Path) -> dict[str, dict]:
    with open(out / "manifest.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert tuple(rows[0].keys()) == MANIFEST_COLUMNS
    return {r["face_id"]: r for r in rows}


def leftovers(out: Path) -> list[Path]:
    return [p for p in out.rglob("*") if p.name.endswith((".part", ".tmp"))]
