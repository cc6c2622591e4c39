"""The synthetic renderer's output is pinned: a few frames, their landmarks and a small set's table.

The expected values were computed from the renderer as it stands; a change to any drawing, lighting,
sampling or seeding step changes them. When a change to the renderer is intended, recompute them
(the pinned sets change, and so does every synthetic result downstream). An OpenCV or numpy upgrade
that alters anti-aliasing, blurring, warping or JPEG coding can also move the pixel hashes while the
factors and landmarks (pure numpy arithmetic) stay put.
"""
from __future__ import annotations

import hashlib

import cv2
import numpy as np
import pytest

from lrlivae.data import synthetic as S


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# (seed, set name, identity offset, global identity index, image index) -> pinned output
FRAMES = {
    (3, "labeled", 0, 0, 0): dict(
        size=128,
        yaw=-3.9634084157591936,
        face_width=1.1614867474352675,
        landmarks=[[61.017668, 62.166398], [83.739478, 64.910982], [69.878255, 80.118546],
                   [59.692412, 90.43716], [79.152011, 92.787699]],
        box=(43.1723302538592, 31.682019144890972, 104.0249253189796, 109.82504504774502),
        pixel_sum=6206785,
        sha="af0e9eb73f3421b9f36917317867753ec09b962df7b8cb7eed1400c6933045c2",
    ),
    (3, "unlabeled", 2, 2, 1): dict(
        size=147,
        yaw=5.707917708756693,
        face_width=1.172999069903444,
        landmarks=[[86.954208, 41.955159], [114.264028, 44.377867], [101.100642, 57.401842],
                   [81.240665, 74.197422], [115.48195, 77.235034]],
        box=(60.57988218988717, 17.661622469498724, 133.9871018455568, 102.6754359748312),
        pixel_sum=5692780,
        sha="f6ff223b8e6af4ca389576d00d3d13795ba1ff4d209f8c09b702a5e6c3ad7652",
    ),
}

SET_TABLE_SHA = "de9eaed27d3abb72758b1c0a7d139e289df7c71be1564d38b642c77d7aa80893"
SET_JPEG_SHA = {
    "images/id_0000/0000.jpg": "e49f608de6314707a3ff5df1a81f404d0a92bc6959b21fab4fa657d4c97a71fa",
    "images/id_0000/0001.jpg": "0b9006a73aa20424ffe458eadb8dfb4e874bd4e4ef684e8655a2c7b99a862aac",
    "images/id_0001/0000.jpg": "b9f751886963fd8fa53c2599b120b932a68a77bc5f8b820cbf1e1942651a266e",
    "images/id_0001/0001.jpg": "bda9563090767a84b47c8508c7da8cc2f32fda44c0d424eeb9c9ad18a99e9172",
}


@pytest.mark.parametrize("key", list(FRAMES), ids=lambda k: f"{k[1]}-{k[3]}-{k[4]}")
def test_pinned_frame(key):
    seed, set_name, offset, gid, image = key
    want = FRAMES[key]
    ident = S.sample_identities(gid - offset + 1, seed=seed, set_name=set_name, identity_offset=offset)[-1]
    rng = S.frame_rng(seed, set_name, gid, image)
    nui = S.sample_nuisance(rng, (128, 160))
    img, lm, box = S.render_frame(ident, nui, rng)
    # the sampled factors and the geometry first: they say where a change sits
    assert nui["frame_size"] == want["size"] and nui["yaw"] == want["yaw"]
    assert ident["face_width"] == want["face_width"]
    np.testing.assert_allclose(lm, want["landmarks"], rtol=0, atol=1e-5)
    assert box == pytest.approx(want["box"], rel=0, abs=1e-9)
    assert img.shape == (want["size"], want["size"], 3) and img.dtype == np.uint8
    assert int(img.sum(dtype=np.int64)) == want["pixel_sum"], f"pixels changed (OpenCV {cv2.__version__})"
    assert _sha(img.tobytes()) == want["sha"], f"pixels changed (OpenCV {cv2.__version__})"


def test_pinned_set_table_and_files(tmp_path):
    meta = S.generate_set(tmp_path, n_identities=2, images_per_identity=2, seed=3, set_name="labeled",
                          frame_size=(64, 72), progress=False)
    numbers = np.ascontiguousarray(meta.select_dtypes("number").to_numpy(np.float64))
    assert numbers.shape == (4, 2 + 10 + 4 + len(S.IDENTITY_FACTORS) + len(S.NUISANCE_FACTORS))
    assert _sha(numbers.tobytes()) == SET_TABLE_SHA
    files = {p.relative_to(tmp_path).as_posix(): _sha(p.read_bytes()) for p in sorted(tmp_path.rglob("*.jpg"))}
    assert files == SET_JPEG_SHA, f"JPEG files changed (OpenCV {cv2.__version__})"
