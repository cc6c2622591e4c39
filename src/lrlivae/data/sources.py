"""One entry point for every data source: `list_source(kind, root, ...)`."""
from __future__ import annotations

from pathlib import Path

from lrlivae.records import SourceListing

SOURCE_KINDS = ("synthetic", "facescrub", "casia", "imagefolder", "cifar10", "cifar100")


def list_source(
    kind: str,
    root: Path,
    *,
    lists: list[Path] | None = None,
    n_identities: int | None = None,
    drop_labels: bool = False,
    seed: int = 0,
) -> SourceListing:
    """List the records of a source.

    kind:          one of SOURCE_KINDS.
    root:          the source's folder (FaceScrub: the downloaded image folder).
    lists:         FaceScrub list files (default: the official ones found in root or its parent).
    n_identities:  keep a random subset of this many identities (classes for CIFAR), chosen
                   deterministically from `seed`; None keeps all.
    drop_labels:   blank identities, keeping the truth in factors["true_identity"].

    A missing or unreadable root / list file raises; bad individual inputs come back as rejects.
    """
    from lrlivae.data.imagefolder import drop_identity_labels, read_imagefolder, select_identities

    root = Path(root)
    if lists and kind != "facescrub":
        raise ValueError(f"list files only apply to the facescrub source, not {kind!r}")
    if kind == "casia":
        from lrlivae.data.casia import read_casia

        return read_casia(root, n_identities=n_identities, drop_labels=drop_labels, seed=seed)
    if kind == "synthetic":
        from lrlivae.data.synthetic import read_synthetic

        listing = read_synthetic(root)
    elif kind == "facescrub":
        from lrlivae.data.facescrub import read_facescrub

        listing = read_facescrub(root, lists)
    elif kind == "imagefolder":
        listing = read_imagefolder(root)
    elif kind in ("cifar10", "cifar100"):
        from lrlivae.data.cifar import read_cifar

        listing = read_cifar(root, kind)
    else:
        raise ValueError(f"unknown source kind {kind!r}; valid kinds: {', '.join(SOURCE_KINDS)}")
    listing = select_identities(listing, n_identities, seed)
    if drop_labels:
        listing = drop_identity_labels(listing)
    return listing
