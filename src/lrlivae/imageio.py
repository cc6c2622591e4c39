"""Reading image files into RGB arrays without crashing, hanging or exhausting memory.

Every problem with an input file becomes a `BadImage` carrying a short reason that ends up in
rejects.csv: missing or empty files, files that are not images, truncated or corrupt data, modes we
cannot convert, and images too large to decode.

Size policy (`max_pixels`, default 50 megapixels):

* The dimensions are read from the header first; nothing is decoded before that check.
* A JPEG above the limit is decoded reduced by 1/2, 1/4 or 1/8 (libjpeg DCT scaling through
  Pillow's `draft`), the smallest reduction that fits. `read_image` reports the scale, so boxes and
  landmarks given in the file's pixel coordinates can be mapped onto the decoded array.
  Progressive JPEGs keep every DCT coefficient in memory while decoding, so reduction does not
  help them: above the limit they are rejected like other formats.
* Any other format above the limit is rejected with reason "too large (WxH)".

Conversions to 8-bit RGB: grayscale and 1-bit images are replicated to three channels; 16- and
32-bit grayscale is scaled to 8 bits (not clipped); CMYK (including Adobe's inverted CMYK JPEGs,
which Pillow un-inverts) is converted with Pillow's CMYK->RGB transform; images with an alpha
channel or palette transparency (RGBA, LA, PA, P with a transparent index) are composited over a
white background. EXIF orientation is not applied by default, so arrays are in the file's stored
pixel order, the frame annotation boxes of the sources refer to.
"""
from __future__ import annotations

import hashlib
import math
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

DEFAULT_MAX_PIXELS = 50_000_000

# Truncated files must fail loudly rather than decode half an image filled with grey.
ImageFile.LOAD_TRUNCATED_IMAGES = False

_JPEG_MAGIC = b"\xff\xd8\xff"
_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
_BACKGROUND = 255  # white, for compositing transparent pixels


class BadImage(Exception):
    """An input file that cannot be used as an image; `reason` is short and human readable."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class DecodedImage:
    """An image read by `read_image`.

    rgb:            (H, W, 3) uint8 RGB, possibly reduced from the file's size.
    original_size:  (width, height) stored in the file.
    scale:          decoded pixels per file pixel (1.0, or 1/2, 1/4, 1/8 for reduced JPEGs);
                    a point (x, y) in the file maps to (x * scale, y * scale) in `rgb`.
    format:         Pillow's format name ("JPEG", "PNG", ...).
    mode:           Pillow's mode of the stored pixels before conversion ("RGB", "L", "I;16", ...).
    """

    rgb: np.ndarray
    original_size: tuple[int, int]
    scale: float
    format: str
    mode: str = ""


def sha256_file(path: str | os.PathLike, chunk_size: int = 1 << 20) -> str:
    """Hex SHA-256 of a file's bytes (raises OSError if it cannot be read)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            block = f.read(chunk_size)
            if not block:
                break
            h.update(block)
    return h.hexdigest()


def read_rgb(path: str | os.PathLike, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Read an image file as an (H, W, 3) uint8 RGB array; any problem raises `BadImage`.

    Large JPEGs may come back reduced (see the module docstring); use `read_image` to learn the
    scale."""
    return read_image(path, max_pixels=max_pixels).rgb


def read_image(
    path: str | os.PathLike,
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    exif_transpose: bool = False,
) -> DecodedImage:
    """Read an image file; any problem with the file raises `BadImage` with a short reason."""
    if max_pixels < 1:
        raise ValueError(f"max_pixels must be positive, got {max_pixels}")
    p = Path(path)
    try:
        st = p.stat()
    except FileNotFoundError:
        if p.is_symlink():
            raise BadImage(f"dangling symlink (its target {os.readlink(p)} does not exist)") from None
        raise BadImage("missing file") from None
    except OSError as e:
        raise BadImage(f"unreadable file ({e.strerror or e})") from None
    if not p.is_file():
        raise BadImage("not a regular file")
    if st.st_size == 0:
        raise BadImage("empty file (0 bytes)")

    try:
        with open(p, "rb") as f:
            head = f.read(16)
            f.seek(0)
            im = _open_header(f, head)
            try:
                return _decode(im, max_pixels=max_pixels, exif_transpose=exif_transpose)
            finally:
                im.close()
    except BadImage:
        raise
    except MemoryError:
        raise BadImage("out of memory while decoding") from None
    except OSError as e:
        # Pillow reports truncation, decoder errors and broken streams as OSError.
        raise BadImage(_oserror_reason(e)) from None
    except (
        SyntaxError, ValueError, TypeError, IndexError, KeyError, EOFError, ArithmeticError,
        Image.DecompressionBombError,
    ) as e:
        # Corrupt headers surface from plugins as any of these.
        raise BadImage(f"corrupt image ({_short(e)})") from None


def _open_header(f, head: bytes) -> Image.Image:
    """Open lazily (header only) with Pillow, bypassing its bomb guard only for the formats we can
    size safely ourselves (JPEG is reduced while decoding, PNG is rejected by size)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            return Image.open(f)
    except UnidentifiedImageError:
        if head.lstrip()[:1] in (b"<", b"{", b"[") or _looks_like_text(head):
            raise BadImage("not an image (text file)") from None
        raise BadImage("not an image (unrecognised or corrupt data)") from None
    except Image.DecompressionBombError as e:
        f.seek(0)
        try:
            if head.startswith(_JPEG_MAGIC):
                from PIL import JpegImagePlugin

                return JpegImagePlugin.JpegImageFile(f)
            if head.startswith(_PNG_MAGIC):
                from PIL import PngImagePlugin

                return PngImagePlugin.PngImageFile(f)
        except Exception:  # noqa: BLE001 - any failure here means a corrupt header
            raise BadImage("corrupt image header") from None
        raise BadImage(f"too large ({_short(e)})") from None


def _decode(im: Image.Image, *, max_pixels: int, exif_transpose: bool) -> DecodedImage:
    w, h = im.size
    fmt = im.format or "?"
    mode = im.mode
    if w < 1 or h < 1:
        raise BadImage(f"empty image ({w}x{h})")
    scale = 1.0
    if w * h > max_pixels:
        progressive = bool(im.info.get("progressive") or im.info.get("progression"))
        if fmt not in ("JPEG", "MPO") or progressive:
            raise BadImage(f"too large ({w}x{h})")
        s = next((s for s in (2, 4, 8) if math.ceil(w / s) * math.ceil(h / s) <= max_pixels), None)
        if s is None:
            raise BadImage(f"too large ({w}x{h})")
        got = im.draft(im.mode, (w // s, h // s))
        if got is None or im.size[0] * im.size[1] > max_pixels:
            raise BadImage(f"too large ({w}x{h})")
        used = (getattr(im, "decoderconfig", None) or (s,))[0]
        scale = 1.0 / float(used)  # libjpeg maps file pixel x onto x / s exactly

    im.load()  # full decode now; truncation raises here (LOAD_TRUNCATED_IMAGES is False)
    if exif_transpose:
        im = ImageOps.exif_transpose(im)  # a uniform scale survives the 90-degree turns
    rgb = _to_rgb(im)
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise BadImage(f"unsupported image layout {rgb.shape} {rgb.dtype}")
    return DecodedImage(np.ascontiguousarray(rgb), (w, h), scale, fmt, mode)


def _to_rgb(im: Image.Image) -> np.ndarray:
    mode = im.mode
    if mode == "RGB":
        return np.asarray(im)
    if mode in ("L", "1"):
        g = np.asarray(im.convert("L"))
        return np.repeat(g[:, :, None], 3, axis=2)
    if mode.startswith("I;16") or mode in ("I", "F"):
        return _high_depth_gray(im)
    if mode == "P":
        if "transparency" in im.info:
            return _composite(im.convert("RGBA"))
        return np.asarray(im.convert("RGB"))
    if mode in ("RGBA", "LA", "PA", "La", "RGBa"):
        return _composite(im.convert("RGBA"))
    if mode in ("CMYK", "YCbCr", "LAB", "HSV", "RGBX"):
        return np.asarray(im.convert("RGB"))
    try:
        return np.asarray(im.convert("RGB"))
    except (ValueError, OSError):
        raise BadImage(f"unsupported image mode {mode}") from None


def _composite(rgba: Image.Image) -> np.ndarray:
    a = np.asarray(rgba, dtype=np.float32)
    alpha = a[:, :, 3:4] / 255.0
    out = a[:, :, :3] * alpha + _BACKGROUND * (1.0 - alpha)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def _high_depth_gray(im: Image.Image) -> np.ndarray:
    arr = np.asarray(im)
    if im.mode.startswith("I;16"):
        g = (arr.astype(np.uint32) >> 8).astype(np.uint8)  # 16-bit -> top 8 bits
    elif im.mode == "I":
        a = arr.astype(np.int64)
        hi = int(a.max()) if a.size else 0
        if hi <= 255 and int(a.min()) >= 0:
            g = a.astype(np.uint8)
        else:  # 16-bit PNGs open as 32-bit "I" in some Pillow versions
            g = (np.clip(a, 0, 65535) >> 8).astype(np.uint8)
    else:  # "F"
        a = np.nan_to_num(arr.astype(np.float64), nan=0.0, posinf=0.0, neginf=0.0)
        if a.size and a.max() <= 1.0 and a.min() >= 0.0:
            a = a * 255.0
        g = np.clip(np.rint(a), 0, 255).astype(np.uint8)
    return np.repeat(g[:, :, None], 3, axis=2)


def _looks_like_text(head: bytes) -> bool:
    if not head:
        return False
    try:
        head.decode("utf-8")
    except UnicodeDecodeError:
        return False
    printable = sum(32 <= b < 127 or b in (9, 10, 13) for b in head)
    return printable / len(head) > 0.95


def _oserror_reason(e: OSError) -> str:
    msg = str(e)
    low = msg.lower()
    if "truncated" in low or "premature end" in low:
        return "truncated file"
    if "broken data stream" in low or "decoder error" in low or "unrecognized data stream" in low:
        return f"corrupt image data ({_short(e)})"
    if isinstance(e, (PermissionError, IsADirectoryError)):
        return f"unreadable file ({e.strerror or e})"
    return f"corrupt image ({_short(e)})"


def _short(e: BaseException, limit: int = 120) -> str:
    s = str(e).strip().replace("\n", " ") or type(e).__name__
    return s if len(s) <= limit else s[: limit - 3] + "..."
