"""Robust image reading: every bad input becomes BadImage, odd modes convert to 8-bit RGB."""
from __future__ import annotations

import hashlib
import io
import os
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

import lrlivae
from lrlivae.imageio import BadImage, read_image, read_rgb, sha256_file


def _save(path, image: Image.Image, fmt: str, **kw):
    image.save(path, fmt, **kw)
    return path


def _noise(h=48, w=64, seed=0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def gray_jpeg_bytes(width: int, height: int) -> bytes:
    """A valid baseline grayscale JPEG of any size, built by hand: one-symbol Huffman tables make
    every 8x8 block two zero bits (DC difference 0, end of block), so the scan is all zero bytes
    (about width * height / 256 bytes) and decodes to flat mid grey."""

    def seg(marker: int, payload: bytes) -> bytes:
        return b"\xff" + bytes([marker]) + struct.pack(">H", len(payload) + 2) + payload

    one_code = bytes([1] + [0] * 15)
    out = b"\xff\xd8"
    out += seg(0xDB, b"\x00" + bytes([1] * 64))
    out += seg(0xC0, struct.pack(">BHHB", 8, height, width, 1) + b"\x01\x11\x00")
    out += seg(0xC4, b"\x00" + one_code + b"\x00")
    out += seg(0xC4, b"\x10" + one_code + b"\x00")
    out += seg(0xDA, b"\x01\x01\x00\x00\x3f\x00")
    blocks = ((width + 7) // 8) * ((height + 7) // 8)
    out += bytes((2 * blocks + 7) // 8)
    return out + b"\xff\xd9"


def png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header claims width x height (the pixel data is a stub: never decoded)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b"")


# ------------------------------------------------------------------------------------ bad inputs


def test_missing_file(tmp_path):
    with pytest.raises(BadImage) as e:
        read_rgb(tmp_path / "nope.jpg")
    assert e.value.reason == "missing file"


def test_zero_byte_file(tmp_path):
    p = tmp_path / "empty.jpg"
    p.write_bytes(b"")
    with pytest.raises(BadImage, match="empty"):
        read_rgb(p)


def test_directory_is_not_an_image(tmp_path):
    d = tmp_path / "dir.jpg"
    d.mkdir()
    with pytest.raises(BadImage, match="not a regular file"):
        read_rgb(d)


@pytest.mark.parametrize("fmt,ext", [("JPEG", "jpg"), ("PNG", "png")])
@pytest.mark.parametrize("keep", [0.5, 0.9])
def test_truncated_files_are_rejected(tmp_path, fmt, ext, keep):
    full = io.BytesIO()
    Image.fromarray(_noise(120, 160)).save(full, fmt)
    data = full.getvalue()
    p = tmp_path / f"cut.{ext}"
    p.write_bytes(data[: int(len(data) * keep)])
    with pytest.raises(BadImage, match="truncated"):
        read_rgb(p)


def test_jpeg_missing_only_end_marker_is_rejected(tmp_path):
    full = io.BytesIO()
    Image.fromarray(_noise()).save(full, "JPEG")
    p = tmp_path / "noeoi.jpg"
    p.write_bytes(full.getvalue()[:-2])
    with pytest.raises(BadImage, match="truncated"):
        read_rgb(p)


def test_random_bytes(tmp_path):
    p = tmp_path / "corrupt.jpg"
    p.write_bytes(np.random.default_rng(1).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    with pytest.raises(BadImage, match="not an image"):
        read_rgb(p)


def test_corrupt_jpeg_header(tmp_path):
    full = io.BytesIO()
    Image.fromarray(_noise()).save(full, "JPEG")
    data = bytearray(full.getvalue())
    data[2:200] = np.random.default_rng(2).integers(0, 256, 198, dtype=np.uint8).tobytes()
    p = tmp_path / "badhead.jpg"
    p.write_bytes(bytes(data))
    with pytest.raises(BadImage):
        read_rgb(p)


def test_corrupt_png_data(tmp_path):
    full = io.BytesIO()
    Image.fromarray(_noise()).save(full, "PNG")
    data = bytearray(full.getvalue())
    mid = len(data) // 2
    data[mid : mid + 64] = b"\xff" * 64
    p = tmp_path / "bad.png"
    p.write_bytes(bytes(data))
    with pytest.raises(BadImage):
        read_rgb(p)


def test_text_file_named_jpg(tmp_path):
    p = tmp_path / "page.jpg"
    p.write_text("<html><body>404 Not Found</body></html>\n")
    with pytest.raises(BadImage, match="text"):
        read_rgb(p)


# ------------------------------------------------------------------------------------ conversions


def test_rgb_roundtrip_png(tmp_path):
    a = _noise()
    p = _save(tmp_path / "a.png", Image.fromarray(a), "PNG")
    out = read_rgb(p)
    assert out.dtype == np.uint8 and out.shape == (48, 64, 3)
    np.testing.assert_array_equal(out, a)


def test_cmyk_jpeg(tmp_path):
    # Pure cyan-free, magenta+yellow = red.
    p = _save(tmp_path / "cmyk.jpg", Image.new("CMYK", (32, 24), (0, 255, 255, 0)), "JPEG", quality=95)
    assert Image.open(p).mode == "CMYK"
    out = read_rgb(p)
    assert out.shape == (24, 32, 3)
    r, g, b = out.reshape(-1, 3).mean(0)
    assert r > 200 and g < 50 and b < 50


def test_16bit_gray_png_is_scaled_not_clipped(tmp_path):
    a = np.full((20, 30), 0x8000, np.uint16)
    a[:, :10] = 0xFFFF
    a[:, 10:20] = 0x0100
    p = _save(tmp_path / "g16.png", Image.fromarray(a), "PNG")
    assert Image.open(p).mode.startswith("I")
    out = read_rgb(p)
    assert out.shape == (20, 30, 3)
    assert (out[:, :10] == 255).all()
    assert (out[:, 10:20] == 1).all()
    assert (out[:, 20:] == 128).all()


def test_16bit_rgb_png(tmp_path):
    a = np.zeros((10, 12, 3), np.uint16)
    a[..., 2] = 65535  # OpenCV writes BGR: channel 2 is red
    a[..., 0] = 0x4000
    p = tmp_path / "c16.png"
    assert cv2.imwrite(str(p), a)
    out = read_rgb(p)
    assert out.shape == (10, 12, 3) and out.dtype == np.uint8
    np.testing.assert_array_equal(out[0, 0], [255, 0, 0x40])


def test_grayscale_and_bilevel(tmp_path):
    g = np.tile(np.arange(0, 256, 8, dtype=np.uint8), (5, 1))
    p = _save(tmp_path / "g.png", Image.fromarray(g, "L"), "PNG")
    out = read_rgb(p)
    assert out.shape == (5, 32, 3)
    np.testing.assert_array_equal(out[..., 0], g)
    np.testing.assert_array_equal(out[..., 1], g)
    bw = Image.fromarray(g > 100).convert("1")
    out = read_rgb(_save(tmp_path / "b.png", bw, "PNG"))
    assert set(np.unique(out)) <= {0, 255}


def test_palette_with_transparency(tmp_path):
    im = Image.new("P", (10, 10), 0)
    im.putpalette([0, 0, 255] + [255, 0, 0] + [0] * (254 * 3))
    px = im.load()
    for x in range(5):
        for y in range(10):
            px[x, y] = 1
    im.info["transparency"] = 0  # index 0 (blue) is transparent
    p = tmp_path / "p.png"
    im.save(p, "PNG", transparency=0)
    assert Image.open(p).mode == "P"
    out = read_rgb(p)
    np.testing.assert_array_equal(out[0, 0], [255, 0, 0])
    np.testing.assert_array_equal(out[0, 9], [255, 255, 255])  # transparent -> white
    gif = tmp_path / "p.gif"
    im.save(gif, "GIF", transparency=0)
    out = read_rgb(gif)
    np.testing.assert_array_equal(out[0, 9], [255, 255, 255])


def test_palette_without_transparency(tmp_path):
    im = Image.fromarray(_noise()).convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    out = read_rgb(_save(tmp_path / "p.png", im, "PNG"))
    np.testing.assert_array_equal(out, np.asarray(im.convert("RGB")))


def test_rgba_and_la_composited_on_white(tmp_path):
    a = np.zeros((4, 4, 4), np.uint8)
    a[..., 0] = 200
    a[:, :2, 3] = 255
    a[:, 2:, 3] = 0
    out = read_rgb(_save(tmp_path / "rgba.png", Image.fromarray(a, "RGBA"), "PNG"))
    np.testing.assert_array_equal(out[0, 0], [200, 0, 0])
    np.testing.assert_array_equal(out[0, 3], [255, 255, 255])
    la = np.zeros((4, 4, 2), np.uint8)
    la[..., 0] = 10
    la[..., 1] = 128
    out = read_rgb(_save(tmp_path / "la.png", Image.fromarray(la, "LA"), "PNG"))
    assert abs(int(out[0, 0, 0]) - round(10 * 128 / 255 + 255 * 127 / 255)) <= 1


def test_sha256_file(tmp_path):
    p = tmp_path / "x.bin"
    p.write_bytes(b"abc" * 1000)
    assert sha256_file(p) == hashlib.sha256(b"abc" * 1000).hexdigest()


# ----------------------------------------------------------------------------------- large images


def test_large_png_rejected_by_header(tmp_path):
    p = tmp_path / "big.png"
    p.write_bytes(png_header_only(20000, 20000))
    with pytest.raises(BadImage) as e:
        read_rgb(p)
    assert e.value.reason == "too large (20000x20000)"


def test_png_over_max_pixels_rejected(tmp_path):
    p = _save(tmp_path / "mid.png", Image.fromarray(_noise(100, 200)), "PNG")
    with pytest.raises(BadImage, match=r"too large \(200x100\)"):
        read_rgb(p, max_pixels=10_000)
    assert read_rgb(p, max_pixels=20_000).shape == (100, 200, 3)


def test_huge_jpeg_is_decoded_reduced_without_blowing_memory(tmp_path):
    p = tmp_path / "huge.jpg"
    p.write_bytes(gray_jpeg_bytes(20000, 20000))  # 400 megapixels, 1.5 MB on disk
    # Peak memory measured in a fresh process (this one's peak may already be high).
    # A forked child can inherit the parent's peak, so reset the high-water mark first (Linux), then read it.
    code = (
        "import sys\n"
        "from lrlivae.imageio import read_image\n"
        "open('/proc/self/clear_refs', 'w').write('5')\n"
        "img = read_image(sys.argv[1], max_pixels=8_000_000)\n"
        "hwm = [l for l in open('/proc/self/status') if l.startswith('VmHWM')][0].split()[1]\n"
        "print(img.rgb.shape, hwm)\n"
    )
    src = str(Path(lrlivae.__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [src, os.environ.get("PYTHONPATH")]))}
    run = subprocess.run([sys.executable, "-c", code, str(p)], capture_output=True, text=True, timeout=120, env=env)
    assert run.returncode == 0, run.stderr
    shape, peak_kib = run.stdout.rsplit(" ", 1)
    assert shape == "(2500, 2500, 3)"
    assert int(peak_kib) / 1024 < 400  # a full decode would need well over 1 GiB

    img = read_image(p, max_pixels=8_000_000)
    assert img.original_size == (20000, 20000)
    assert img.scale == pytest.approx(1 / 8)
    assert img.rgb.shape == (2500, 2500, 3)
    assert (img.rgb == 128).all()
    # The default limit (50 Mpx) decodes it at 1/4.
    assert read_image(p).rgb.shape == (5000, 5000, 3)
    # Too large even at 1/8.
    with pytest.raises(BadImage, match=r"too large \(20000x20000\)"):
        read_rgb(p, max_pixels=1_000_000)


def test_moderate_jpeg_reduced_by_smallest_factor(tmp_path):
    p = _save(tmp_path / "m.jpg", Image.fromarray(_noise(300, 400)), "JPEG")
    img = read_image(p, max_pixels=40_000)  # 120k px -> 1/2 gives 30k
    assert img.scale == 0.5 and img.rgb.shape == (150, 200, 3)
    assert read_image(p).scale == 1.0


def test_progressive_jpeg_over_limit_rejected(tmp_path):
    p = _save(tmp_path / "prog.jpg", Image.fromarray(_noise(300, 400)), "JPEG", progressive=True)
    with pytest.raises(BadImage, match="too large"):
        read_rgb(p, max_pixels=40_000)
    assert read_rgb(p).shape == (300, 400, 3)
