"""A generic identity-per-folder image tree, and identity subsetting / label dropping for listings.

Layout: <root>/<identity>/<image files>. Identity folders and the files in them are listed in
sorted (code point) order, so the listing is deterministic. Image files are recognised by their
extension, case-insensitively (IMAGE_EXTENSIONS); other files, hidden entries, files directly
under the root and nested sub-folders are ignored; identity folders without images are skipped.
Files are not opened here: a broken image is rejected when it is read for alignment. An image name that
is a symlink to nothing (a dangling link) becomes a Reject of the listing, never a silent skip.
"""
from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import numpy as np

from lrlivae.records import FaceRecord, Reject, SourceListing

IMAGE_EXTENSIONS = frozenset(
    {".jpg", ".jpeg", ".jpe", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".pnm"}
)


def is_image_name(name: str) -> bool:
    """True for a non-hidden file name with an image extension (any case)."""
    return not name.startswith(".") and os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS


def list_identity_folders(root: str | os.PathLike) -> list[tuple[str, list[Path]]]:
    """[(identity, sorted image paths)] for every identity folder holding at least one image.

    Raises FileNotFoundError / NotADirectoryError when root is missing or not a folder."""
    root = Path(root)
    if not root.exists():
        raise FileNotFoundError(f"image folder not found: {root}")
    if not root.is_dir():
        raise NotADirectoryError(f"not a folder: {root}")
    try:
        entries = sorted(os.listdir(root))
    except OSError as e:
        raise OSError(f"cannot list image folder {root}: {e.strerror or e}") from e
    out: list[tuple[str, list[Path]]] = []
    for ident, folder, names in _identity_entries(root, entries):
        images = [folder / n for n in names if (folder / n).is_file()]
        if images:
            out.append((ident, images))
    return out


def _identity_entries(root: Path, entries: list[str]):
    """(identity, folder, sorted image-named entries) of each readable identity folder under root."""
    for ident in entries:
        folder = root / ident
        if ident.startswith(".") or not folder.is_dir():
            continue
        try:
            names = sorted(os.listdir(folder))
        except OSError:
            continue
        yield ident, folder, [n for n in names if is_image_name(n)]


def dangling_links(root: str | os.PathLike) -> list[Path]:
    """Image-named symlinks in the identity folders whose target does not exist (sorted)."""
    root = Path(root)
    out: list[Path] = []
    for _, folder, names in _identity_entries(root, sorted(os.listdir(root))):
        out += [folder / n for n in names if (folder / n).is_symlink() and not (folder / n).exists()]
    return out


def read_imagefolder(root: str | os.PathLike) -> SourceListing:
    """One record per image file, identity = the folder name; dangling symlinks become rejects."""
    records = [
        FaceRecord(path=str(p), identity=ident)
        for ident, images in list_identity_folders(root)
        for p in images
    ]
    rejects = [Reject(str(p), f"dangling symlink (its target {os.readlink(p)} does not exist)")
               for p in dangling_links(root)]
    return SourceListing(records, rejects)


def select_identities(listing: SourceListing, n_identities: int | None, seed: int = 0) -> SourceListing:
    """Keep the records of `n_identities` identities picked at random (deterministic: the distinct
    identities are sorted, then numpy's default_rng(seed) chooses without replacement).

    Records with an empty identity are dropped when a subset is asked for. None keeps everything.
    Raises ValueError when fewer identities exist than asked for."""
    if n_identities is None:
        return listing
    n = int(n_identities)
    if n < 1:
        raise ValueError(f"n_identities must be at least 1, got {n_identities}")
    identities = sorted({r.identity for r in listing.records if r.identity})
    if n > len(identities):
        raise ValueError(f"asked for {n} identities but the source has only {len(identities)}")
    rng = np.random.default_rng(seed)
    picked = {identities[i] for i in rng.choice(len(identities), size=n, replace=False)}
    return SourceListing([r for r in listing.records if r.identity in picked], list(listing.rejects))


def drop_identity_labels(listing: SourceListing) -> SourceListing:
    """Blank every record's identity, keeping the true one in factors["true_identity"]."""
    records = []
    for r in listing.records:
        factors = dict(r.factors)
        factors.setdefault("true_identity", r.identity)
        records.append(dataclasses.replace(r, identity="", factors=factors))
    return SourceListing(records, list(listing.rejects))
