"""Download the FaceScrub images named by the official lists, politely, verifiably and resumably.

`fetch_facescrub(lists, out_root)` reads the lists with `lrlivae.data.facescrub.read_facescrub_rows` and
saves every image where `read_facescrub` expects it, `<out_root>/<name>/<name>_<face_id>.<ext>`: the
path comes from the list's name and face_id (`facescrub_image_stem`), never from the url, and the
extension from the image format detected in the body (jpg, png, gif, bmp), never from the url or a
header. A resolved path outside out_root is refused.

Each url is fetched by a pool of `workers` threads, at most `per_host` at a time from one host, over
plain HTTP(S) with `timeout` seconds for connecting and for each read (a whole attempt is abandoned
after ATTEMPT_TIMEOUT_FACTOR x timeout). Redirects are followed (at most MAX_REDIRECTS). Transient
failures (connection errors and resets, timeouts, bodies cut short, HTTP 5xx, 408 and 429) are retried
`retries` times after backoff x 2^k seconds (longer when a 429/503 says Retry-After); permanent ones
are not: other HTTP statuses, a text/html (or other non-image) content type, a body over `max_bytes`
(by Content-Length or while streaming), a sha256 different from the list's, a body that does not
decode as an image (`lrlivae.imageio.read_image`). A host whose last `host_give_up` (HOST_GIVE_UP)
connection attempts all failed is given up for the rest of the run.

A body is streamed to a hidden temporary file (".<base>.<random>.part") in its final folder, hashed on
the way, fsynced, checked, and only then renamed to its final name, so a killed run never leaves a
partial file under a final name; leftover .part files are removed by the next run. Running again
skips every row whose final file exists and verifies (its sha256 when the list gives one, else it
decodes); a file that does not verify is deleted and fetched again.

The outcome of every list row (ok, skipped, failed) is written to `<out_root>/manifest.csv`
(MANIFEST_COLUMNS) atomically at the end, in list order, followed by the malformed list lines (failed,
no face_id), and returned as a FetchSummary.
"""
from __future__ import annotations

import csv
import hashlib
import http.client
import io
import os
import random
import socket
import ssl
import tempfile
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Sequence
from urllib.parse import quote, urljoin, urlsplit

from lrlivae.data.facescrub import IMAGE_EXTENSIONS, facescrub_folder_name, facescrub_image_stem, read_facescrub_rows
from lrlivae.imageio import BadImage, read_image, sha256_file
from lrlivae.io import atomic_write_bytes

MANIFEST = "manifest.csv"
MANIFEST_COLUMNS = ("face_id", "name", "url", "status", "reason", "path", "bytes", "attempts", "sha256")
DEFAULT_USER_AGENT = "Mozilla/5.0 (compatible; lrlivae-fetch-facescrub/0.1)"
MAX_REDIRECTS = 5
ATTEMPT_TIMEOUT_FACTOR = 10
HOST_GIVE_UP = 8
PART_SUFFIX = ".part"
FORMAT_EXTENSIONS = {"JPEG": "jpg", "MPO": "jpg", "PNG": "png", "GIF": "gif", "BMP": "bmp"}
_REDIRECTS = (301, 302, 303, 307, 308)
_TRANSIENT_STATUS = (408, 429)
_NOT_IMAGE_TYPES = ("application/json", "application/xml", "application/xhtml+xml", "application/javascript")
_URL_SAFE = "/%:@!$&'()*+,;=-._~?"


@dataclass
class FetchResult:
    """The outcome of one list row (one manifest line). path is relative to out_root."""

    face_id: int | None
    name: str
    url: str
    status: str  # ok | skipped | failed
    reason: str = ""
    path: str = ""
    bytes: int = 0
    attempts: int = 0
    sha256: str = ""


@dataclass
class FetchSummary:
    results: list[FetchResult]
    manifest: Path
    seconds: float = 0.0
    counts: dict[str, int] = field(init=False)

    def __post_init__(self):
        c = Counter(r.status for r in self.results)
        self.counts = {s: c.get(s, 0) for s in ("ok", "skipped", "failed")}

    def top_reasons(self, n: int = 5) -> list[tuple[str, int]]:
        """The most common failure reasons (details after ':' or '(' dropped), most common first."""
        keys = Counter(_reason_key(r.reason) for r in self.results if r.status == "failed")
        return keys.most_common(n)

    def metrics(self) -> dict[str, float]:
        malformed = sum(r.face_id is None for r in self.results)
        return {
            "rows": len(self.results), **self.counts, "malformed": malformed,
            "complete": self.counts["ok"] + self.counts["skipped"],
            "bytes_downloaded": sum(r.bytes for r in self.results if r.status == "ok"),
            "seconds": round(self.seconds, 3),
        }

    def describe(self) -> str:
        c = self.counts
        lines = [f"{len(self.results)} list rows: {c['ok']} downloaded, {c['skipped']} already there, "
                 f"{c['failed']} failed (in {self.seconds:.1f}s)"]
        if self.top_reasons():
            lines.append("most common failures: " + ", ".join(f"{k} ({v})" for k, v in self.top_reasons()))
        lines.append(f"manifest: {self.manifest}")
        return "\n".join(lines)


def fetch_facescrub(
    lists: Sequence[str | os.PathLike],
    out_root: str | os.PathLike,
    *,
    workers: int = 8,
    per_host: int = 2,
    timeout: float = 10.0,
    retries: int = 3,
    backoff: float = 0.5,
    max_bytes: int = 20_000_000,
    user_agent: str = DEFAULT_USER_AGENT,
    progress: bool = True,
    host_give_up: int = HOST_GIVE_UP,
) -> FetchSummary:
    """Download every image of the FaceScrub `lists` into `out_root` (see the module docstring).

    Raises when a list file is missing or unreadable, and on local write errors (disk full ...);
    every problem with a url is a failed manifest row instead."""
    if not lists:
        raise ValueError("no FaceScrub list files given")
    if workers < 1 or per_host < 1 or timeout <= 0 or retries < 0 or backoff < 0 or max_bytes < 1:
        raise ValueError("workers, per_host, timeout and max_bytes must be positive, retries and backoff >= 0")
    start = time.monotonic()
    rows, rejects = read_facescrub_rows(lists)
    root = Path(out_root)
    root.mkdir(parents=True, exist_ok=True)
    _remove_leftovers(root, {r["name"] for r in rows})
    results: list[FetchResult | None] = [None] * len(rows)
    fetcher = _Fetcher(root, per_host=per_host, timeout=timeout, retries=retries, backoff=backoff,
                       max_bytes=max_bytes, user_agent=user_agent, host_give_up=host_give_up)
    from tqdm import tqdm

    bar = tqdm(total=len(rows), desc="fetch facescrub", unit="img", disable=not progress, mininterval=1.0)
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="fetch")
    try:
        futures = {pool.submit(fetcher.fetch, rows[i]): i for i in _interleave_hosts(rows)}
        for fut in as_completed(futures):
            res = fut.result()
            results[futures[fut]] = res
            bar.update(1)
            bar.set_postfix_str(f"{res.status} {res.reason}"[:40], refresh=False)
    except BaseException:
        fetcher.stop.set()
        pool.shutdown(wait=True, cancel_futures=True)
        raise
    finally:
        bar.close()
    pool.shutdown(wait=True)
    done = [r for r in results if r is not None]
    done += [FetchResult(None, "", "", "failed", f"malformed list line: {j.reason}") for j in rejects]
    summary = FetchSummary(done, root / MANIFEST, time.monotonic() - start)
    _write_manifest(summary.manifest, done)
    return summary


# ------------------------------------------------------------------------------------------ one row
class _Failure(Exception):
    """A failed attempt: `retry` for transient ones, `wait` the least delay the server asked for."""

    def __init__(self, reason: str, retry: bool = False, wait: float = 0.0):
        super().__init__(reason)
        self.reason, self.retry, self.wait = reason, retry, wait


class _Fetcher:
    def __init__(self, root: Path, *, per_host, timeout, retries, backoff, max_bytes, user_agent, host_give_up):
        self.root, self.root_resolved = root, root.resolve()
        self.per_host, self.timeout, self.retries, self.backoff = per_host, timeout, retries, backoff
        self.max_bytes, self.user_agent, self.host_give_up = max_bytes, user_agent, host_give_up
        self.stop = threading.Event()
        self._lock = threading.Lock()
        self._slots: dict[str, threading.Semaphore] = {}
        self._refused: Counter = Counter()
        self._ssl = ssl.create_default_context()

    def fetch(self, row: dict) -> FetchResult:
        res = FetchResult(row["face_id"], row["name"], row["url"], "failed")
        try:
            stem = facescrub_image_stem(row["name"], row["face_id"])
            folder = self.root / stem.split("/")[0]
            resolved = folder.resolve()
            if resolved == self.root_resolved or not resolved.is_relative_to(self.root_resolved):
                res.reason = "path escapes out_root"
                return res
            base = stem.split("/")[1]
            if self._existing(row, folder, base, res):
                return res
            folder.mkdir(parents=True, exist_ok=True)
        except ValueError as e:  # e.g. a NUL in the name
            res.reason = f"bad file name ({e})"
            return res
        except OSError as e:
            res.reason = f"local file error ({e.strerror or type(e).__name__})"
            return res
        self._download(row, folder, base, res)
        return res

    def _existing(self, row: dict, folder: Path, base: str, res: FetchResult) -> bool:
        """Mark `res` skipped when a verified final file exists; delete final files that do not verify."""
        try:
            names = set(os.listdir(folder))
        except FileNotFoundError:
            return False
        for ext in IMAGE_EXTENSIONS:
            for e in (ext, ext.upper()):
                path = folder / f"{base}.{e}"
                if f"{base}.{e}" not in names or not path.is_file():
                    continue
                digest = sha256_file(path)
                good = digest == row["sha256"] if row["sha256"] else _decodes(path)
                if good:
                    res.status, res.path, res.sha256 = "skipped", self._rel(path), digest
                    res.bytes = path.stat().st_size
                    return True
                path.unlink()
        return False

    def _download(self, row: dict, folder: Path, base: str, res: FetchResult) -> None:
        for attempt in range(1, self.retries + 2):
            if self.stop.is_set():
                res.reason = res.reason or "interrupted"
                return
            res.attempts = attempt
            try:
                path, size, digest = self._attempt(row["url"], row["sha256"], folder, base)
            except _Failure as f:
                res.reason = f.reason
                if not f.retry or attempt > self.retries:
                    return
                delay = max(self.backoff * 2 ** (attempt - 1) * (1 + 0.25 * random.random()), f.wait)
                if self.stop.wait(delay):
                    return
                continue
            res.status, res.reason, res.path, res.bytes, res.sha256 = "ok", "", self._rel(path), size, digest
            return

    def _rel(self, path: Path) -> str:
        return path.relative_to(self.root).as_posix()

    # ---------------------------------------------------------------------------------- HTTP
    def _attempt(self, url: str, sha: str | None, folder: Path, base: str) -> tuple[Path, int, str]:
        deadline = time.monotonic() + ATTEMPT_TIMEOUT_FACTOR * self.timeout
        for _hop in range(MAX_REDIRECTS + 1):
            parts = urlsplit(url)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise _Failure("unsupported url")
            try:
                port = parts.port or (443 if parts.scheme == "https" else 80)
            except ValueError:
                raise _Failure("unsupported url") from None
            host = f"{parts.scheme}://{parts.hostname.lower()}:{port}"
            if self.host_give_up and self._refused[host] >= self.host_give_up:
                raise _Failure(f"host unreachable (gave up after {self.host_give_up} failed connections)")
            with self._slot(host):
                conn = self._connect(parts.scheme, parts.hostname, port, host)
                try:
                    resp = self._get(conn, parts)
                    if resp.status in _REDIRECTS:
                        location = resp.getheader("Location")
                        if not location:
                            raise _Failure(f"HTTP {resp.status} without Location")
                        url = urljoin(url, location.strip())
                        continue
                    return self._receive(resp, sha, folder, base, deadline)
                finally:
                    conn.close()
        raise _Failure("too many redirects")

    def _slot(self, host: str) -> threading.Semaphore:
        with self._lock:
            return self._slots.setdefault(host, threading.Semaphore(self.per_host))

    def _connect(self, scheme: str, hostname: str, port: int, host: str) -> http.client.HTTPConnection:
        if scheme == "https":
            conn = http.client.HTTPSConnection(hostname, port, timeout=self.timeout, context=self._ssl)
        else:
            conn = http.client.HTTPConnection(hostname, port, timeout=self.timeout)
        try:
            conn.connect()
        except (OSError, http.client.HTTPException) as e:
            conn.close()
            failure = _network_failure(e)
            if failure.retry:
                with self._lock:
                    self._refused[host] += 1
            raise failure from None
        with self._lock:
            self._refused[host] = 0
        return conn

    def _get(self, conn: http.client.HTTPConnection, parts) -> http.client.HTTPResponse:
        target = quote(parts.path or "/", safe=_URL_SAFE)
        if parts.query:
            target += "?" + quote(parts.query, safe=_URL_SAFE)
        headers = {"User-Agent": self.user_agent, "Accept": "image/*,*/*;q=0.5", "Accept-Encoding": "identity",
                   "Connection": "close"}
        try:
            conn.request("GET", target, headers=headers)
            resp = conn.getresponse()
        except (OSError, http.client.HTTPException) as e:
            raise _network_failure(e) from None
        if resp.status == 200 or resp.status in _REDIRECTS:
            return resp
        retry = resp.status >= 500 or resp.status in _TRANSIENT_STATUS
        after = resp.getheader("Retry-After", "")
        wait = min(float(after), 60.0) if after.strip().isdigit() else 0.0
        raise _Failure(f"HTTP {resp.status}", retry=retry, wait=wait)

    def _receive(self, resp, sha: str | None, folder: Path, base: str, deadline: float) -> tuple[Path, int, str]:
        length = (resp.getheader("Content-Length") or "").strip()
        if length.isdigit() and int(length) > self.max_bytes:
            raise _Failure("too large (over max_bytes)")
        ctype = (resp.getheader("Content-Type") or "").split(";")[0].strip().lower()
        if ctype.startswith("text/") or ctype in _NOT_IMAGE_TYPES:
            raise _Failure(f"not an image (content type {ctype})")
        fd, name = tempfile.mkstemp(prefix=f".{base}.", suffix=PART_SUFFIX, dir=folder)
        tmp = Path(name)
        try:
            digest, size = self._stream(resp, fd, deadline)
            if sha and digest != sha:
                raise _Failure("sha256 mismatch")
            try:
                fmt = read_image(tmp).format
            except BadImage as e:
                raise _Failure(f"not an image: {e.reason}") from None
            if fmt not in FORMAT_EXTENSIONS:
                raise _Failure(f"unsupported image format {fmt}")
            final = folder / f"{base}.{FORMAT_EXTENSIONS[fmt]}"
            os.replace(tmp, final)
            return final, size, digest
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise

    def _stream(self, resp, fd: int, deadline: float) -> tuple[str, int]:
        h, size = hashlib.sha256(), 0
        with os.fdopen(fd, "wb") as f:
            while True:
                try:
                    block = resp.read(1 << 16)
                except (OSError, http.client.HTTPException) as e:
                    raise _network_failure(e) from None
                if not block:
                    break
                size += len(block)
                if size > self.max_bytes:
                    raise _Failure("too large (over max_bytes)")
                if time.monotonic() > deadline:
                    raise _Failure("timeout (transfer too slow)", retry=True)
                h.update(block)
                f.write(block)
            f.flush()
            os.fsync(f.fileno())
        return h.hexdigest(), size


# ------------------------------------------------------------------------------------------ helpers
def _network_failure(e: BaseException) -> _Failure:
    """A transient _Failure for a network error (a TLS certificate error is permanent)."""
    if isinstance(e, ssl.SSLCertVerificationError):
        return _Failure("TLS certificate error")
    for kind, reason in (
        (socket.gaierror, "cannot resolve host"),
        (TimeoutError, "timeout"),
        (http.client.IncompleteRead, "incomplete body"),
        (http.client.RemoteDisconnected, "server closed the connection"),
        (ConnectionRefusedError, "connection refused"),
        ((ConnectionResetError, ConnectionAbortedError, BrokenPipeError), "connection reset"),
        (ssl.SSLError, "TLS error"),
        (http.client.HTTPException, "bad HTTP response"),
    ):
        if isinstance(e, kind):
            return _Failure(reason, retry=True)
    return _Failure(f"connection error ({type(e).__name__})", retry=True)


def _decodes(path: Path) -> bool:
    try:
        read_image(path)
        return True
    except BadImage:
        return False


def _reason_key(reason: str) -> str:
    for sep in (":", " ("):
        reason = reason.split(sep)[0]
    return reason


def _interleave_hosts(rows: list[dict]) -> list[int]:
    """Row indices ordered round-robin over hosts, so the pool is not stuck behind one host's limit."""
    by_host: dict[str, list[int]] = {}
    for i, row in enumerate(rows):
        try:
            host = (urlsplit(row["url"]).hostname or "").lower()
        except ValueError:
            host = ""
        by_host.setdefault(host, []).append(i)
    queues = list(by_host.values())
    order: list[int] = []
    for k in range(max((len(q) for q in queues), default=0)):
        order.extend(q[k] for q in queues if k < len(q))
    return order


def _remove_leftovers(root: Path, names: set[str]) -> None:
    """Delete temporary files a killed run left behind (the manifest's and the images')."""
    resolved_root = root.resolve()
    folders = {root}
    for name in names:
        try:
            folders.add(root / facescrub_folder_name(name))
        except ValueError:
            pass
    for folder in folders:
        try:
            if not folder.resolve().is_relative_to(resolved_root):
                continue
            entries = os.listdir(folder)
        except (OSError, ValueError):
            continue
        for entry in entries:
            part = entry.startswith(".") and entry.endswith(PART_SUFFIX)
            manifest_tmp = folder == root and entry.startswith(f".{MANIFEST}.") and entry.endswith(".tmp")
            if part or manifest_tmp:
                (folder / entry).unlink(missing_ok=True)


def _write_manifest(path: Path, results: list[FetchResult]) -> None:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=MANIFEST_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for r in results:
        row = asdict(r)
        row["face_id"] = "" if r.face_id is None else r.face_id
        writer.writerow(row)
    atomic_write_bytes(path, buf.getvalue().encode("utf-8"))
