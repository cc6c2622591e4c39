"""Compare two pipeline runs report by report: every number in reports/**/*.json and the
disentanglement CSVs of run A against run B, key by key.

    python bench/compare_reports.py RUN_A/reports RUN_B/reports [--rtol 1e-6] [--show 50]

Prints how many keys are bit-identical, equal within rtol, different, only in one run, and the wall-clock
keys (which always differ) apart; exits 1 when a non-time key differs. Used to check that a change of the
code's structure changes no number: run the same params.yaml through `dvc repro` before and after it.
"""
from __future__ import annotations

import argparse
import csv
import json
import math
import re
import sys
from pathlib import Path

TIME_KEY = re.compile(r"seconds|wall|elapsed|per_s\b|_s$|throughput|images_per|frames_per", re.I)


def flatten(value, prefix: str = "") -> dict:
    if isinstance(value, dict):
        return {k: v for key, item in value.items() for k, v in flatten(item, f"{prefix}{key}.").items()}
    if isinstance(value, list):
        return {k: v for i, item in enumerate(value) for k, v in flatten(item, f"{prefix}[{i}].").items()}
    return {prefix[:-1]: value}


def read(path: Path) -> dict:
    if path.suffix == ".json":
        return flatten(json.loads(path.read_text()))
    rows = list(csv.reader(path.open()))
    return {f"{r[0]}.{h}": v for r in rows[1:] for h, v in zip(rows[0][1:], r[1:])}


def same(a, b, rtol: float) -> str:
    if a == b or (isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b)):
        return "exact"
    try:
        fa, fb = float(a), float(b)
    except (TypeError, ValueError):
        return "differ"
    return "close" if math.isclose(fa, fb, rel_tol=rtol, abs_tol=0.0) else "differ"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("a", type=Path)
    ap.add_argument("b", type=Path)
    ap.add_argument("--rtol", type=float, default=1e-6)
    ap.add_argument("--show", type=int, default=50, help="differences listed at most")
    args = ap.parse_args()
    files = lambda root: {p.relative_to(root) for p in root.rglob("*") if p.suffix in (".json", ".csv")}  # noqa: E731
    fa, fb = files(args.a), files(args.b)
    counts = dict.fromkeys(("exact", "close", "differ", "time", "only_a", "only_b"), 0)
    listed: list[str] = [f"file only in {'A' if f in fa else 'B'}: {f}" for f in sorted(fa ^ fb)]
    for f in sorted(fa & fb):
        a, b = read(args.a / f), read(args.b / f)
        for k in sorted(set(a) | set(b)):
            if k not in b or k not in a:
                counts["only_a" if k in a else "only_b"] += 1
                continue
            verdict = same(a[k], b[k], args.rtol)
            if verdict != "exact" and TIME_KEY.search(k):
                counts["time"] += 1
                continue
            counts[verdict] += 1
            if verdict == "differ":
                listed.append(f"{f}:{k}: {a[k]!r} != {b[k]!r}")
    print(f"{len(fa & fb)} files in both; keys: " + ", ".join(f"{k} {v}" for k, v in counts.items()))
    for line in listed[: args.show]:
        print("  " + line)
    if len(listed) > args.show:
        print(f"  ... {len(listed) - args.show} more")
    return 1 if counts["differ"] else 0


if __name__ == "__main__":
    sys.exit(main())
