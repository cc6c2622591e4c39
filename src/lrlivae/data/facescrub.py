"""FaceScrub (Ng and Winkler, 2014) from its official lists and an already-downloaded image folder.

The lists (facescrub_actors.txt, facescrub_actresses.txt) are tab separated with the header

    name    image_id    face_id    url    bbox    sha256

where bbox is "x1,y1,x2,y2" in the image's pixels and sha256 is the hash of the image file the
url served when the list was made. The lists are read as they circulate: with or without the header
row (without it, the columns are in the order above, sha256 possibly missing), CRLF or LF line ends,
blank lines anywhere, a UTF-8 BOM, UTF-8 (else Latin-1) text; names are NFC-normalised so that
"Penélope Cruz" is one identity however its accent was encoded. The lists only give urls, so the
images must be downloaded beforehand. This reader expects them under one folder, named after the list row:

    <image_root>/<name>/<name>_<face_id>.<ext>

with <name> the list's name with spaces (and any path separators) replaced by "_", and <ext> the
first of jpg, jpeg, png, gif, bmp (lower case, then upper case) that exists. face_id is unique
across both lists, so one downloaded file per row. `facescrub_image_stem` builds that path without
the extension, for downloaders to use the same naming, and `read_facescrub_rows` gives them the
parsed rows with their urls (lrlivae.fetch.download fetches them).

Every row becomes a FaceRecord with identity = name, box = bbox and sha256 = the listed hash (the
alignment step rejects files whose hash differs). Rows whose image is missing and malformed rows
become Rejects; a list file that does not exist or cannot be read raises.
"""
from __future__ import annotations

import math
import os
import re
import unicodedata
from pathlib import Path, PurePosixPath
from typing import Iterable, Sequence

from lrlivae.records import FaceRecord, Reject, SourceListing

LIST_FILES = ("facescrub_actors.txt", "facescrub_actresses.txt")
COLUMNS = ("name", "image_id", "face_id", "url", "bbox", "sha256")
IMAGE_EXTENSIONS = ("jpg", "jpeg", "png", "gif", "bmp")

_SHA256 = re.compile(r"^[0-9a-fA-F]{64}$")
_UNSAFE = re.compile(r"[\s/\\]")


def facescrub_folder_name(name: str) -> str:
    """The folder (and file prefix) for an identity: spaces and path separators become "_"."""
    folder = _UNSAFE.sub("_", name.strip())
    if folder in ("", ".", ".."):
        raise ValueError(f"unusable FaceScrub name {name!r}")
    return folder


def facescrub_image_stem(name: str, face_id: int) -> str:
    """Relative path of a row's image without extension: "<name>/<name>_<face_id>" (POSIX "/")."""
    folder = facescrub_folder_name(name)
    return str(PurePosixPath(folder) / f"{folder}_{int(face_id)}")


def default_lists(image_root: Path) -> list[Path]:
    """The official list files found in `image_root` (or its parent)."""
    found = []
    for base in (Path(image_root), Path(image_root).parent):
        found = [base / n for n in LIST_FILES if (base / n).is_file()]
        if found:
            break
    return found


def read_facescrub(image_root: str | os.PathLike, lists: Sequence[str | os.PathLike] | None = None) -> SourceListing:
    """Records for every row of the FaceScrub `lists` whose image is under `image_root`.

    lists: list files; default: facescrub_actors.txt and facescrub_actresses.txt in image_root or
    its parent. Raises FileNotFoundError when the image root or a list file is missing and OSError
    when a list cannot be read."""
    root = Path(image_root)
    if not root.is_dir():
        raise FileNotFoundError(f"FaceScrub image folder not found: {root}")
    if lists is None:
        list_paths = default_lists(root)
        if not list_paths:
            expected = ", ".join(str(root / n) for n in LIST_FILES)
            raise FileNotFoundError(f"no FaceScrub list files given and none found (looked for {expected})")
    else:
        list_paths = [Path(p) for p in lists]
        if not list_paths:
            raise ValueError("no FaceScrub list files given")

    records: list[FaceRecord] = []
    rows, rejects = read_facescrub_rows(list_paths)
    finder = _ImageFinder(root)
    for r in rows:
        stem = facescrub_image_stem(r["name"], r["face_id"])
        image = finder.find(stem)
        if image is None:
            rejects.append(Reject(str(root / stem) + ".*", "missing file"))
            continue
        records.append(FaceRecord(path=str(image), identity=r["name"], box=r["box"], sha256=r["sha256"]))
    return SourceListing(records, rejects)


def read_facescrub_rows(lists: Sequence[str | os.PathLike]) -> tuple[list[dict], list[Reject]]:
    """The parsed rows of FaceScrub list files, for tools that need the urls (downloaders).

    Returns (rows, rejects): each row a dict with keys where ("<list>:<line>"), name, face_id (int),
    url, box (x1, y1, x2, y2) and sha256 (lower-case hex or None); malformed lines and repeated
    face_ids become Rejects with the same reasons `read_facescrub` gives. Raises like
    `read_facescrub` when a list file is missing or unreadable."""
    rows: list[dict] = []
    rejects: list[Reject] = []
    seen: dict[int, str] = {}
    for list_path in (Path(p) for p in lists):
        lines = _read_lines(list_path)
        for lineno, row in _rows(list_path, lines, rejects):
            where = f"{list_path}:{lineno}"
            parsed = _parse_row(row)
            if isinstance(parsed, str):
                rejects.append(Reject(where, f"malformed line {lineno} in {list_path.name}: {parsed}"))
                continue
            name, face_id, box, sha = parsed
            if face_id in seen:
                rejects.append(
                    Reject(where, f"malformed line {lineno} in {list_path.name}: duplicate face_id {face_id} "
                                  f"(first at {seen[face_id]})")
                )
                continue
            seen[face_id] = where
            rows.append({"where": where, "name": name, "face_id": face_id, "url": row[3], "box": box, "sha256": sha})
    return rows, rejects


def _read_lines(path: Path) -> list[str]:
    if not path.exists():
        raise FileNotFoundError(f"FaceScrub list file not found: {path}")
    try:
        data = path.read_bytes()
    except OSError as e:
        raise OSError(f"cannot read FaceScrub list file {path}: {e.strerror or e}") from e
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        text = data.decode("latin-1")
    return text.splitlines()


def _rows(path: Path, lines: list[str], rejects: list[Reject]) -> Iterable[tuple[int, list[str]]]:
    """(line number, cells in COLUMNS order) for each data line; uses the header's column order
    when the file has one. The sha256 column may be missing (header-less: 5 cells)."""
    order: list[int | None] = list(range(len(COLUMNS)))
    widths = (len(COLUMNS), len(COLUMNS) - 1)
    header_done = False
    for i, line in enumerate(lines, start=1):
        line = line.lstrip("\ufeff")  # a BOM at the start (or where lists were concatenated)
        if not line.strip():
            continue
        cells = [c.strip() for c in line.split("\t")]
        if not header_done:
            header_done = True
            names = [c.lower() for c in cells]
            if "name" in names and "face_id" in names:
                missing = [c for c in COLUMNS[:-1] if c not in names]
                if missing:
                    raise ValueError(f"FaceScrub list {path} header lacks columns {missing}")
                order = [names.index(c) if c in names else None for c in COLUMNS]
                widths = (len(cells),)
                continue
        if len(cells) not in widths:
            expected = " or ".join(str(w) for w in widths)
            rejects.append(
                Reject(f"{path}:{i}", f"malformed line {i} in {path.name}: expected {expected} tab-separated "
                                      f"columns, got {len(cells)}")
            )
            continue
        yield i, [cells[j] if j is not None and j < len(cells) else "" for j in order]


def _parse_row(cells: list[str]) -> tuple[str, int, tuple[float, float, float, float], str | None] | str:
    """Parsed (name, face_id, box, sha256) or a reason string."""
    name, image_id, face_id, _url, bbox, sha = cells
    name = unicodedata.normalize("NFC", name)
    if not name:
        return "empty name"
    try:
        facescrub_folder_name(name)
    except ValueError:
        return f"unusable name {name!r}"
    try:
        int(image_id)
        fid = int(face_id)
    except ValueError:
        return f"image_id and face_id must be integers, got {image_id!r} and {face_id!r}"
    if fid < 0:
        return f"negative face_id {fid}"
    parts = bbox.split(",")
    if len(parts) != 4:
        return f"bbox must be x1,y1,x2,y2, got {bbox!r}"
    try:
        x0, y0, x1, y1 = (float(v) for v in parts)
    except ValueError:
        return f"bbox must be numbers, got {bbox!r}"
    if not all(math.isfinite(v) for v in (x0, y0, x1, y1)) or x1 <= x0 or y1 <= y0:
        return f"bbox is empty or invalid: {bbox!r}"
    sha_value: str | None = None
    if sha:
        if not _SHA256.match(sha):
            return f"sha256 must be 64 hex digits, got {sha!r}"
        sha_value = sha.lower()
    return name, fid, (x0, y0, x1, y1), sha_value


class _ImageFinder:
    """Finds "<stem>.<ext>" under a root, listing each identity folder once."""

    def __init__(self, root: Path):
        self.root = root
        self._listings: dict[str, set[str]] = {}

    def find(self, stem: str) -> Path | None:
        folder, base = stem.rsplit("/", 1)
        names = self._listings.get(folder)
        if names is None:
            try:
                names = set(os.listdir(self.root / folder))
            except OSError:
                names = set()
            self._listings[folder] = names
        for ext in IMAGE_EXTENSIONS:
            for e in (ext, ext.upper()):
                candidate = f"{base}.{e}"
                if candidate in names and (self.root / folder / candidate).is_file():
                    return self.root / folder / candidate
        return None
