"""Throughput of `fetch_facescrub` with 1 and with 8 workers against loopback image servers.

A child process serves `--images` small JPEGs under `--hosts` host names, the loopback addresses
127.0.0.2, 127.0.0.3, ... (Linux routes all of 127/8 to loopback), each answer after `--latency`
seconds, and counts the requests in progress on each host. The downloader runs once per worker count
into a fresh folder with `--per-host` as its cap; the bench prints images/s for each, the ratio, and
the most requests the servers ever saw at once on one host (must not exceed the cap).

    python bench/download_speed.py                      # 2000 images, 20 hosts, 50 ms, per_host 2
    python bench/download_speed.py --workers 1 8 64        # 64 workers: the cap (20 hosts x 2) binds
"""
from __future__ import annotations

import argparse
import hashlib
import io
import json
import multiprocessing as mp
import shutil
import sys
import tempfile
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "src"), str(ROOT)]

from lrlivae.fetch.download import fetch_facescrub  # noqa: E402


def small_jpegs(n: int) -> list[bytes]:
    rng = np.random.default_rng(0)
    out = []
    for _ in range(n):
        buf = io.BytesIO()
        Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(buf, format="JPEG", quality=80)
        out.append(buf.getvalue())
    return out


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def do_GET(self):
        srv = self.server
        if self.path == "/_stats":
            body = json.dumps({"max_active": srv.max_active, "requests": srv.requests}).encode()
            return self._send(body, "application/json")
        if self.path == "/_reset":
            with srv.lock:
                srv.max_active = srv.requests = 0
            return self._send(b"{}", "application/json")
        with srv.lock:
            srv.active += 1
            srv.requests += 1
            srv.max_active = max(srv.max_active, srv.active)
        try:
            time.sleep(srv.latency)
            k = int(self.path.rsplit("/", 1)[1].split(".")[0])
            self._send(srv.images[k % len(srv.images)], "image/jpeg")
        finally:
            with srv.lock:
                srv.active -= 1

    def _send(self, body: bytes, ctype: str):
        self.send_response(200)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def serve(hosts: list[str], port: int, latency: float, images: list[bytes], ready) -> None:
    servers = []
    for host in hosts:
        srv = ThreadingHTTPServer((host, port), _Handler)
        srv.daemon_threads = True
        srv.lock, srv.latency, srv.images = threading.Lock(), latency, images
        srv.active = srv.max_active = srv.requests = 0
        threading.Thread(target=srv.serve_forever, daemon=True).start()
        servers.append(srv)
    ready.set()
    threading.Event().wait()


def stats(hosts: list[str], port: int, reset: bool = False) -> list[dict]:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    path = "/_reset" if reset else "/_stats"
    return [json.loads(opener.open(f"http://{h}:{port}{path}", timeout=5).read()) for h in hosts]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--images", type=int, default=2000)
    ap.add_argument("--hosts", type=int, default=20)
    ap.add_argument("--latency", type=float, default=0.05)
    ap.add_argument("--per-host", type=int, default=2)
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 8])
    ap.add_argument("--port", type=int, default=18431)
    args = ap.parse_args()

    hosts = [f"127.0.0.{2 + i}" for i in range(args.hosts)]
    images = small_jpegs(50)
    ready = mp.Event()
    child = mp.Process(target=serve, args=(hosts, args.port, args.latency, images, ready), daemon=True)
    child.start()
    if not ready.wait(30):
        sys.exit("the loopback servers did not start")
    work = Path(tempfile.mkdtemp(prefix="bench_download_"))
    try:
        lines = ["name\timage_id\tface_id\turl\tbbox\tsha256"]
        for k in range(args.images):
            host = hosts[k % len(hosts)]
            digest = hashlib.sha256(images[k % len(images)]).hexdigest()
            lines.append(f"Person {k % 97}\t{k}\t{k}\thttp://{host}:{args.port}/img/{k}.jpg\t1,1,30,30\t{digest}")
        lst = work / "facescrub_bench.txt"
        lst.write_text("\n".join(lines) + "\n")
        print(f"{args.images} images, {args.hosts} hosts ({hosts[0]}..{hosts[-1]}), {args.latency * 1000:.0f} ms "
              f"latency, per_host {args.per_host}")
        rates = {}
        for w in args.workers:
            stats(hosts, args.port, reset=True)
            t0 = time.perf_counter()
            s = fetch_facescrub([lst], work / f"out_w{w}", workers=w, per_host=args.per_host, timeout=10,
                                progress=False, env_proxy=False)
            secs = time.perf_counter() - t0
            seen = stats(hosts, args.port)
            rates[w] = s.counts["ok"] / secs
            print(f"workers {w:>2}: {s.counts['ok']}/{args.images} ok in {secs:6.1f}s = {rates[w]:6.1f} images/s; "
                  f"server saw {sum(x['requests'] for x in seen)} requests, max concurrent per host "
                  f"{max(x['max_active'] for x in seen)} (cap {args.per_host})")
        base = args.workers[0]
        for w in args.workers[1:]:
            print(f"throughput ratio workers {w} / workers {base}: {rates[w] / rates[base]:.2f}x")
    finally:
        shutil.rmtree(work, ignore_errors=True)
        child.terminate()


if __name__ == "__main__":
    main()
