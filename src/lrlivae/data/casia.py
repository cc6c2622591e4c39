"""CASIA-WebFace: one folder per numeric identity ("0000045/001.jpg"), read like an image folder.

n_identities picks a random subset of identities (deterministic for a seed: identities sorted, then
numpy's default_rng(seed) chooses). drop_labels blanks the identity for unsupervised use; the true
identity always stays in factors["true_identity"] so evaluation can still use it.
"""
from __future__ import annotations

import dataclasses
import os

from lrlivae.data.imagefolder import drop_identity_labels, read_imagefolder, select_identities
from lrlivae.records import SourceListing


def read_casia(
    root: str | os.PathLike,
    *,
    n_identities: int | None = None,
    drop_labels: bool = False,
    seed: int = 0,
) -> SourceListing:
    """Records of CASIA-WebFace under `root` (raises FileNotFoundError when root is missing)."""
    listing = select_identities(read_imagefolder(root), n_identities, seed)
    if drop_labels:
        return drop_identity_labels(listing)
    records = [
        dataclasses.replace(r, factors={**r.factors, "true_identity": r.identity}) for r in listing.records
    ]
    return SourceListing(records, list(listing.rejects))
