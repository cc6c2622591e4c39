"""The built-in synthetic face set.

Real face sets cannot ship with the project, so it draws its own: photo-like square frames
(128..160 px by default) each holding one shaded face at a random position, scale and in-plane
rotation, on a varied background, then blurred, made noisy and saved as JPEG. Everything is drawn
with OpenCV / numpy from a seed, deterministically.

Factors
-------
Identity factors are fixed per identity; nuisance factors are drawn per image. Every factor is
recorded as a number (float for continuous factors, int for discrete ones); ``FACTOR_RANGES`` gives
the range (continuous) or the number of classes (discrete) of each.

Identity: face shape (``face_width``, ``jaw``), ``skin_tone``, ``hair_color``, ``hair_style``,
``eye_color``, ``eye_spacing``, ``brow_slant``, ``nose_size``, ``mouth_size`` and accessories
(``glasses``, ``beard``, ``earrings``, ``mustache``; every identity wears one or two). Colours come
from small palettes shared by all identities, so an identity is only defined by the combination of
several factors.

Nuisance: head pose (``yaw``, ``pitch``, ``roll``), expression (``smile``, ``mouth_open``,
``eyes_closed``), illumination (``light_x``, ``light_y``, ``light_strength``; the direction is
given in the face's own frame, so it survives alignment), background (``bg_kind``,
``bg_brightness``), ``blur``, ``noise``, ``jpeg_quality``, and the framing (``frame_size``,
``face_scale``, ``face_x``, ``face_y``).

The framing factors and ``roll`` are removed by alignment: they are listed in ``FRAME_FACTORS``
and are recoverable from the recorded landmarks and box (or the frame itself), not from an aligned
crop. Every other factor is visible in a 64x64 crop aligned on the five landmarks.

Units and conventions
---------------------
The face model lives in "face units": one unit is the nominal inter-ocular distance (an identity's
``eye_spacing`` scales it) and the origin is the centre of the head, the pivot of yaw and pitch.
``face_scale`` is the size of one face unit in frame pixels and (``face_x``, ``face_y``) the pivot's
position as a fraction of the frame side. ``yaw`` > 0 turns the face towards the image's right,
``pitch`` > 0 tilts it up, ``roll`` > 0 rotates it clockwise in the image (all in degrees). ``blur``
is a Gaussian sigma in face units (so it looks the same after alignment at every face size),
``noise`` a Gaussian sigma in 8-bit grey levels, ``jpeg_quality`` the quality the frame is saved at
(``render_frame`` returns the frame before JPEG compression; ``generate_set`` writes it).

Landmarks follow lrlivae.faces.align: left eye centre, right eye centre, nose tip, left mouth
corner, right mouth corner, in image coordinates ("left" = smaller x). The box is the tight box of
the face's skin outline (forehead to chin, cheek to cheek; hair and ears excluded).

Seeding: identity ``k`` of a set is drawn from SeedSequence((seed, set code, k)) and image ``i`` of
it from SeedSequence((seed, set code, k, i)), where ``k`` already includes ``identity_offset``; the
output therefore does not depend on the number of workers.

Modules
-------
factors (tables, ranges, palettes), identity (looks and identities), nuisance (per-image factors),
pose (the 3-D head model), canvas (drawing in face units), face / features / hair (drawing the
head), lighting (shading), background (scene behind the head), render (one frame, JPEG coding),
dataset (a set on disk, and reading it back).
"""
from lrlivae.data.synthetic.dataset import frame_rng, generate_set, identity_name, read_synthetic
from lrlivae.data.synthetic.factors import (
    ACCESSORIES,
    BG_KINDS,
    EYE_COLORS,
    FACTOR_KINDS,
    FACTOR_RANGES,
    FRAME_FACTORS,
    HAIR_COLORS,
    HAIR_STYLES,
    IDENTITY_FACTORS,
    NUISANCE_FACTORS,
    SKIN_TONES,
)
from lrlivae.data.synthetic.identity import LOOK_FACTORS, look_pool, sample_identities, sample_identity, sample_look
from lrlivae.data.synthetic.nuisance import sample_nuisance
from lrlivae.data.synthetic.render import decode_jpeg, encode_jpeg, render_frame

__all__ = [
    "ACCESSORIES",
    "BG_KINDS",
    "EYE_COLORS",
    "FACTOR_KINDS",
    "FACTOR_RANGES",
    "FRAME_FACTORS",
    "HAIR_COLORS",
    "HAIR_STYLES",
    "IDENTITY_FACTORS",
    "LOOK_FACTORS",
    "NUISANCE_FACTORS",
    "SKIN_TONES",
    "decode_jpeg",
    "encode_jpeg",
    "frame_rng",
    "generate_set",
    "identity_name",
    "look_pool",
    "read_synthetic",
    "render_frame",
    "sample_identities",
    "sample_identity",
    "sample_look",
    "sample_nuisance",
]
