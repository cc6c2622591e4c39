"""The downloader's HTTP layer (lrlivae.fetch.http_fetch, host_pool, proxy_env) against loopback servers
and proxies: timeouts, redirects, Retry-After, gzip, kept-alive connections, HTTP(S) proxies with NO_PROXY,
percent-encoding, per-host limits and unreachable hosts."""
from __future__ import annotations

import gzip
import time

import pytest

from lrlivae.fetch.download import fetch_facescrub
from tests.conftest import closed_port
from tests.download_kit import (  # noqa: F401  (fixtures: no_env_proxy applies to every test)
    FAST,
    JPEG,
    PNG,
    leftovers,
    manifest,
    no_env_proxy,
    serve,
    server,
    server2,
    sha,
    status,
    write_list,
    _image,
)
from tests.loopback import Proxy, Server, self_signed_tls


def test_slow_and_stalled_servers_time_out_after_bounded_retries(server, tmp_path, monkeypatch):
    from lrlivae.fetch import http_fetch

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
    from lrlivae.fetch.http_fetch import MAX_RETRY_AFTER, Failure, new_retry, next_retry

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
    from lrlivae.fetch.proxy_env import no_proxy_matches, proxy_for

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
