"""The facial features of the synthetic renderer and their expression: eyes (with ``eyes_closed``),
brows (``brow_slant``), nose (``nose_size``) and mouth (``mouth_size``, ``smile``, ``mouth_open``).

Each function draws on the canvas in face units, on the posed head's surface, and returns the points
that later steps (glasses, mustache, landmarks) build on.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lrlivae.data.synthetic.canvas import Canvas
from lrlivae.data.synthetic.pose import BROW_THICKNESS, BROW_Y, EYE_H, EYE_W, EYE_Y, IRIS_R, MOUTH_Y, NOSE_Y, Head


def lip_points(head: Head, xs, ys) -> np.ndarray:
    """Frontal points (xs, ys) near the mouth, projected from just above the face surface."""
    return head.on_face(np.column_stack([xs, ys]), lift=0.02)


# ------------------------------------------------------------------------------------------ eyes
def draw_eyes(cv: Canvas, head: Head, ident: dict, nui: dict, skin, iris_col, brow_col) -> list[np.ndarray]:
    """Both eye sockets, eyes and brows (left, then right). Returns the two eye centres."""
    es = ident["eye_spacing"]
    closed = float(nui["eyes_closed"])
    eye_c = []
    for side in (-1, 1):
        ex = side * es / 2
        eye_c.append(_draw_eye(cv, head, ex, closed, skin, iris_col))
        _draw_brow(cv, head, ex, side, ident["brow_slant"], brow_col)
    return eye_c


def _draw_eye(cv: Canvas, head: Head, ex: float, closed: float, skin, iris_col) -> np.ndarray:
    """The socket's occlusion, the eye opening, iris, pupil and glint, the lids (closed by
    `closed`) and the lash line of the eye at x = ex. Returns its centre."""
    cen = head.on_face([[ex, EYE_Y]], lift=-0.07)[0]
    fx, fy = head.foreshorten(ex, EYE_Y)
    sock = head.on_face([[ex, EYE_Y - 0.05]], lift=-0.07)[0]
    cv.ellipse(sock, (0.36 * fx, 0.25 * fy), 0, None, (cv.occ, 230))
    t = np.linspace(-1, 1, 15)
    w, h = EYE_W * fx, EYE_H * fy
    xs = cen[0] + w * t
    arch = np.sqrt(1 - t**2)
    upper_full = cen[1] - h * arch
    lower = cen[1] + h * arch * 0.95
    upper_now = upper_full + closed * (lower - upper_full)
    opening = np.vstack([np.column_stack([xs, upper_full]), np.column_stack([xs[::-1], lower[::-1]])])
    cv.poly(opening, (200,) * 3, (cv.occ, 60))
    iris_c = (cen[0], cen[1] + 0.01)
    cv.ellipse(iris_c, (IRIS_R * fx, IRIS_R * min(1.0, fy)), 0, iris_col)
    cv.ellipse(iris_c, (0.038 * fx, 0.038), 0, (12, 10, 10))
    cv.ellipse((iris_c[0] + 0.03, iris_c[1] - 0.035), (0.02, 0.02), 0, (255, 255, 255))
    # lids: skin from the top of the eye down to the current lid line, and a lash line
    lid = np.vstack([np.column_stack([xs, upper_full - 0.02]), np.column_stack([xs[::-1], upper_now[::-1]])])
    if closed > 0.01:
        cv.poly(lid, skin * 0.9)
    low_lid = np.vstack([np.column_stack([xs, lower]), np.column_stack([xs[::-1], lower[::-1] + 0.05])])
    cv.poly(low_lid, skin * 0.95)
    cv.line(np.column_stack([xs, upper_now]), (25, 18, 16), 0.035 + 0.02 * (1 - closed))
    cv.line(np.column_stack([xs[2:-2], lower[2:-2]]), skin * 0.6, 0.018)
    return cen


def _draw_brow(cv: Canvas, head: Head, ex: float, side: int, slant: float, brow_col) -> None:
    """The brow above the eye at x = ex; slant > 0 lowers its inner end and raises the outer one."""
    bt = BROW_THICKNESS
    bx = ex + side * np.array([-0.26, -0.12, 0.05, 0.2, 0.32])
    by = BROW_Y + np.array([0.05, -0.02, -0.05, -0.03, 0.03])
    by = by + slant * 0.085 * np.array([1.0, 0.5, 0.0, -0.5, -1.0])
    top = head.on_face(np.column_stack([bx, by - bt * np.array([0.45, 0.55, 0.55, 0.45, 0.2])]))
    bot = head.on_face(np.column_stack([bx, by + bt * np.array([0.45, 0.45, 0.45, 0.35, 0.15])]))
    cv.poly(np.vstack([top, bot[::-1]]), brow_col, (cv.occ, 60))


# ------------------------------------------------------------------------------------------ nose
@dataclass(frozen=True)
class Nose:
    root: np.ndarray  # between the eyes, projected
    tip: np.ndarray  # the tip, projected (a landmark)
    tip_y: float  # frontal height of the tip
    size: float  # the identity's nose_size


def draw_nose(cv: Canvas, head: Head, ns: float, light_x: float, skin) -> Nose:
    """The nose of size `ns`: its shadow on the side away from the light, the shadow under it,
    the highlight along the bridge and on the tip, and the nostrils."""
    tip_y = NOSE_Y + 0.12 * (ns - 1.0)
    root = head.on_face([[0.0, EYE_Y + 0.02]], lift=0.02)[0]
    tip = head.project(head.surf([[0.0, tip_y]], lift=0.26 * ns))[0]
    ala = head.on_face([[-0.19 * ns, tip_y + 0.03], [0.19 * ns, tip_y + 0.03]], lift=0.06)
    under = head.on_face([[0.0, tip_y + 0.11]], lift=0.05)[0]
    dark_side = 0 if light_x > 0 else 1
    side_pt = ala[dark_side]
    cv.poly(np.vstack([root, tip, side_pt, side_pt + (root - side_pt) * 0.3]), None, (cv.occ, 110))
    cv.ellipse(under, (0.22 * ns, 0.07 * ns), 0, None, (cv.occ, 190))
    cv.line(np.vstack([root + (tip - root) * 0.15, tip - (tip - root) * 0.1]), None, 0.07, (cv.hi, 120))
    for k, s in enumerate((-1, 1)):
        cv.ellipse(ala[k] + [-s * 0.05 * ns, 0.0], (0.07 * ns, 0.04 * ns), 0, skin * 0.45)
    cv.ellipse(tip, (0.08 * ns, 0.06), 0, None, (cv.hi, 140))
    return Nose(root=root, tip=tip, tip_y=tip_y, size=ns)


# ----------------------------------------------------------------------------------------- mouth
@dataclass(frozen=True)
class Mouth:
    half: float  # half-width, frontal
    corner_y: float  # frontal height of the corners
    dip: float  # how far the centre of the lips sits below the corners (the smile)
    smile: float

    def corners(self, head: Head) -> np.ndarray:
        """The two mouth corners, projected (left, right: landmarks 3 and 4)."""
        return np.vstack([lip_points(head, np.array([-self.half]), np.array([self.corner_y]))[0],
                          lip_points(head, np.array([self.half]), np.array([self.corner_y]))[0]])


def draw_mouth(cv: Canvas, head: Head, ident: dict, nui: dict, skin, nose: Nose) -> Mouth:
    """Lips, the opening and the teeth as the smile and the open mouth shape them, then the
    smile folds from the nose to the mouth corners."""
    sm, op = float(nui["smile"]), float(nui["mouth_open"])
    half = ident["mouth_size"] / 2 * (1 + 0.4 * sm - 0.12 * op)
    corner_y = MOUTH_Y - 0.13 * sm + 0.03 * op
    dip = 0.17 * sm
    gap = 0.025 + 0.07 * sm + 0.34 * op
    t = np.linspace(-1, 1, 21)
    bow = 1 - t**2
    xs = half * t
    up_in = corner_y + dip * bow
    lo_in = up_in + gap * bow**0.8
    up_out = up_in - (0.075 + 0.02 * (1 - sm)) * np.sqrt(bow) - 0.015 * np.cos(t * 3 * np.pi / 2) ** 2 * np.sqrt(bow)
    lo_out = lo_in + (0.1 - 0.03 * sm) * np.sqrt(bow)
    lip_col = skin * np.array([0.82, 0.52, 0.52]) + np.array([30, 8, 12])
    cv.poly(np.vstack([lip_points(head, xs, up_out), lip_points(head, xs[::-1], lo_out[::-1])]), lip_col)
    cv.poly(np.vstack([lip_points(head, xs, up_in), lip_points(head, xs[::-1], lo_in[::-1])]), (48, 14, 18))
    teeth_h = min(gap * 0.9, 0.02 + 0.13 * sm) * (sm > 0.15 or op > 0.3)
    if teeth_h > 0.01:
        tt = t[3:-3]
        tx = xs[3:-3]
        ty0 = up_in[3:-3]
        ty1 = ty0 + teeth_h * (1 - tt**2) ** 0.5
        cv.poly(np.vstack([lip_points(head, tx, ty0), lip_points(head, tx[::-1], ty1[::-1])]), (236, 232, 222))
    cv.line(lip_points(head, xs, up_in), (60, 20, 24), 0.02)
    # cheeks lift with the smile: a soft shadow line from the nose to the mouth corners
    ns, tip_y = nose.size, nose.tip_y
    for s in (-1, 1):
        fold = lip_points(head, s * np.array([0.2 * ns + 0.05, half * 0.9 + 0.08, half + 0.1]),
                          np.array([tip_y + 0.02, corner_y - 0.15, corner_y + 0.05]))
        cv.line(fold, None, 0.04 + 0.03 * sm, (cv.occ, int(40 + 130 * sm)))
    return Mouth(half=half, corner_y=corner_y, dip=dip, smile=sm)
