"""The Fig. 2 panel: generated toy points per class at several epochs, one row per model (numpy + Pillow).

Each cell shows the real distribution faintly in the background and the generated points coloured by
class (green, red, blue as in the paper), on the fixed window x in [-3.8, 3.8], y in [-0.9, 1.9];
points outside the window are counted in the cell's caption.
"""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

COLOURS = np.array([[0, 150, 0], [215, 25, 25], [30, 70, 215]], dtype=np.uint8)  # green, red, blue
FAINT = np.array([205, 205, 205], dtype=np.uint8)
WINDOW = (-3.8, 3.8, -0.9, 1.9)  # x_min, x_max, y_min, y_max


def _font(size: int):
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1
        return ImageFont.load_default()


def _to_pixels(pts: np.ndarray, width: int, height: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """World (N, 2) -> pixel columns, rows (N,) and an inside-the-window mask (N,)."""
    x0, x1, y0, y1 = WINDOW
    col = np.round((pts[:, 0] - x0) / (x1 - x0) * (width - 1)).astype(int)
    row = np.round((y1 - pts[:, 1]) / (y1 - y0) * (height - 1)).astype(int)
    inside = (col >= 1) & (col < width - 2) & (row >= 1) & (row < height - 2)
    return col, row, inside


def _dots(canvas: np.ndarray, pts: np.ndarray, colour: np.ndarray, size: int) -> int:
    """Draw size x size dots on canvas (H, W, 3) in place; returns how many points fell outside."""
    h, w, _ = canvas.shape
    col, row, inside = _to_pixels(pts, w, h)
    for dr in range(size):
        for dc in range(size):
            canvas[row[inside] + dr, col[inside] + dc] = colour
    return int((~inside).sum())


def scatter_cell(gen: np.ndarray, gen_y: np.ndarray, real: np.ndarray | None = None, width: int = 360,
                 height: int = 133) -> tuple[np.ndarray, int]:
    """One cell (height, width, 3) uint8: real points faint, generated ones by class; and the count outside."""
    canvas = np.full((height, width, 3), 255, dtype=np.uint8)
    _, zero_row, _ = _to_pixels(np.zeros((1, 2)), width, height)
    canvas[zero_row[0], :] = 235  # the line y = 0
    if real is not None:
        _dots(canvas, real, FAINT, 2)
    outside = 0
    for c in np.unique(gen_y):
        outside += _dots(canvas, gen[gen_y == c], COLOURS[int(c) % len(COLOURS)], 2)
    canvas[[0, -1], :] = 120
    canvas[:, [0, -1]] = 120
    return canvas, outside


def fig2(snapshots: Mapping[str, Mapping[int, tuple[np.ndarray, np.ndarray]]], epochs: Sequence[int],
         real: np.ndarray | None = None, row_names: Mapping[str, str] | None = None,
         max_per_class: int = 300) -> np.ndarray:
    """The grid (rows = models, columns = epochs) as an (H, W, 3) uint8 image.

    snapshots[model][epoch] = (points (N, 2), labels (N,)); the first `max_per_class` points of each class
    are drawn. row_names maps a model key to its row label.
    """
    width, height, left, top, gap, caption = 360, 133, 110, 26, 8, 16
    models = list(snapshots)
    fig_w = left + len(epochs) * (width + gap)
    fig_h = top + len(models) * (height + caption + gap)
    img = Image.new("RGB", (fig_w, fig_h), "white")
    draw = ImageDraw.Draw(img)
    font, small = _font(15), _font(12)
    for j, e in enumerate(epochs):
        draw.text((left + j * (width + gap) + width // 2 - 28, 5), f"epoch {e}", fill="black", font=font)
    for i, m in enumerate(models):
        y0 = top + i * (height + caption + gap)
        draw.text((6, y0 + height // 2 - 8), (row_names or {}).get(m, m), fill="black", font=font)
        for j, e in enumerate(epochs):
            if e not in snapshots[m]:
                continue
            pts, ys = snapshots[m][e]
            keep = np.concatenate([np.flatnonzero(ys == c)[:max_per_class] for c in np.unique(ys)])
            cell, outside = scatter_cell(pts[keep], ys[keep], real, width, height)
            x0 = left + j * (width + gap)
            img.paste(Image.fromarray(cell), (x0, y0))
            if outside:
                draw.text((x0 + 4, y0 + height + 1), f"{outside} of {len(keep)} points outside the window",
                          fill=(90, 90, 90), font=small)
    return np.asarray(img)
