"""The FaceScrub downloader against HTTP servers started here on 127.0.0.1 (never anything else):
good images, dead and lying urls, retries, timeouts, size caps, redirects, resets, path escapes,
per-host limits, a killed run resumed, and the `fetch-facescrub` command end to end."""
from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import socket
import struct
import subprocess
import sys
import textwrap
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from lrlivae.data.download import MANIFEST_COLUMNS, fetch_facescrub
from lrlivae.data.facescrub import read_facescrub
from tests.conftest import closed_port, tiny_params, write_params

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


# ------------------------------------------------------------------------------------- test server
class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):  # keep the test output clean
        pass

    def do_GET(self):
        srv = self.server
        path = self.path.split("?")[0]
        with srv.lock:
            srv.hits[path] = srv.hits.get(path, 0) + 1
            n = srv.hits[path]
            srv.active[path] = srv.active.get(path, 0) + 1
            srv.max_active[path] = max(srv.max_active.get(path, 0), srv.active[path])
        try:
            route = srv.routes.get(path)
            if route is None:
                self.reply(404, b"<html>not found</html>", "text/html")
            else:
                route(self, n)
        except (BrokenPipeError, ConnectionResetError, ConnectionAbortedError):
            pass
        finally:
            with srv.lock:
                srv.active[path] -= 1

    def reply(self, code: int, body: bytes = b"", ctype: str = "image/jpeg", headers: dict | None = None):
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Connection", "close")
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def partial_then_reset(self, body: bytes):
        """Promise the whole body, send half of it, then reset the connection."""
        self.send_response(200)
        self.send_header("Content-Type", "image/jpeg")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body[: len(body) // 2])
        self.wfile.flush()
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.connection.close()
        self.close_connection = True


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.lock = threading.Lock()
        self.routes: dict = {}
        self.hits: dict[str, int] = {}
        self.active: dict[str, int] = {}  # requests in progress per path
        self.max_active: dict[str, int] = {}
        self.stop = threading.Event()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}{path}"

    def handle_error(self, request, client_address):  # resets and timeouts are what the tests do
        pass


@pytest.fixture(scope="module")
def server():
    srv = _Server()
    t = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    t.start()
    yield srv
    srv.stop.set()
    srv.shutdown()
    srv.server_close()


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


# ------------------------------------------------------------------------------------------- tests
def test_downloads_are_verified_named_by_format_and_skipped_when_run_again(server, tmp_path):
    server.routes.update({
        "/ok/a.jpg": serve(JPEG),
        "/ok/b.jpg": serve(PNG, "image/jpeg"),  # a PNG behind a .jpg url and a lying header
        "/ok/c": serve(JPEG, "application/octet-stream"),
    })
    lst = write_list(tmp_path / "facescrub_actors.txt", [
        ("Aaron Eckhart", 1, server.url("/ok/a.jpg"), sha(JPEG)),
        ("Aaron Eckhart", 2, server.url("/ok/b.jpg"), ""),
        ("Anne Hathaway", 3, server.url("/ok/c"), sha(JPEG)),
    ])
    out = tmp_path / "out"
    s = fetch_facescrub([lst], out, **FAST)
    assert s.counts == {"ok": 3, "skipped": 0, "failed": 0}
    m = manifest(out)
    assert m["1"]["path"] == "Aaron_Eckhart/Aaron_Eckhart_1.jpg" and m["1"]["sha256"] == sha(JPEG)
    assert m["2"]["path"] == "Aaron_Eckhart/Aaron_Eckhart_2.png" and m["2"]["bytes"] == str(len(PNG))
    assert m["3"]["path"] == "Anne_Hathaway/Anne_Hathaway_3.jpg" and m["3"]["attempts"] == "1"
    assert (out / m["2"]["path"]).read_bytes() == PNG
    listing = read_facescrub(out, [lst])  # the reader finds every file where it expects it
    assert len(listing.records) == 3 and not listing.rejects
    hits = dict(server.hits)
    again = fetch_facescrub([lst], out, **FAST)
    assert again.counts == {"ok": 0, "skipped": 3, "failed": 0}
    assert server.hits == hits  # nothing fetched again
    assert all(r["status"] == "skipped" and r["attempts"] == "0" for r in manifest(out).values())
    assert not leftovers(out)


def test_permanent_failures_are_not_retried_and_never_saved(server, tmp_path):
    def huge_chunked(h, n):  # no Content-Length: streams past max_bytes
        h.send_response(200)
        h.send_header("Content-Type", "image/jpeg")
        h.send_header("Transfer-Encoding", "chunked")
        h.end_headers()
        chunk = JPEG[:1000]
        for _ in range(100):
            h.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
        h.wfile.write(b"0\r\n\r\n")

    server.routes.update({
        "/perm/404": status(404), "/perm/410": status(410), "/perm/403": status(403),
        "/perm/html": serve(b"<html><body>This photo is no longer available</body></html>", "text/html"),
        "/perm/hash": serve(JPEG),
        "/perm/big": serve(JPEG + b"\0" * 20_000),
        "/perm/chunked": huge_chunked,
        "/perm/garbage": serve(os.urandom(3000)),
    })
    rows = [("Bad Person", i, server.url(p), s) for i, (p, s) in enumerate([
        ("/perm/404", ""), ("/perm/410", ""), ("/perm/403", ""), ("/perm/html", ""),
        ("/perm/hash", "0" * 64), ("/perm/big", ""), ("/perm/chunked", ""), ("/perm/garbage", ""),
    ])] + [("Bad Person", 8, "ftp://127.0.0.1/x.jpg", "")]
    lst = write_list(tmp_path / "l.txt", rows)
    out = tmp_path / "out"
    s = fetch_facescrub([lst], out, **{**FAST, "max_bytes": 10_000})
    assert s.counts["failed"] == 9
    m = manifest(out)
    reasons = [m[str(i)]["reason"] for i in range(9)]
    assert reasons[:3] == ["HTTP 404", "HTTP 410", "HTTP 403"]
    assert reasons[3] == "not an image (content type text/html)"
    assert reasons[4] == "sha256 mismatch"
    assert reasons[5] == reasons[6] == "too large (over max_bytes)"
    assert reasons[7].startswith("not an image:")
    assert reasons[8] == "unsupported url"
    assert all(m[str(i)]["attempts"] == "1" for i in range(9))
    assert all(server.hits[p] == 1 for p in server.routes if p.startswith("/perm/"))
    files = [p for p in out.rglob("*") if p.is_file()]
    assert files == [out / "manifest.csv"]  # nothing saved, no temporary files left
    top = s.top_reasons(2)
    assert sorted(top) == [("not an image", 2), ("too large", 2)]


def test_transient_failures_are_retried(server, tmp_path):
    def flaky(code):
        return lambda h, n: h.reply(200, JPEG) if n > 1 else h.reply(code, b"busy", "text/plain")

    server.routes.update({
        "/tr/500": flaky(500),
        "/tr/429": flaky(429),
        "/tr/always503": status(503),
        "/tr/reset_once": lambda h, n: h.reply(200, PNG, "image/png") if n > 1 else h.partial_then_reset(PNG),
        "/tr/reset_always": lambda h, n: h.partial_then_reset(JPEG),
    })
    lst = write_list(tmp_path / "l.txt", [
        ("Flaky", i, server.url(p), "") for i, p in enumerate(
            ["/tr/500", "/tr/429", "/tr/always503", "/tr/reset_once", "/tr/reset_always"])
    ])
    out = tmp_path / "out"
    fetch_facescrub([lst], out, **FAST)
    m = manifest(out)
    assert (m["0"]["status"], m["0"]["attempts"]) == ("ok", "2")
    assert (m["1"]["status"], m["1"]["attempts"]) == ("ok", "2")
    assert (m["2"]["status"], m["2"]["reason"], m["2"]["attempts"]) == ("failed", "HTTP 503", "3")
    assert (m["3"]["status"], m["3"]["attempts"], m["3"]["path"]) == ("ok", "2", "Flaky/Flaky_3.png")
    assert m["4"]["status"] == "failed" and m["4"]["attempts"] == "3"
    assert m["4"]["reason"] in ("connection reset", "incomplete body", "server closed the connection")
    assert server.hits["/tr/always503"] == 3 and server.hits["/tr/reset_always"] == 3
    assert not (out / "Flaky" / "Flaky_4.jpg").exists() and not leftovers(out)


def test_a_slow_server_times_out_after_bounded_retries(server, tmp_path):
    server.routes["/slow"] = lambda h, n: server.stop.wait(5) or h.reply(200, JPEG)
    lst = write_list(tmp_path / "l.txt", [("Slow", 1, server.url("/slow"), "")])
    t0 = time.monotonic()
    s = fetch_facescrub([lst], tmp_path / "out", workers=1, per_host=1, timeout=0.5, retries=1, backoff=0.01,
                        progress=False)
    assert time.monotonic() - t0 < 4
    r = s.results[0]
    assert (r.status, r.reason, r.attempts) == ("failed", "timeout", 2)


def test_redirects_are_followed_and_bounded(server, tmp_path):
    def redirect(to):
        return lambda h, n: h.reply(302, b"", "text/html", {"Location": to})

    server.routes.update({
        "/rd/start": redirect("/rd/middle"),
        "/rd/middle": redirect(server.url("/rd/final.png")),
        "/rd/final.png": serve(PNG, "image/png"),
        "/rd/loop": redirect("/rd/loop"),
    })
    lst = write_list(tmp_path / "l.txt", [("Moved", 1, server.url("/rd/start"), sha(PNG)),
                                          ("Moved", 2, server.url("/rd/loop"), "")])
    out = tmp_path / "out"
    fetch_facescrub([lst], out, **FAST)
    m = manifest(out)
    assert m["1"]["status"] == "ok" and (out / "Moved/Moved_1.png").read_bytes() == PNG
    assert (m["2"]["status"], m["2"]["reason"]) == ("failed", "too many redirects")


def test_names_cannot_escape_the_output_folder(server, tmp_path):
    server.routes["/esc.jpg"] = serve(JPEG)
    outside = tmp_path / "outside"
    outside.mkdir()
    out = tmp_path / "a" / "out"
    out.mkdir(parents=True)
    (out / "Linked_Name").symlink_to(outside, target_is_directory=True)
    lst = write_list(tmp_path / "l.txt", [("../../etc", 1, server.url("/esc.jpg"), ""),
                                          ("..", 2, server.url("/esc.jpg"), ""),
                                          ("Linked Name", 3, server.url("/esc.jpg"), "")])
    s = fetch_facescrub([lst], out, **FAST)
    m = manifest(out)
    assert m["1"]["status"] == "ok" and (out / m["1"]["path"]).is_file()
    assert (out / m["1"]["path"]).resolve().is_relative_to(out.resolve())
    assert m["3"]["reason"] == "path escapes out_root"
    assert [r.reason.startswith("malformed list line") for r in s.results if r.face_id is None] == [True]
    assert not any(outside.iterdir()) and not (tmp_path / "etc").exists() and not (tmp_path / "a" / "etc").exists()


def test_at_most_per_host_requests_at_a_time(server, tmp_path):
    server.routes["/busy.jpg"] = lambda h, n: server.stop.wait(0.15) or h.reply(200, JPEG)
    lst = write_list(tmp_path / "l.txt", [("Busy", i, server.url(f"/busy.jpg?{i}"), "") for i in range(6)])
    s = fetch_facescrub([lst], tmp_path / "out", workers=6, per_host=2, timeout=3, retries=0, progress=False)
    assert s.counts["ok"] == 6
    assert server.max_active["/busy.jpg"] == 2


def test_an_unreachable_host_is_given_up(tmp_path):
    url = f"http://127.0.0.1:{closed_port()}/x.jpg"
    lst = write_list(tmp_path / "l.txt", [("Gone", i, url, "") for i in range(10)])
    s = fetch_facescrub([lst], tmp_path / "out", workers=1, per_host=1, timeout=1, retries=1, backoff=0.01,
                        progress=False, host_give_up=3)
    assert s.counts["failed"] == 10
    reasons = [r.reason for r in s.results]
    assert reasons[0] == "connection refused" and reasons[-1].startswith("host unreachable")
    assert sum(r.attempts for r in s.results) < 20


def test_a_bad_existing_file_is_fetched_again(server, tmp_path):
    server.routes["/again.jpg"] = serve(JPEG)
    lst = write_list(tmp_path / "l.txt", [("Again", 1, server.url("/again.jpg"), sha(JPEG)),
                                          ("Again", 2, server.url("/again.jpg"), "")])
    out = tmp_path / "out"
    (out / "Again").mkdir(parents=True)
    (out / "Again/Again_1.jpg").write_bytes(b"half a file")
    (out / "Again/Again_2.png").write_bytes(JPEG[:200])  # truncated
    s = fetch_facescrub([lst], out, **FAST)
    assert s.counts["ok"] == 2
    assert (out / "Again/Again_1.jpg").read_bytes() == JPEG and not (out / "Again/Again_2.png").exists()


def test_a_killed_run_resumes(server, tmp_path):
    state = {"stall": True}
    release = threading.Event()

    def stalling(body):
        def route(h, n):
            if not state["stall"]:
                return h.reply(200, body)
            h.send_response(200)
            h.send_header("Content-Type", "image/jpeg")
            h.send_header("Content-Length", str(len(body)))
            h.end_headers()
            h.wfile.write(body[:500])
            h.wfile.flush()
            release.wait(20)
        return route

    bodies = {i: _image("JPEG", 10 + i) for i in range(5)}
    for i in range(3):
        server.routes[f"/kill/{i}.jpg"] = serve(bodies[i])
    for i in (3, 4):
        server.routes[f"/kill/{i}.jpg"] = stalling(bodies[i])
    rows = [("Killed", i, server.url(f"/kill/{i}.jpg"), sha(bodies[i])) for i in range(5)]
    lst = write_list(tmp_path / "l.txt", rows)
    out = tmp_path / "out"
    code = textwrap.dedent(f"""
        from lrlivae.data.download import fetch_facescrub
        fetch_facescrub([{str(lst)!r}], {str(out)!r}, workers=5, per_host=5, timeout=30, progress=False)
    """)
    proc = subprocess.Popen([sys.executable, "-c", code])
    folder = out / "Killed"
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            done = [folder / f"Killed_{i}.jpg" for i in range(3)]
            parts = list(folder.glob(".*.part")) if folder.exists() else []
            if all(p.exists() for p in done) and len(parts) == 2:
                break
            assert proc.poll() is None, "the download finished before it could be killed"
            time.sleep(0.05)
        else:
            pytest.fail("the run never reached the expected state")
    finally:
        proc.kill()
        proc.wait(10)
    assert not (folder / "Killed_3.jpg").exists() and not (folder / "Killed_4.jpg").exists()
    assert not (out / "manifest.csv").exists()
    state["stall"] = False
    release.set()
    s = fetch_facescrub([lst], out, **FAST)
    m = manifest(out)
    assert [m[str(i)]["status"] for i in range(5)] == ["skipped"] * 3 + ["ok"] * 2
    assert not leftovers(out)
    assert all((folder / f"Killed_{i}.jpg").read_bytes() == bodies[i] for i in range(5))
    assert s.metrics()["complete"] == 5


def test_cli_end_to_end(server, tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from pipeline.cli import app

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DVC_ROOT", str(tmp_path))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("DVC_EXP_NAME", raising=False)
    write_params(tmp_path / "params.yaml", tiny_params(**{"fetch_facescrub.retries": 0, "fetch_facescrub.workers": 2}))
    runner = CliRunner()
    res = runner.invoke(app, ["fetch-facescrub"], catch_exceptions=False)  # no lists: nothing to do
    assert res.exit_code == 0 and "no list files given" in res.output
    assert json.loads((tmp_path / "reports/fetch_facescrub.json").read_text())["rows"] == 0
    assert not (tmp_path / "data").exists()

    server.routes["/cli/1.jpg"] = serve(JPEG)
    write_list(tmp_path / "facescrub_actors.txt", [("Cli Person", 1, server.url("/cli/1.jpg"), sha(JPEG)),
                                                   ("Cli Person", 2, server.url("/cli/missing.jpg"), "")])
    res = runner.invoke(app, ["fetch-facescrub", "--list", "facescrub_actors.txt", "--out", "data/raw/facescrub"],
                        catch_exceptions=False)
    assert res.exit_code == 0, res.output
    metrics = json.loads((tmp_path / "reports/fetch_facescrub.json").read_text())
    assert (metrics["rows"], metrics["ok"], metrics["failed"], metrics["complete"]) == (2, 1, 1, 1)
    assert "HTTP 404 (1)" in res.output
    assert (tmp_path / "data/raw/facescrub/Cli_Person/Cli_Person_1.jpg").read_bytes() == JPEG
    assert (tmp_path / "mlflow.db").exists()
    res = runner.invoke(app, ["fetch-facescrub", "--list", "nope.txt"])
    assert res.exit_code == 1 and "nope.txt does not exist" in res.output
