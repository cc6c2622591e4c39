"""Hair in the synthetic renderer: the volume behind the head, the cap, fringe and sideburns in front
of it (by ``hair_style``), and the facial hair (``beard``, ``mustache``) blended over the skin.

``hair_shift`` is the sideways offset of the hair mass with yaw (0.25 sin(yaw) face units).
"""
from __future__ import annotations

import math

import numpy as np

from lrlivae.data.synthetic.canvas import Canvas
from lrlivae.data.synthetic.factors import HAIR_STYLES
from lrlivae.data.synthetic.features import Mouth, Nose, lip_points
from lrlivae.data.synthetic.pose import HAIRLINE_Y, MOUTH_Y, Head

# hair_style codes
SHORT, LONG, FRINGE, CURLY = (HAIR_STYLES.index(s) for s in ("short", "long", "fringe", "curly"))


def draw_back_hair(cv: Canvas, head: Head, style: int, hair, hair_shift: float) -> None:
    """The hair behind the head, drawn before the ears and the face."""
    a, b = head.a, head.b
    if style == LONG:
        # falls behind the head and down both sides onto the shoulders; the neck stays free
        pts = [
            (-a * 1.12, -0.3), (-a * 1.22, 0.6), (-a * 1.30, 1.6), (-a * 1.28, 2.6), (-a * 0.72, 2.7),
            (-a * 0.55, 1.3), (a * 0.55, 1.3), (a * 0.72, 2.7), (a * 1.28, 2.6), (a * 1.30, 1.6),
            (a * 1.22, 0.6), (a * 1.12, -0.3),
        ]
        pts = np.array(pts) + [hair_shift * 0.4, 0]
        cv.poly(pts, hair, (cv.hair, 255))
        cv.ellipse((hair_shift * 0.3, -0.35), (a * 1.15, b * 0.95), 0, hair, (cv.hair, 255))
    elif style in (SHORT, FRINGE):  # some volume behind the head, down to the ears
        cv.ellipse((hair_shift * 0.3, -0.45), (a * 1.2, 0.85), 0, hair, (cv.hair, 255))
    if style == CURLY:  # a volume of curls around the head
        cx = hair_shift * 0.3
        cv.ellipse((cx, -0.45), (a * 1.42, b * 0.98), 0, hair, (cv.hair, 255))
        for k in range(16):
            ang = math.pi * (1.05 + 0.9 * k / 15.0)
            px = cx + a * 1.38 * math.cos(ang)
            py = -0.45 + b * 0.95 * math.sin(ang)
            cv.ellipse((px, py), (0.26, 0.26), 0, hair, (cv.hair, 255))
        for side in (-1, 1):
            for k in range(4):
                cv.ellipse((cx + side * a * 1.33, -0.2 + 0.35 * k), (0.27, 0.24), 0, hair, (cv.hair, 255))


def draw_top_hair(cv: Canvas, head: Head, style: int, hair, hair_shift: float) -> None:
    """The hair over the skull, its front edge (hairline or fringe), the sideburns and, for long
    hair, the centre parting; drawn after the features."""
    a, b = head.a, head.b
    hl = HAIRLINE_Y  # hairline at the centre
    xs = np.linspace(-a * 1.08, a * 1.08, 25)
    if style == FRINGE:  # side-swept fringe: low over the left brow, back to the hairline on the right
        sweep = np.clip((1.0 - xs / a) / 2.0, 0.0, 1.0) ** 1.3
        edge = hl + 0.32 * sweep + 0.03 * (np.arange(25) % 2)
    elif style == CURLY:
        edge = hl + 0.25 * (xs / a) ** 2 + 0.04 * (np.arange(25) % 2)
    else:
        edge = hl + 0.45 * (xs / a) ** 4 + 0.05 * (xs / a) ** 2
    edge = np.minimum(edge, 0.05)
    front = head.on_face(np.column_stack([xs * 0.98, edge]), lift=0.05)
    top_t = np.linspace(np.pi, 2 * np.pi, 30)
    vol = 1.07 if style != CURLY else 1.12
    cap = np.column_stack([a * vol * np.cos(top_t), b * vol * np.sin(top_t) - 0.04])
    cap[:, 0] += hair_shift * 0.2
    cap_pts = np.vstack([front, cap[::-1]])  # hairline left -> right, skull top right -> left
    cv.poly(cap_pts, hair, (cv.hair, 255))
    for side in (-1, 1):  # sideburns
        sb = np.array([[side * a * 1.06, edge[0] + 0.05], [side * a * 0.94, edge[0] + 0.02],
                       [side * a * 0.96, -0.1], [side * a * 1.02, -0.05]])
        cv.poly(head.on_face(sb), hair, (cv.hair, 255))
    if style == LONG:  # centre parting line
        part = head.on_face([[0.05, -1.5], [0.02, hl + 0.02]], lift=0.05)
        cv.line(part, hair * 0.6, 0.03)


def draw_beard(cv: Canvas, head: Head, hair, mouth_open: float) -> None:
    """A short beard: hair colour blended over the skin of the jaw and chin, up to below the mouth
    (lower when the mouth is open); drawn before the features."""
    out3 = head.outline3d(n=120)
    jaw3 = out3[out3[:, 1] > 0.55]  # lower outline, right -> left
    jaw_line = head.project(jaw3)
    ix = np.linspace(-0.98, 0.98, 15) * float(head.half_width(0.56))
    iy = 0.56 + (MOUTH_Y + 0.22 + 0.2 * mouth_open - 0.56) * np.clip(1 - (ix / ix[-1]) ** 2, 0, 1) ** 0.7
    inner = head.on_face(np.column_stack([ix, iy]))
    cv.blend_poly(np.vstack([jaw_line, inner]), hair * 0.95, 0.5)


def draw_mustache(cv: Canvas, head: Head, hair, mouth: Mouth, nose: Nose) -> None:
    """A mustache between the nose and the upper lip, following the lip's smile."""
    half, corner_y, dip, sm = mouth.half, mouth.corner_y, mouth.dip, mouth.smile
    mt = np.linspace(-1, 1, 13)
    mx = (half * 0.95 + 0.05) * mt
    lip = corner_y + dip * (1 - mt**2) - (0.075 + 0.02 * (1 - sm)) * np.sqrt(1 - mt**2)
    mtop = np.maximum(lip - 0.13 + 0.04 * np.abs(mt), nose.tip_y + 0.12)
    mbot = lip + 0.01 + 0.05 * np.abs(mt) ** 2
    cv.blend_poly(np.vstack([lip_points(head, mx, mtop), lip_points(head, mx[::-1], mbot[::-1])]), hair * 0.9, 0.65)
