"""Download the FaceScrub images named by the official lists, politely, verifiably and resumably.

`fetch_facescrub(lists, out_root)` reads the lists (`lrlivae.data.facescrub.read_facescrub_rows`) and
saves every image where `read_facescrub` expects it, `<out_root>/<name>/<name>_<face_id>.<ext>`: the path
comes from the list's name and face_id, never from the url (a resolved path outside out_root is
refused), the extension from the image format found in the body (jpg, png, gif, bmp).

HTTP (urllib3: pooled connections, proxies from the environment, redirects, timeouts, gzip, size caps,
the retry policy) is `lrlivae.fetch.http_fetch`; the rows are scheduled by `lrlivae.fetch.host_pool`
(`workers` threads, round-robin over hosts, at most `per_host` rows of a host in flight, a row waiting
for its retry back in the queue); progress, the closing table and dry runs are `lrlivae.fetch.fetch_report`.

A body is streamed to a hidden temporary file (".<base>.<random>.part") in its final folder, hashed on
the way, fsynced, checked (the list's sha256 when it has one, and it must decode as an image) and only
then renamed to its final name: a killed run never leaves a partial file under a final name, and the
next run removes leftover .part files. A rerun skips every row whose final file exists and verifies; a
file that does not verify is deleted and fetched again.

The outcome of every list row (ok, skipped, failed) is written to `<out_root>/manifest.csv`
(MANIFEST_COLUMNS; `line` is "<list file>:<line number>") atomically at the end, in list order, then
the malformed list lines (failed, no face_id, the reason naming the line); a FetchSummary is returned.
"""
from __future__ import annotations

import csv
import io
import os
import tempfile
import threading
import time
from contextlib import closing
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Annotated, Sequence

from pydantic import Field

from lrlivae.data.facescrub import IMAGE_EXTENSIONS, facescrub_folder_name, facescrub_image_stem, read_facescrub_rows
from lrlivae.fetch.fetch_report import FetchProgress, FetchSummary, row_host
from lrlivae.fetch.host_pool import HostPool
from lrlivae.fetch.http_fetch import HOST_GIVE_UP, Failure, HttpClient, new_retry, next_retry
from lrlivae.imageio import BadImage, read_image, sha256_file
from lrlivae.io import atomic_write_bytes

MANIFEST = "manifest.csv"
MANIFEST_COLUMNS = ("face_id", "name", "url", "status", "reason", "path", "bytes", "attempts", "sha256", "line")
DEFAULT_USER_AGENT = "Mozilla/5.0 (compatible; lrlivae-fetch-facescrub/0.2)"
PART_SUFFIX = ".part"
FORMAT_EXTENSIONS = {"JPEG": "jpg", "MPO": "jpg", "PNG": "png", "GIF": "gif", "BMP": "bmp"}


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
    line: str = ""


@dataclass
class FetchOptions:
    """How `fetch_facescrub` downloads: threads, the per-host cap, the HTTP client's limits and the retry
    policy (lrlivae.fetch.http_fetch), and whether a progress bar is shown."""

    workers: Annotated[int, Field(ge=1, le=256, description="concurrent downloads")] = 8
    per_host: Annotated[int, Field(ge=1, le=64, description="at most this many at a time from one host")] = 2
    timeout: Annotated[float, Field(gt=0, le=600, description="seconds for connecting and for each read")] = 10.0
    retries: Annotated[int, Field(ge=0, le=20, description="retries of transient failures")] = 3
    backoff: Annotated[float, Field(ge=0, le=60, description="first retry delay in seconds, doubled each "
                                                           "retry (http_fetch.new_retry)")] = 0.5
    max_bytes: Annotated[int, Field(ge=1_000, le=2_000_000_000, description="larger bodies are rejected")] = 20_000_000
    user_agent: str = DEFAULT_USER_AGENT
    host_give_up: int = HOST_GIVE_UP  # a host whose last this many connection attempts failed is given up
    env_proxy: Annotated[bool, Field(description="use HTTP_PROXY / HTTPS_PROXY / NO_PROXY; --no-env-proxy: "
                                                 "off")] = True
    progress: bool = True

    def check(self) -> None:
        if (self.workers < 1 or self.per_host < 1 or self.timeout <= 0 or self.retries < 0 or self.backoff < 0
                or self.max_bytes < 1):
            raise ValueError("workers, per_host, timeout and max_bytes must be positive, retries and backoff >= 0")


def fetch_facescrub(lists: Sequence[str | os.PathLike], out_root: str | os.PathLike,
                    options: FetchOptions | None = None, **settings) -> FetchSummary:
    """Download every image of the FaceScrub `lists` into `out_root` (see the module docstring), as
    `options` say, or FetchOptions' fields given as keywords (`workers=4, retries=0`; over `options`).

    Raises when a list file is missing or unreadable, and on local write errors (disk full ...);
    every problem with a url is a failed manifest row instead."""
    o = replace(options or FetchOptions(), **settings)
    if not lists:
        raise ValueError("no FaceScrub list files given")
    o.check()
    start = time.monotonic()
    rows, rejects = read_facescrub_rows(lists)
    root = Path(out_root)
    root.mkdir(parents=True, exist_ok=True)
    _remove_leftovers(root, {r["name"] for r in rows})
    stop = threading.Event()
    client = HttpClient(per_host=o.per_host, timeout=o.timeout, max_bytes=o.max_bytes, user_agent=o.user_agent,
                        env_proxy=o.env_proxy, host_give_up=o.host_give_up, stop=stop, connections=o.workers)
    rower = _RowFetcher(root, client, o.retries, o.backoff, stop)
    tasks = [_Task(row, row_host(row["url"]), _result(row)) for row in rows]
    bar = FetchProgress(len(tasks), enabled=o.progress, bytes_received=lambda: client.bytes_received)
    try:
        with closing(HostPool(tasks, rower.step, workers=o.workers, per_host=o.per_host, stop=stop).run()) as settled:
            for task in settled:
                bar.update(task.result)
    finally:
        bar.close()
        client.close()
    done = [t.result for t in tasks]
    done += [FetchResult(None, "", "", "failed", f"malformed list line: {j.reason}", line=_line(j.path))
             for j in rejects]
    summary = FetchSummary(done, root / MANIFEST, time.monotonic() - start, client.bytes_received)
    _write_manifest(summary.manifest, done)
    return summary


@dataclass(eq=False)
class _Task:
    row: dict
    host: str
    result: FetchResult
    retry: object = None  # urllib3 Retry once the first attempt started
    folder: Path | None = None
    base: str = ""


# ------------------------------------------------------------------------------------------ one row
class _RowFetcher:
    def __init__(self, root: Path, client: HttpClient, retries: int, backoff: float, stop: threading.Event):
        self.root, self.root_resolved, self.client = root, root.resolve(), client
        self.retries, self.backoff, self.stop = retries, backoff, stop

    def step(self, task: _Task) -> float | None:
        """One attempt at the task's row: None when its result is final, else seconds until the next."""
        res, row = task.result, task.row
        if task.retry is None:
            if not self._prepare(task):
                return None
            task.retry = new_retry(self.retries, self.backoff)
        res.attempts += 1
        try:
            path, size, digest = self._attempt(row, task.folder, task.base)
        except Failure as f:
            res.reason = f.reason
            task.retry, wait = next_retry(task.retry, f, row["url"])
            return None if task.retry is None or self.stop.is_set() else wait
        res.status, res.reason, res.path, res.bytes, res.sha256 = "ok", "", self._rel(path), size, digest
        return None

    def _prepare(self, task: _Task) -> bool:
        """Find the row's folder; False when the row is settled already (skipped, or a bad name)."""
        res, row = task.result, task.row
        try:
            stem = facescrub_image_stem(row["name"], row["face_id"])
            folder = self.root / stem.split("/")[0]
            resolved = folder.resolve()
            if resolved == self.root_resolved or not resolved.is_relative_to(self.root_resolved):
                res.reason = "path escapes out_root"
                return False
            task.folder, task.base = folder, stem.split("/")[1]
            if self._existing(row, folder, task.base, res):
                return False
            folder.mkdir(parents=True, exist_ok=True)
        except ValueError as e:  # e.g. a NUL in the name
            res.reason = f"bad file name ({e})"
            return False
        except OSError as e:
            res.reason = f"local file error ({e.strerror or type(e).__name__})"
            return False
        return True

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
                if (digest == row["sha256"]) if row["sha256"] else _decodes(path):
                    res.status, res.path, res.sha256 = "skipped", self._rel(path), digest
                    res.bytes = path.stat().st_size
                    return True
                path.unlink()
        return False

    def _attempt(self, row: dict, folder: Path, base: str) -> tuple[Path, int, str]:
        fd, name = tempfile.mkstemp(prefix=f".{base}.", suffix=PART_SUFFIX, dir=folder)
        tmp = Path(name)
        try:
            with os.fdopen(fd, "wb") as f:
                got = self.client.get(row["url"], f)
                f.flush()
                os.fsync(f.fileno())
            if row["sha256"] and got.sha256 != row["sha256"]:
                raise Failure("sha256 mismatch")
            try:
                fmt = read_image(tmp).format
            except BadImage as e:
                raise Failure(f"not an image: {e.reason}") from None
            if fmt not in FORMAT_EXTENSIONS:
                raise Failure(f"unsupported image format {fmt}")
            final = folder / f"{base}.{FORMAT_EXTENSIONS[fmt]}"
            os.replace(tmp, final)
            return final, got.size, got.sha256
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise

    def _rel(self, path: Path) -> str:
        return path.relative_to(self.root).as_posix()


# ------------------------------------------------------------------------------------------ helpers
def _result(row: dict) -> FetchResult:
    return FetchResult(row["face_id"], row["name"], row["url"], "failed", line=_line(row["where"]))


def _line(where: str) -> str:
    """"<list file name>:<line>" from a "<list path>:<line>"."""
    path, _, lineno = where.rpartition(":")
    return f"{Path(path).name}:{lineno}"


def _decodes(path: Path) -> bool:
    try:
        read_image(path)
        return True
    except BadImage:
        return False


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
