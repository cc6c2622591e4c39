"""The head of the synthetic renderer, drawn on an un-rolled canvas: hair behind, ears (and
``earrings``), the skin outline, beard, eyes and brows, nose, mouth, mustache, hair on top and
``glasses``, in that order, plus the five landmarks and the outline that gives the face box.
"""
from __future__ import annotations

import math

import numpy as np

from lrlivae.data.synthetic.canvas import Canvas
from lrlivae.data.synthetic.factors import EYE_COLORS, HAIR_COLORS, SKIN_TONES
from lrlivae.data.synthetic.features import draw_eyes, draw_mouth, draw_nose
from lrlivae.data.synthetic.hair import draw_back_hair, draw_beard, draw_mustache, draw_top_hair
from lrlivae.data.synthetic.pose import EYE_Y, HAIRLINE_Y, Head


def draw_head(ident: dict, nui: dict, scale: float) -> tuple[Canvas, Head, np.ndarray, np.ndarray]:
    """Draw the head (hair, ears, skin, features, accessories) on an un-rolled canvas of `scale`
    pixels per face unit. Returns (canvas, head model, landmarks in face units (5, 2), outline
    points in face units)."""
    cv = Canvas(scale)
    head = Head(ident, nui)
    skin = SKIN_TONES[ident["skin_tone"]]
    hair = HAIR_COLORS[ident["hair_color"]]
    style = ident["hair_style"]
    hair_shift = 0.25 * math.sin(math.radians(nui["yaw"]))

    draw_back_hair(cv, head, style, hair, hair_shift)
    _draw_ears(cv, head, skin, bool(ident["earrings"]))
    box_pts = _draw_skin(cv, head, skin)
    if ident["beard"]:
        draw_beard(cv, head, hair, nui["mouth_open"])
    eye_c = draw_eyes(cv, head, ident, nui, skin, EYE_COLORS[ident["eye_color"]], _brow_color(ident, hair))
    nose = draw_nose(cv, head, ident["nose_size"], nui["light_x"], skin)
    mouth = draw_mouth(cv, head, ident, nui, skin, nose)
    if ident["mustache"]:
        draw_mustache(cv, head, hair, mouth, nose)
    draw_top_hair(cv, head, style, hair, hair_shift)
    if ident["glasses"]:
        _draw_glasses(cv, head, eye_c, ident["eye_spacing"], nose.root)

    landmarks = np.vstack([eye_c[0], eye_c[1], nose.tip, mouth.corners(head)])
    return cv, head, landmarks, box_pts


def _brow_color(ident: dict, hair: np.ndarray) -> np.ndarray:
    """Brows a little darker than the hair (much darker for blonde / grey hair)."""
    if ident["hair_color"] in (3, 4):  # blonde / grey hair: darker brows
        return hair * 0.45 + np.array([40, 30, 22]) * 0.55
    return hair * 0.55 + np.array([20, 15, 12]) * 0.45


def _draw_ears(cv: Canvas, head: Head, skin, earrings: bool) -> None:
    """The ears behind the face outline, and the earrings hanging from their lobes."""
    a = head.a
    ear_pts = head.project([[-a * 0.98, 0.02, -0.28], [a * 0.98, 0.02, -0.28]])
    ear_lobes = head.project([[-a * 0.96, 0.30, -0.28], [a * 0.96, 0.30, -0.28]])
    for e in ear_pts:
        cv.ellipse(e, (0.15, 0.29), 0, skin * 0.93, (cv.occ, 0))
        cv.ellipse(e + [0, 0.02], (0.07, 0.17), 0, None, (cv.occ, 150))
    if earrings:
        for side, lobe in zip((-1, 1), ear_lobes):
            c = lobe + [side * 0.03, 0.13]
            cv.ellipse(c, (0.1, 0.12), 0, (232, 190, 60), thick=0.05)
            cv.ellipse(lobe + [side * 0.03, 0.02], (0.045, 0.045), 0, (245, 210, 90))


def _draw_skin(cv: Canvas, head: Head, skin) -> np.ndarray:
    """The skin inside the face outline (marked as head, unmarked as hair), the highlights of the
    cheekbones and forehead and a soft shadow inside the jaw line. Returns the outline points from
    the hairline to the chin, the visible face that the box encloses."""
    outline3 = head.outline3d()
    outline = head.project(outline3)
    box_pts = head.project(outline3[outline3[:, 1] >= HAIRLINE_Y])
    cv.poly(outline, skin, (cv.head, 255), (cv.hair, 0))
    for side in (-1, 1):
        cv.ellipse(head.on_face([[side * 0.55, 0.12]])[0], (0.3, 0.22), 0, None, (cv.hi, 110))
    cv.ellipse(head.on_face([[0.0, -0.95]])[0], (0.5, 0.2), 0, None, (cv.hi, 80))
    chin_shadow = head.project(head.outline3d(grow=-0.02))
    lower = chin_shadow[chin_shadow[:, 1] > 0.5]
    if len(lower) > 2:
        cv.line(lower[np.argsort(lower[:, 0])], None, 0.07, (cv.occ, 130))
    return box_pts


def _draw_glasses(cv: Canvas, head: Head, eye_c: list[np.ndarray], es: float, root: np.ndarray) -> None:
    """Round frames around both eyes (a faint highlight on the lenses), the arms' stubs towards the
    temples and the bridge over the nose root."""
    frame_col = (30, 28, 30)
    for k, side in enumerate((-1, 1)):
        fx, fy = head.foreshorten(side * es / 2, EYE_Y)
        cv.ellipse(eye_c[k], (0.34 * fx, 0.25 * fy), 0, None, (cv.hi, 40))
        cv.ellipse(eye_c[k], (0.34 * fx, 0.25 * fy), 0, frame_col, thick=0.04)
        # the arms: short stubs towards the temples (the rest is hidden by the face's curve)
        start = eye_c[k] + [side * 0.34 * fx, -0.05]
        temple = head.on_face([[side * float(head.half_width(EYE_Y)) * 0.86, EYE_Y - 0.06]])[0]
        if side * (temple[0] - start[0]) > 0.02:
            cv.line(np.vstack([start, temple]), frame_col, 0.035)
    bridge = np.vstack([eye_c[0] + [0.34 * head.foreshorten(-es / 2, EYE_Y)[0], -0.06], root + [0, -0.03],
                        eye_c[1] - [0.34 * head.foreshorten(es / 2, EYE_Y)[0], 0.06]])
    cv.line(bridge, frame_col, 0.045)
