"""A small aligned set for smoke and speed runs: `faces.npy` (uint8, N x S x S x 3) + `index.parquet`, as the
`align` stage writes them. Each identity is its own mean colour plus noise (no rendering, no detection),
so a short training run has something learnable; the splits are 2 test, 1 val and the rest train per identity.

    python bench/tiny_faces.py OUT/data/aligned/labeled --identities 20 --per-identity 30
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from lrlivae.data.aligned import INDEX, AlignedWriter  # noqa: E402


def write_tiny_aligned(root: Path, identities: int, per_identity: int, size: int = 64, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    writer = AlignedWriter(root / "faces.npy", capacity=identities * per_identity, size=size)
    rows = []
    for i in range(identities):
        colour = rng.uniform(40, 215, size=3)
        for k in range(per_identity):
            light = rng.uniform(-1, 1)
            img = rng.normal(colour + 25 * light, 20, size=(size, size, 3))
            writer.append(np.clip(img, 0, 255).astype(np.uint8))
            split = "test" if k < 2 else ("val" if k < 3 else "train")
            rows.append({"path": f"id{i}/{k}.png", "identity": f"id_{i:04d}", "split": split, "f_light_x": light})
    writer.close()
    pd.DataFrame(rows).to_parquet(root / INDEX)
    return root


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("root", type=Path)
    ap.add_argument("--identities", type=int, default=20)
    ap.add_argument("--per-identity", type=int, default=30)
    ap.add_argument("--size", type=int, default=64)
    args = ap.parse_args()
    write_tiny_aligned(args.root, args.identities, args.per_identity, args.size)
    print(f"{args.root}: {args.identities * args.per_identity} faces of {args.identities} identities")


if __name__ == "__main__":
    main()
