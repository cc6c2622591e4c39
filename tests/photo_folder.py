"""A small folder of real photographs, one sub-folder per person, made offline from scikit-image's LFW subset:
each person is one LFW face, photographed again as other photos would frame it (scaled, turned a few
degrees, shifted, lighter or darker, mirrored), saved as JPEG files. People are the LFW faces in which dlib's
HOG detector finds the face in all six framings (FACES; faces 4, 9 and 13 it never finds); the people of
`make_photo_folder(..., first=k)` are FACES[k], FACES[k + 1], ...: folders with other `first` hold others.

    python -m tests.photo_folder OUT --people 5 --photos 6 [--first 0]
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image

from tests import photos


FACES = (0, 1, 2, 3, 5, 6, 7, 8, 10, 11, 12, 14, 15, 18, 19, 20, 21, 22, 23, 24, 25, 27, 29, 31, 33, 34, 35, 36, 37, 38,
         39)


def person_photos(face: int, n: int, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng([seed, face])
    base = photos.lfw_face(face)
    return [photos.transform(base, scale=rng.uniform(0.9, 1.15), angle=rng.uniform(-8, 8),
                             shift=tuple(rng.uniform(-8, 8, 2)), gain=rng.uniform(0.8, 1.2), mirror=bool(k % 2))
            for k in range(n)]


def make_photo_folder(root: str | Path, people: int, photos_per_person: int, first: int = 0, seed: int = 0) -> Path:
    """Write `<root>/person_<face>/<k>.jpg` for the people FACES[first:first + people]; returns root."""
    root = Path(root)
    if first + people > len(FACES):
        raise ValueError(f"at most {len(FACES)} people, got first={first} + people={people}")
    for face in FACES[first:first + people]:
        d = root / f"person_{face:03d}"
        d.mkdir(parents=True, exist_ok=True)
        for k, img in enumerate(person_photos(face, photos_per_person, seed)):
            Image.fromarray(img).save(d / f"{k:02d}.jpg", quality=92)
    return root


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("--people", type=int, default=5)
    ap.add_argument("--photos", type=int, default=6)
    ap.add_argument("--first", type=int, default=0)
    a = ap.parse_args()
    make_photo_folder(a.out, a.people, a.photos, a.first)
    print(a.out)


if __name__ == "__main__":
    main()
