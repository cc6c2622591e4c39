"""The paper's claims on a small configuration, through the real stages and the real params.yaml (shrunk):
samples of class c show class c (the decoder reads z_s), and after semi-supervised fine-tuning on unseen
identities a swapped image takes its identity from the z_s source and its nuisance from the z_u source
(fine-tuning has not moved identity into z_u).

Data: 32x32 images whose top half has the identity's colour and whose bottom half has a random grey
level (the nuisance); labeled identities and unseen (unlabeled) ones have different colours."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

from lrlivae.data.aligned import AlignedWriter, to_uint8_images
from lrlivae.evaluate.swap import swap_images
from pipeline.cli import app
from pipeline.training import load_model
from tests.conftest import copy_dvc_yaml, write_params
from tests.test_training_stages import train_params

SEEN = np.array([(220, 40, 40), (40, 220, 40), (40, 40, 220), (220, 220, 40)], float)
UNSEEN = np.array([(40, 220, 220), (220, 40, 220)], float)
PER_ID, SIZE = 32, 32


def _write(root, colours, labeled: bool, seed: int):
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    w = AlignedWriter(root / "faces.npy", capacity=len(colours) * PER_ID, size=SIZE)
    rows = []
    for i, colour in enumerate(colours):
        for k in range(PER_ID):
            grey = rng.uniform(30, 225)
            img = np.empty((SIZE, SIZE, 3))
            img[: SIZE // 2] = colour
            img[SIZE // 2 :] = grey
            w.append(np.clip(img + rng.normal(0, 8, img.shape), 0, 255).astype(np.uint8))
            split = "test" if k < 6 else ("val" if k < 8 else "train")
            name = f"id_{i + (0 if labeled else 100):04d}"
            rows.append({"path": f"{name}/{k}.png", "identity": name if labeled else "", "true_identity": name,
                         "split": split, "f_grey": grey})
    w.close()
    pd.DataFrame(rows).to_parquet(root / "index.parquet")


def _top(images_u8: np.ndarray) -> np.ndarray:
    return images_u8[:, : SIZE // 2].reshape(len(images_u8), -1, 3).mean(1)  # (N, 3)


def _bottom(images_u8: np.ndarray) -> np.ndarray:
    return images_u8[:, SIZE // 2 :].mean(axis=(1, 2, 3))  # (N,)


def _nearest(colours: np.ndarray, palette: np.ndarray) -> np.ndarray:
    return np.argmin(((colours[:, None] - palette[None]) ** 2).sum(-1), 1)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    import os

    root = tmp_path_factory.mktemp("behaviour")
    old = os.getcwd()
    os.chdir(root)
    mp = pytest.MonkeyPatch()
    mp.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{root / 'mlflow.db'}")
    try:
        _write(root / "data/aligned/labeled", SEEN, True, 0)
        _write(root / "data/aligned/unlabeled", UNSEEN, False, 1)
        p = train_params()
        p["model"].update({"zs_dim": 4, "zu_dim": 4})
        p["train_gm"].update({"steps": 150, "batch_size": 16, "checkpoint_every": 1000, "log_every": 50})
        # 900 joint steps: at 600 the quarter-width decoder had not yet learned every colour at some seeds (one
        # class's samples and reconstructions stayed grey at seeds 0 and 1, with and without the decoder's extra
        # layers); at 900 samples read as their class 1.00 at seeds 0-4.
        p["train_joint"].update({"steps": 900, "batch_size": 16, "checkpoint_every": 1000, "log_every": 50})
        p["finetune_semi"].update({"steps": 150, "batch_size": 16, "checkpoint_every": 1000, "log_every": 50})
        write_params(root / "params.yaml", p)
        copy_dvc_yaml(root)
        torch.set_num_threads(1)
        for cmd in ("train-gm", "train-joint", "finetune-semi"):
            r = CliRunner().invoke(app, [cmd], catch_exceptions=False)
            assert r.exit_code == 0, r.output
        yield root
    finally:
        mp.undo()
        os.chdir(old)


@pytest.mark.parametrize("stage", ["train_joint", "finetune_semi"])
def test_samples_of_class_c_show_class_c(trained, stage):
    model, _ = load_model(trained / f"models/{stage}/model.pt")
    g = torch.Generator().manual_seed(0)
    hits = []
    with torch.no_grad():
        for c in range(len(SEEN)):
            x = to_uint8_images(model.generate(y=c, n=25, generator=g).x)
            hits.append(_nearest(_top(x), SEEN) == c)
    assert np.mean(hits) >= 0.8, f"{stage}: samples read as their class {np.mean(hits):.2f} of the time"


def test_after_fine_tuning_identity_follows_z_s_and_nuisance_follows_z_u(trained):
    faces = np.load(trained / "data/aligned/unlabeled/faces.npy", mmap_mode="r")
    index = pd.read_parquet(trained / "data/aligned/unlabeled/index.parquet")
    test = np.flatnonzero(index["split"].to_numpy() == "test")
    ids = index["true_identity"].to_numpy()
    a, b = np.meshgrid(test, test, indexing="ij")
    keep = ids[a.ravel()] != ids[b.ravel()]
    a, b = a.ravel()[keep], b.ravel()[keep]
    model, _ = load_model(trained / "models/finetune_semi/model.pt")
    swapped = swap_images(model, faces, a, b)
    top = _top(swapped)
    colour = {name: UNSEEN[i] for i, name in enumerate(sorted(set(ids)))}
    to_s = ((top - np.stack([colour[i] for i in ids[a]])) ** 2).sum(1)
    to_u = ((top - np.stack([colour[i] for i in ids[b]])) ** 2).sum(1)
    assert (to_s < to_u).mean() >= 0.75, f"identity follows the z_s source in {(to_s < to_u).mean():.2f} of swaps"
    grey = index["f_grey"].to_numpy()
    r_u = np.corrcoef(_bottom(swapped), grey[b])[0, 1]
    r_s = np.corrcoef(_bottom(swapped), grey[a])[0, 1]
    assert r_u > 0.5 and r_u > r_s + 0.3, f"nuisance follows z_u (r={r_u:.2f}) vs z_s (r={r_s:.2f})"


def test_the_discriminator_inside_training_tells_real_from_samples(trained):
    """D(real) - D(sample) over the last fifth of train_joint stays positive: a D pinned at a constant (the
    gap near 0) gives the decoder no adversarial signal. Here the defaults gave 0.157; the decoder's GAN
    weight 1 and the three-term D loss (the D that stopped learning) gave 0.022."""
    import json

    m = json.loads((trained / "reports/train_joint.json").read_text())
    assert m["d_gap_last_fifth"] >= 0.08, f"D(real) - D(sample) over the last fifth: {m['d_gap_last_fifth']:.3f}"


@pytest.mark.parametrize("stage", ["train_joint", "finetune_semi"])
def test_the_decoder_gives_users_what_training_saw(trained, stage):
    """The same codes decode to nearly the same images in training mode (what the losses and D see) and in
    eval mode (what users get): the defaults gave 0.041 / 0.044 (mean absolute, batch 16; 0.036 / 0.039
    when the eval-mode pass read statistics the training-mode pass had just moved), without the decoder's
    statistics refresh 0.059."""
    from lrlivae.evaluate.realism import train_eval_gap

    model, _ = load_model(trained / f"models/{stage}/model.pt")
    assert train_eval_gap(model, len(SEEN), n=16) <= 0.05
