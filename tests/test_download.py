"""The FaceScrub downloader against HTTP servers started here on 127.0.0.1 (never anything else): good
images, dead and lying urls, retries, path escapes, a bad existing file, a killed run resumed, lists as
they circulate, malformed lines, progress, and the `fetch-facescrub` command end to end. The HTTP layer's
behaviours (timeouts, redirects, Retry-After, gzip, keep-alive, proxies, per-host limits) are in
test_http_fetch.py."""
from __future__ import annotations

import csv
import io
import json
import os
import re
import subprocess
import sys
import textwrap
import threading
import time
import unicodedata

import pytest
from PIL import Image

from lrlivae.fetch.download import fetch_facescrub
from lrlivae.data.facescrub import read_facescrub
from tests.conftest import closed_port, tiny_params, write_params
from tests.download_kit import (  # noqa: F401  (fixtures: no_env_proxy applies to every test)
    FAST,
    HEADER,
    JPEG,
    PNG,
    leftovers,
    manifest,
    no_env_proxy,
    serve,
    server,
    sha,
    status,
    write_list,
    _image,
)


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
    assert [m[k]["line"] for k in "123"] == ["facescrub_actors.txt:2", "facescrub_actors.txt:3", "facescrub_actors.txt:4"]
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
        "/perm/html200": serve(b"<!DOCTYPE html><html><body>Image not found</body></html>" * 20, "image/jpeg"),
    })
    rows = [("Bad Person", i, server.url(p), s) for i, (p, s) in enumerate([
        ("/perm/404", ""), ("/perm/410", ""), ("/perm/403", ""), ("/perm/html", ""),
        ("/perm/hash", "0" * 64), ("/perm/big", ""), ("/perm/chunked", ""), ("/perm/garbage", ""),
    ])] + [("Bad Person", 8, "ftp://127.0.0.1/x.jpg", ""), ("Bad Person", 9, server.url("/perm/html200"), "")]
    lst = write_list(tmp_path / "l.txt", rows)
    out = tmp_path / "out"
    s = fetch_facescrub([lst], out, **{**FAST, "max_bytes": 10_000})
    assert s.counts["failed"] == 10
    m = manifest(out)
    reasons = [m[str(i)]["reason"] for i in range(10)]
    assert reasons[:3] == ["HTTP 404", "HTTP 410", "HTTP 403"]
    assert reasons[3] == "not an image (content type text/html)"
    assert reasons[4] == "sha256 mismatch"
    assert reasons[5] == reasons[6] == "too large (over max_bytes)"
    assert reasons[7].startswith("not an image:")
    assert reasons[8] == "unsupported url"
    assert reasons[9].startswith("not an image:")  # an HTML error page sent as 200 image/jpeg
    assert all(m[str(i)]["attempts"] == "1" for i in range(10))
    assert all(server.hits[p] == 1 for p in server.routes if p.startswith("/perm/"))
    files = [p for p in out.rglob("*") if p.is_file()]
    assert files == [out / "manifest.csv"]  # nothing saved, no temporary files left
    top = s.top_reasons(2)
    assert top == [("not an image", 3), ("too large", 2)]


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
        from lrlivae.fetch.download import fetch_facescrub
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
    monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{closed_port()}")  # a dead proxy, turned off below
    runner = CliRunner()
    res = runner.invoke(app, ["fetch-facescrub"], catch_exceptions=False)  # no lists: nothing to do
    assert res.exit_code == 0 and "no list files given" in res.output
    assert json.loads((tmp_path / "reports/fetch_facescrub.json").read_text())["rows"] == 0
    assert not (tmp_path / "data").exists()

    server.routes["/cli/1.jpg"] = serve(JPEG)
    write_list(tmp_path / "facescrub_actors.txt", [("Cli Person", 1, server.url("/cli/1.jpg"), sha(JPEG)),
                                                   ("Cli Person", 2, server.url("/cli/missing.jpg"), "")])
    res = runner.invoke(app, ["fetch-facescrub", "--list", "facescrub_actors.txt", "--out", "data/raw/facescrub",
                              "--no-env-proxy"], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    metrics = json.loads((tmp_path / "reports/fetch_facescrub.json").read_text())
    assert (metrics["rows"], metrics["ok"], metrics["failed"], metrics["complete"]) == (2, 1, 1, 1)
    assert re.search(r"HTTP 404 +1 +50\.0%", res.output)  # the closing table: failures by reason
    assert "\r" not in res.output and "fetch facescrub: 2/2 rows (100%)" in res.output  # not a terminal: lines

    hits = dict(server.hits)
    res = runner.invoke(app, ["fetch-facescrub", "--list", "facescrub_actors.txt", "--out", "elsewhere", "--dry-run",
                              "--no-env-proxy"], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    assert "2 images of 1 identities on 1 hosts (1 with a sha256), 0 malformed" in res.output
    assert server.hits == hits and not (tmp_path / "elsewhere").exists()
    assert (tmp_path / "data/raw/facescrub/Cli_Person/Cli_Person_1.jpg").read_bytes() == JPEG
    assert (tmp_path / "mlflow.db").exists()
    res = runner.invoke(app, ["fetch-facescrub", "--list", "nope.txt"])
    assert res.exit_code == 1 and "nope.txt does not exist" in res.output


def _list_text(header: bool, rows: list[tuple], newline: str = "\n", bom: bool = False, trailing: str = "") -> bytes:
    lines = ([HEADER] if header else []) + [f"{n}\t{fid}\t{fid}\t{url}\t1,2,20,22\t{s}" for n, fid, url, s in rows]
    text = ("\ufeff" if bom else "") + newline.join(lines) + newline + trailing
    return text.encode("utf-8")


def test_lists_as_they_circulate_give_the_same_rows(tmp_path):
    from lrlivae.data.facescrub import read_facescrub_rows

    nfc = "Pen\u00e9lope Cruz"
    nfd = unicodedata.normalize("NFD", nfc)
    rows = [(nfc, 1, "http://a.example/1.jpg", sha(JPEG)), ("Zo\u00eb Kravitz", 2, "http://b.example/2.jpg", ""),
            ("\u674e\u51b0\u51b0", 3, "http://c.example/3.jpg", "")]
    variants = {
        "plain": _list_text(True, rows),
        "no_header": _list_text(False, rows),
        "crlf_bom_trailing_blank": _list_text(True, rows, "\r\n", bom=True, trailing="\r\n\r\n  \r\n"),
        "no_header_bom_crlf": _list_text(False, [(nfd, *r[1:]) if r[0] == nfc else r for r in rows], "\r\n", bom=True),
    }
    parsed = {}
    for key, data in variants.items():
        (tmp_path / key).write_bytes(data)
        got, rejects = read_facescrub_rows([tmp_path / key])
        assert not rejects, (key, rejects)
        parsed[key] = [{k: v for k, v in r.items() if k != "where"} for r in got]
    assert all(p == parsed["plain"] for p in parsed.values())
    assert [r["name"] for r in parsed["plain"]] == [nfc, "Zo\u00eb Kravitz", "\u674e\u51b0\u51b0"]
    assert parsed["plain"][0]["sha256"] == sha(JPEG) and parsed["plain"][1]["sha256"] is None
    # five columns (no sha256), with a header naming them or without one
    (tmp_path / "five").write_text("Ann Lee\t7\t7\thttp://a.example/7.jpg\t1,2,20,22\n")
    (tmp_path / "five_h").write_text("name\timage_id\tface_id\turl\tbbox\nAnn Lee\t7\t7\thttp://a.example/7.jpg\t1,2,20,22\n")
    for key in ("five", "five_h"):
        got, rejects = read_facescrub_rows([tmp_path / key])
        assert not rejects and (got[0]["name"], got[0]["face_id"], got[0]["sha256"]) == ("Ann Lee", 7, None)


def test_malformed_lines_get_a_manifest_row_and_the_rest_proceeds(server, tmp_path):
    server.routes["/ml/ok.jpg"] = serve(JPEG)
    good = f"Good One\t1\t1\t{server.url('/ml/ok.jpg')}\t1,2,20,22\t{sha(JPEG)}"
    lines = [HEADER, "Broken\t2\t2\tonly four", good, f"Bad Box\t3\t3\t{server.url('/ml/ok.jpg')}\t1,2,x,22\t",
             f"Dup\t1\t1\t{server.url('/ml/ok.jpg')}\t1,2,20,22\t", ""]
    lst = tmp_path / "facescrub_actresses.txt"
    lst.write_bytes("\r\n".join(lines).encode())
    out = tmp_path / "out"
    s = fetch_facescrub([lst], out, **FAST)
    with open(out / "manifest.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 4 and rows[0]["status"] == "ok" and rows[0]["line"] == "facescrub_actresses.txt:3"
    bad = {r["line"]: r["reason"] for r in rows[1:]}
    assert set(bad) == {"facescrub_actresses.txt:2", "facescrub_actresses.txt:4", "facescrub_actresses.txt:5"}
    assert "line 2" in bad["facescrub_actresses.txt:2"] and "columns" in bad["facescrub_actresses.txt:2"]
    assert "bbox" in bad["facescrub_actresses.txt:4"] and "duplicate face_id 1" in bad["facescrub_actresses.txt:5"]
    assert all(r["status"] == "failed" and r["face_id"] == "" for r in rows[1:])
    assert s.metrics()["malformed"] == 3


def test_progress_without_a_terminal_prints_a_line_every_few_percent():
    from lrlivae.fetch.download import FetchResult
    from lrlivae.fetch.fetch_report import FetchProgress

    buf = io.StringIO()
    bar = FetchProgress(40, stream=buf, every_percent=25, bytes_received=lambda: 2_000_000)
    for i in range(40):
        bar.update(FetchResult(i, "x", "u", "failed" if i % 4 == 0 else "ok", "HTTP 404" if i % 4 == 0 else ""))
    bar.close()
    lines = buf.getvalue().splitlines()
    assert len(lines) == 4 and "\r" not in buf.getvalue()
    assert lines[-1].startswith("fetch facescrub: 40/40 rows (100%)")
    assert "img/s" in lines[-1] and "MB/s" in lines[-1] and "failed 10 (HTTP 404 10)" in lines[-1]
