"""What the FaceScrub downloader (lrlivae.fetch.download) tells its user: the progress display while it
runs, the summary table at the end, and the plan of a dry run.

`FetchProgress` shows images/s, MB/s and the failures by reason: a tqdm bar on a terminal, else one line
every `every_percent` percent of the rows (no carriage returns in logs). `FetchSummary.describe()` is
the closing table (rows by status, failures by reason, rates). `plan_facescrub(lists)` parses the lists
and counts identities, images and hosts without fetching anything (`fetch-facescrub --dry-run`).
"""
from __future__ import annotations

import os
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence, TextIO

from urllib3.exceptions import LocationParseError
from urllib3.util import parse_url

from lrlivae.data.facescrub import read_facescrub_rows
from lrlivae.records import Reject

STATUSES = ("ok", "skipped", "failed")


def reason_key(reason: str) -> str:
    """A failure reason without its details (after ':' or ' ('), for counting."""
    for sep in (":", " ("):
        reason = reason.split(sep)[0]
    return reason


def row_host(url: str) -> str:
    """The host name of a list url as the HTTP layer counts it (lower case, IDNA), "" when it has none."""
    try:
        return (parse_url(url.strip()).host or "").lower()
    except (LocationParseError, ValueError):
        return ""


def _rate(n: float, seconds: float) -> float:
    return n / seconds if seconds > 0 else 0.0


def _table(title: tuple[str, str], rows: list[tuple[str, int]], total: int) -> list[str]:
    width = max([len(title[0])] + [len(k) for k, _ in rows])
    lines = [f"  {title[0]:<{width}}  {title[1]:>8}  {'share':>6}"]
    lines += [f"  {k:<{width}}  {v:>8}  {100 * v / max(total, 1):>5.1f}%" for k, v in rows]
    return lines


# ------------------------------------------------------------------------------------------ progress
class FetchProgress:
    def __init__(self, total: int, *, enabled: bool = True, bytes_received: Callable[[], int] = lambda: 0,
                 stream: TextIO | None = None, every_percent: float = 5.0, tty: bool | None = None):
        self.total, self.enabled, self.bytes_received = total, enabled and total > 0, bytes_received
        self.stream = stream or sys.stderr
        self.tty = (hasattr(self.stream, "isatty") and self.stream.isatty()) if tty is None else tty
        self.every, self.next_mark = every_percent, every_percent
        self.done, self.failures, self.start = 0, Counter(), time.monotonic()
        self.bar = None
        if self.enabled and self.tty:
            from tqdm import tqdm

            self.bar = tqdm(total=total, desc="fetch facescrub", unit="img", mininterval=0.5, file=self.stream)

    def rates(self) -> str:
        secs = time.monotonic() - self.start
        text = f"{_rate(self.bytes_received(), secs) / 1e6:.2f} MB/s"
        n = sum(self.failures.values())
        if n:
            top = ", ".join(f"{k} {v}" for k, v in self.failures.most_common(3))
            text += f", failed {n} ({top})"
        return text

    def update(self, result) -> None:
        self.done += 1
        if result.status == "failed":
            self.failures[reason_key(result.reason)] += 1
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.set_postfix_str(self.rates(), refresh=False)
            self.bar.update(1)
            return
        percent = 100 * self.done / self.total
        if percent + 1e-9 >= self.next_mark or self.done == self.total:
            while self.next_mark <= percent + 1e-9:
                self.next_mark += self.every
            secs = time.monotonic() - self.start
            print(f"fetch facescrub: {self.done}/{self.total} rows ({percent:.0f}%), "
                  f"{_rate(self.done, secs):.1f} img/s, {self.rates()}", file=self.stream, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


# ------------------------------------------------------------------------------------------ summary
@dataclass
class FetchSummary:
    results: list  # of download.FetchResult, in manifest order
    manifest: Path
    seconds: float = 0.0
    bytes_received: int = 0
    counts: dict[str, int] = field(init=False)

    def __post_init__(self):
        c = Counter(r.status for r in self.results)
        self.counts = {s: c.get(s, 0) for s in STATUSES}

    def top_reasons(self, n: int | None = 5) -> list[tuple[str, int]]:
        """The most common failure reasons (details dropped), most common first."""
        return Counter(reason_key(r.reason) for r in self.results if r.status == "failed").most_common(n)

    def metrics(self) -> dict[str, float]:
        malformed = sum(r.face_id is None for r in self.results)
        return {
            "rows": len(self.results), **self.counts, "malformed": malformed,
            "complete": self.counts["ok"] + self.counts["skipped"],
            "bytes_downloaded": sum(r.bytes for r in self.results if r.status == "ok"),
            "seconds": round(self.seconds, 3),
        }

    def describe(self) -> str:
        n, secs = len(self.results), self.seconds
        lines = [f"{n} list rows in {secs:.1f}s: {_rate(self.counts['ok'], secs):.1f} images/s downloaded, "
                 f"{_rate(self.bytes_received, secs) / 1e6:.2f} MB/s"]
        lines += _table(("status", "rows"), [(s, self.counts[s]) for s in STATUSES], n)
        reasons = self.top_reasons(None)
        if reasons:
            lines += _table(("failures by reason", "rows"), reasons, n)
        lines.append(f"manifest: {self.manifest}")
        return "\n".join(lines)


# ------------------------------------------------------------------------------------------ dry run
@dataclass
class FetchPlan:
    lists: list[Path]
    rows: list[dict]
    malformed: list[Reject]

    @property
    def identities(self) -> int:
        return len({r["name"] for r in self.rows})

    @property
    def hosts(self) -> Counter:
        return Counter(row_host(r["url"]) for r in self.rows)

    def describe(self, top: int = 10) -> str:
        hosts = self.hosts
        with_sha = sum(r["sha256"] is not None for r in self.rows)
        lines = [f"dry run, nothing fetched: {len(self.lists)} list file(s), {len(self.rows)} images of "
                 f"{self.identities} identities on {len(hosts)} hosts ({with_sha} with a sha256), "
                 f"{len(self.malformed)} malformed line(s)"]
        if hosts:
            lines += _table((f"top hosts (of {len(hosts)})", "images"), hosts.most_common(top), len(self.rows))
        for j in self.malformed[:top]:
            lines.append(f"  malformed: {j.reason}")
        if len(self.malformed) > top:
            lines.append(f"  ... and {len(self.malformed) - top} more malformed line(s)")
        return "\n".join(lines)


def plan_facescrub(lists: Sequence[str | os.PathLike]) -> FetchPlan:
    """Parse the FaceScrub `lists` as `fetch_facescrub` would, fetching nothing."""
    if not lists:
        raise ValueError("no FaceScrub list files given")
    rows, rejects = read_facescrub_rows(lists)
    return FetchPlan([Path(p) for p in lists], rows, rejects)
