"""The FaceScrub downloader against HTTP servers started here on 127.0.0.1 (never anything else):
good images, dead and lying urls, retries, timeouts, size caps, redirects, resets, path escapes,
per-host limits, a killed run resumed, and the `fetch-facescrub` command end to end."""
from __future__ import annotations

import csv
import gzip
import hashlib
import io
import json
import re
import os
import subprocess
import sys
import textwrap
import threading
import time
import unicodedata
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from lrlivae.data.download import MANIFEST_COLUMNS, fetch_facescrub
from lrlivae.data.facescrub import read_facescrub
from tests.conftest import closed_port, tiny_params, write_params
from tests.loopback import Proxy, Server, self_signed_tls

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


# ------------------------------------------------------------------------------------- servers
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


def test_slow_and_stalled_servers_time_out_after_bounded_retries(server, tmp_path, monkeypatch):
    from lrlivae.data import http_fetch

    def stalled_body(h, n):  # headers and half the body, then nothing
        h.send_response(200)
        h.send_header("Content-Type", "image/jpeg")
        h.send_header("Content-Length", str(len(JPEG)))
        h.end_headers()
        h.wfile.write(JPEG[:300])
        h.wfile.flush()
        server.stop.wait(5)

    def trickle(h, n):  # a byte every 50 ms: no read ever times out, the transfer is just too slow
        h.send_response(200)
        h.send_header("Content-Type", "image/jpeg")
        h.send_header("Content-Length", str(len(JPEG)))
        h.end_headers()
        for i in range(len(JPEG)):
            if server.stop.wait(0.05):
                return
            h.wfile.write(JPEG[i:i + 1])
            h.wfile.flush()

    monkeypatch.setattr(http_fetch, "ATTEMPT_TIMEOUT_FACTOR", 3)  # a whole attempt: at most 3 x 0.4 s
    server.routes.update({
        "/slow/headers": lambda h, n: server.stop.wait(5) or h.reply(200, JPEG),
        "/slow/stalled": stalled_body,
        "/slow/trickle": trickle,
    })
    lst = write_list(tmp_path / "l.txt", [("Slow", i, server.url(p), "") for i, p in
                                          enumerate(["/slow/headers", "/slow/stalled", "/slow/trickle"])])
    t0 = time.monotonic()
    s = fetch_facescrub([lst], tmp_path / "out", workers=3, per_host=3, timeout=0.4, retries=1, backoff=0.01,
                        progress=False)
    assert time.monotonic() - t0 < 5
    got = [(r.status, r.reason, r.attempts) for r in s.results]
    assert got == [("failed", "timeout", 2), ("failed", "timeout", 2), ("failed", "timeout (transfer too slow)", 2)]
    assert not leftovers(tmp_path / "out")


def test_redirects_relative_absolute_cross_host_and_loops(server, server2, tmp_path):
    def redirect(to, code=302):
        return lambda h, n: h.reply(code, b"", "text/html", {"Location": to})

    server.routes.update({
        "/rd/start": redirect("middle"),  # relative to /rd/
        "/rd/middle": redirect("/rd/abs", 301),
        "/rd/abs": redirect(server.url("/rd/final.png"), 307),
        "/rd/final.png": serve(PNG, "image/png"),
        "/rd/away": redirect(server2.url("/moved/here.jpg"), 308),
        "/rd/loop": redirect("/rd/loop2"),
        "/rd/loop2": redirect(server.url("/rd/loop")),
        "/rd/nowhere": lambda h, n: h.reply(302, b"", "text/html"),
        **{f"/rd/chain/{k}": redirect(f"/rd/chain/{k + 1}") for k in range(10)},
    })
    server2.routes["/moved/here.jpg"] = serve(JPEG)
    lst = write_list(tmp_path / "l.txt", [("Moved", 1, server.url("/rd/start"), sha(PNG)),
                                          ("Moved", 2, server.url("/rd/loop"), ""),
                                          ("Moved", 3, server.url("/rd/away"), sha(JPEG)),
                                          ("Moved", 4, server.url("/rd/chain/0"), ""),
                                          ("Moved", 5, server.url("/rd/nowhere"), "")])
    out = tmp_path / "out"
    fetch_facescrub([lst], out, **FAST)
    m = manifest(out)
    assert m["1"]["status"] == "ok" and (out / "Moved/Moved_1.png").read_bytes() == PNG
    assert m["3"]["status"] == "ok" and (out / "Moved/Moved_3.jpg").read_bytes() == JPEG
    assert server2.hits["/moved/here.jpg"] == 1
    assert (m["2"]["status"], m["2"]["reason"], m["2"]["attempts"]) == ("failed", "redirect loop", "1")
    assert (m["4"]["status"], m["4"]["reason"]) == ("failed", "too many redirects")
    assert server.hits["/rd/chain/5"] == 1 and "/rd/chain/6" not in server.hits  # MAX_REDIRECTS = 5 hops
    assert m["5"]["reason"] == "HTTP 302 without Location"


def test_retry_after_is_obeyed_without_holding_a_worker(server, server2, tmp_path):
    times: dict[str, list[float]] = {"429": [], "503": []}

    def busy_then_ok(code):
        def route(h, n):
            times[code].append(time.monotonic())
            if n == 1:
                return h.reply(int(code), b"slow down", "text/plain", {"Retry-After": "1"})
            h.reply(200, JPEG)
        return route

    server.routes.update({"/ra/429.jpg": busy_then_ok("429"), "/ra/503.jpg": busy_then_ok("503")})
    others: list[float] = []
    for i in range(4):
        body = _image("JPEG", 30 + i)
        server2.routes[f"/ra/other{i}.jpg"] = lambda h, n, body=body: others.append(time.monotonic()) or h.reply(200, body)
    lst = write_list(tmp_path / "l.txt", [("Busy", 0, server.url("/ra/429.jpg"), ""), ("Busy", 1, server.url("/ra/503.jpg"), "")]
                     + [("Other", i + 2, server2.url(f"/ra/other{i}.jpg"), "") for i in range(4)])
    t0 = time.monotonic()
    s = fetch_facescrub([lst], tmp_path / "out", workers=1, per_host=1, timeout=3, retries=2, backoff=0.01,
                        progress=False)
    assert s.counts["ok"] == 6 and s.results[0].attempts == 2 and s.results[1].attempts == 2
    for code in ("429", "503"):
        assert times[code][1] - times[code][0] >= 0.95  # waited as told, not the 0.01 s backoff
    assert time.monotonic() - t0 < 3  # the two waits overlapped
    # the one worker fetched the other host's rows while the first rows waited for their retry
    assert len(others) == 4 and max(others) < min(times["429"][1], times["503"][1])


def test_retry_policy_caps_retry_after_and_counts_attempts():
    from lrlivae.data.http_fetch import MAX_RETRY_AFTER, Failure, new_retry, next_retry

    retry = new_retry(3, 0.5)
    assert retry.parse_retry_after("3600") == MAX_RETRY_AFTER
    retry, wait = next_retry(retry, Failure("timeout", retry=True), "u")
    assert wait == 0.5  # the first retry waits `backoff`
    retry, wait = next_retry(retry, Failure("HTTP 503", retry=True, status=503, retry_after=7.0), "u")
    assert wait == 7.0  # Retry-After, longer than the backoff
    retry, wait = next_retry(retry, Failure("timeout", retry=True), "u")
    assert 2.0 <= wait <= 2.125  # backoff x 2^(3-1) plus jitter: urllib3's schedule
    assert next_retry(retry, Failure("timeout", retry=True), "u") == (None, 0.0)  # 3 retries spent
    assert next_retry(new_retry(5, 0.5), Failure("HTTP 404", status=404), "u") == (None, 0.0)


def test_gzip_content_encoding_is_decoded_before_hash_and_decode(server, tmp_path):
    def gzipped(h, n):
        assert "gzip" in h.headers.get("Accept-Encoding", "")
        h.reply(200, gzip.compress(JPEG), "image/jpeg", {"Content-Encoding": "gzip"})

    server.routes.update({"/gz/a.jpg": gzipped,
                          "/gz/bad.jpg": lambda h, n: h.reply(200, b"\x1f\x8bnot gzip at all", "image/jpeg",
                                                              {"Content-Encoding": "gzip"})})
    lst = write_list(tmp_path / "l.txt", [("Zipped", 1, server.url("/gz/a.jpg"), sha(JPEG)),
                                          ("Zipped", 2, server.url("/gz/bad.jpg"), "")])
    out = tmp_path / "out"
    fetch_facescrub([lst], out, **FAST)
    m = manifest(out)
    assert m["1"]["status"] == "ok" and (out / "Zipped/Zipped_1.jpg").read_bytes() == JPEG
    assert (m["2"]["status"], m["2"]["reason"], m["2"]["attempts"]) == ("failed", "bad content encoding", "1")
    assert not leftovers(out)


def test_kept_alive_connections_are_reused_and_dropped_ones_survived(tmp_path):
    bodies = [_image("JPEG", 40 + i) for i in range(12)]
    for close_after in (False, True):
        srv = Server("127.0.0.1").start()
        srv.keep_alive, srv.close_after_response = True, close_after
        try:
            for i, b in enumerate(bodies):
                srv.routes[f"/ka/{i}.jpg"] = serve(b)
            lst = write_list(tmp_path / f"l{close_after}.txt",
                             [("Kept", i, srv.url(f"/ka/{i}.jpg"), sha(b)) for i, b in enumerate(bodies)])
            s = fetch_facescrub([lst], tmp_path / f"out{close_after}", workers=2, per_host=2, timeout=3, retries=2,
                                backoff=0.01, progress=False)
            assert s.counts["ok"] == 12, [r.reason for r in s.results]
            if close_after:  # the server hung up after every answer without saying so
                assert srv.connections >= 12
            else:  # a pool of kept-alive connections: far fewer than one per image
                assert srv.connections <= 4
        finally:
            srv.close()


def test_http_proxy_from_the_environment_with_no_proxy(server, server2, tmp_path, monkeypatch):
    proxy = Proxy().start()
    try:
        server.routes["/px/a.jpg"] = serve(JPEG)
        server2.routes["/px/b.jpg"] = serve(PNG, "image/png")
        lst = write_list(tmp_path / "l.txt", [("Proxied", 1, server.url("/px/a.jpg"), sha(JPEG)),
                                              ("Proxied", 2, server2.url("/px/b.jpg"), sha(PNG))])
        monkeypatch.setenv("HTTP_PROXY", proxy.url.replace("http://", "http://user:p%40ss@"))
        monkeypatch.setenv("NO_PROXY", "localhost, 127.0.0.2")
        s = fetch_facescrub([lst], tmp_path / "out", **FAST)
        assert s.counts["ok"] == 2
        # the proxy relayed the 127.0.0.1 row as an absolute-URI request; 127.0.0.2 went direct
        assert proxy.requests == [("GET", server.url("/px/a.jpg"))]
        assert proxy.auth == ["Basic dXNlcjpwQHNz"]  # user:p@ss
        assert server2.hits["/px/b.jpg"] == 1

        s = fetch_facescrub([lst], tmp_path / "out2", **FAST, env_proxy=False)  # turned off
        assert s.counts["ok"] == 2 and len(proxy.requests) == 1
        monkeypatch.setenv("http_proxy", f"http://127.0.0.1:{closed_port()}")  # lower case wins, as in curl
        monkeypatch.delenv("NO_PROXY")
        s = fetch_facescrub([lst], tmp_path / "out3", **{**FAST, "retries": 0})
        assert [r.reason.split(":")[0] for r in s.results] == ["proxy error", "proxy error"]
    finally:
        proxy.close()


def test_https_through_a_connect_proxy_from_https_proxy(tmp_path, monkeypatch):
    pytest.importorskip("cryptography")
    tls, ca_file = self_signed_tls(tmp_path)
    srv = Server("127.0.0.1", tls=tls).start()
    proxy = Proxy().start()
    try:
        srv.routes["/tls/a.jpg"] = serve(JPEG)
        lst = write_list(tmp_path / "l.txt", [("Secure", 1, srv.url("/tls/a.jpg"), sha(JPEG))])
        monkeypatch.setenv("HTTPS_PROXY", proxy.url)
        monkeypatch.setenv("SSL_CERT_FILE", ca_file)  # trust the test's certificate (as a company CA would be)
        s = fetch_facescrub([lst], tmp_path / "out", **FAST)
        assert s.counts["ok"] == 1 and srv.hits["/tls/a.jpg"] == 1
        host_port = srv.url("").removeprefix("https://")
        assert proxy.requests == [("CONNECT", host_port)]
        monkeypatch.delenv("SSL_CERT_FILE")
        s = fetch_facescrub([lst], tmp_path / "out2", **FAST)
        assert (s.results[0].reason, s.results[0].attempts) == ("TLS certificate error", 1)
        assert proxy.requests[-1] == ("CONNECT", host_port)
    finally:
        proxy.close()
        srv.close()


def test_no_proxy_matching():
    from lrlivae.data.proxy_env import no_proxy_matches, proxy_for

    assert no_proxy_matches("anything.org", 80, "*")
    assert no_proxy_matches("img.example.com", 80, "example.com") and no_proxy_matches("example.com", 80, ".example.com")
    assert not no_proxy_matches("badexample.com", 80, "example.com")
    assert no_proxy_matches("10.1.2.3", 80, "localhost,10.0.0.0/8") and not no_proxy_matches("11.1.2.3", 80, "10.0.0.0/8")
    assert no_proxy_matches("host.lan", 8080, "host.lan:8080") and not no_proxy_matches("host.lan", 80, "host.lan:8080")
    assert not no_proxy_matches("example.com", 80, "")
    proxies = {"http": "proxy.corp:3128", "https": "http://proxy.corp:3128", "no": "intranet"}
    assert proxy_for("http://a.org/x.jpg", proxies) == "http://proxy.corp:3128"
    assert proxy_for("https://wiki.intranet/x.jpg", proxies) is None
    assert proxy_for("http://a.org/x.jpg", {}) is None
    assert proxy_for("http://B\u00fccher.de/x.jpg", {"http": "p:1", "no": "xn--bcher-kva.de"}) is None  # IDNA
    assert proxy_for("http://a.org:8080/x.jpg", {"http": "p:1", "no": "a.org:80"}) == "http://p:1"
    assert proxy_for("http://a.org/x.jpg", {"http": "p:1", "no": "a.org:80"}) is None  # the default port


def test_urls_with_spaces_and_non_ascii_are_sent_percent_encoded(server, tmp_path):
    server.routes["/enc/P%C3%A9n%C3%A9lope%20Cruz.jpg"] = serve(JPEG)
    lst = write_list(tmp_path / "l.txt", [("Pen\u00e9lope Cruz", 1, server.url("/enc/P\u00e9n\u00e9lope Cruz.jpg"), "")])
    s = fetch_facescrub([lst], tmp_path / "out", **FAST)
    assert s.counts["ok"] == 1 and (tmp_path / "out" / "Pen\u00e9lope_Cruz" / "Pen\u00e9lope_Cruz_1.jpg").is_file()


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


def test_redirects_to_another_host_count_against_that_host(server, server2, tmp_path):
    server2.routes["/cap/slow.jpg"] = lambda h, n: server2.stop.wait(0.15) or h.reply(200, JPEG)
    server.routes["/cap/go"] = lambda h, n: h.reply(302, b"", "text/html", {"Location": server2.url("/cap/slow.jpg")})
    rows = [("Capped", i, server.url(f"/cap/go?{i}"), "") for i in range(4)]
    rows += [("Capped", 10 + i, server2.url(f"/cap/slow.jpg?{i}"), "") for i in range(4)]
    lst = write_list(tmp_path / "l.txt", rows)
    s = fetch_facescrub([lst], tmp_path / "out", workers=8, per_host=2, timeout=3, retries=0, progress=False)
    assert s.counts["ok"] == 8
    assert server2.max_active["/cap/slow.jpg"] == 2  # 4 direct + 4 redirected rows, never more than 2 at once


def test_an_unreachable_host_is_given_up(tmp_path):
    url = f"http://127.0.0.1:{closed_port()}/x.jpg"
    lst = write_list(tmp_path / "l.txt", [("Gone", i, url, "") for i in range(10)])
    s = fetch_facescrub([lst], tmp_path / "out", workers=1, per_host=1, timeout=1, retries=1, backoff=0.01,
                        progress=False, host_give_up=3)
    assert s.counts["failed"] == 10
    reasons = [r.reason for r in s.results]
    # after 3 refused connections the host is given up: the rows still queued (and the retries) fail at once
    assert all(r == "connection refused" or r.startswith("host unreachable (gave up after 3") for r in reasons)
    assert reasons[-1].startswith("host unreachable")
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


# ------------------------------------------------------------------------------------------- lists
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
    from lrlivae.data.download import FetchResult
    from lrlivae.data.fetch_report import FetchProgress

    buf = io.StringIO()
    bar = FetchProgress(40, stream=buf, every_percent=25, bytes_received=lambda: 2_000_000)
    for i in range(40):
        bar.update(FetchResult(i, "x", "u", "failed" if i % 4 == 0 else "ok", "HTTP 404" if i % 4 == 0 else ""))
    bar.close()
    lines = buf.getvalue().splitlines()
    assert len(lines) == 4 and "\r" not in buf.getvalue()
    assert lines[-1].startswith("fetch facescrub: 40/40 rows (100%)")
    assert "img/s" in lines[-1] and "MB/s" in lines[-1] and "failed 10 (HTTP 404 10)" in lines[-1]
