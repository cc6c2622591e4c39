"""The evaluation library: Inception Score, intra-class diversity, Frechet distance, inpainting masks and
metrics, disentanglement probes, figures and the evaluator classifier (CPU, offline, own data)."""
from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from scipy import linalg

from lrlivae.data.aligned import to_float_tensor
from lrlivae.evaluate import classifier, diversity, figures, frechet, inception, inpaint, probes
from lrlivae.faces.align import template
from lrlivae.nn.config import ModelConfig
from lrlivae.nn.model import build_model


@pytest.fixture(autouse=True)
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def tiny_model():
    torch.manual_seed(0)
    cfg = ModelConfig(arch="small", image_size=32, zs_dim=6, zu_dim=5, n_classes=4, width=0.25,
                      enc_hidden=16, adv_hidden=8, disc_hidden=16)
    return build_model(cfg).eval()


def _faces(n: int, size: int = 64, seed: int = 0) -> np.ndarray:
    """Structured images: a smooth gradient background plus a random bright disc."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size] / size
    out = np.empty((n, size, size, 3), np.uint8)
    for i in range(n):
        base = (rng.uniform(40, 200, 3) * (0.6 + 0.4 * xx[..., None] * rng.uniform(0, 1, 3)))
        cx, cy, r = rng.uniform(0.2, 0.8), rng.uniform(0.2, 0.8), rng.uniform(0.1, 0.3)
        disc = ((xx - cx) ** 2 + (yy - cy) ** 2) < r**2
        base[disc] = rng.uniform(150, 255, 3)
        out[i] = np.clip(base + rng.normal(0, 4, base.shape), 0, 255).astype(np.uint8)
    return out


# ------------------------------------------------------------------------ Inception Score
def test_inception_score_uniform_and_one_hot():
    assert inception.inception_score(np.full((40, 7), 1 / 7), splits=4) == pytest.approx((1.0, 0.0), abs=1e-12)
    c = 5
    one_hot = np.eye(c)[np.tile(np.arange(c), 20)]  # every split of 10 holds each class twice
    mean, std = inception.inception_score(one_hot, splits=10)
    assert mean == pytest.approx(c, abs=1e-9) and std == pytest.approx(0.0, abs=1e-9)


def test_inception_score_mixed_by_hand():
    rng = np.random.default_rng(1)
    p = rng.dirichlet(np.ones(4) * 0.5, size=23)
    expected = []
    for chunk in (p[:12], p[12:]):  # array_split(23, 2): consecutive chunks of 12 and 11
        py = chunk.mean(0)
        kl = [sum(pi * np.log(pi / q) for pi, q in zip(row, py) if pi > 0) for row in chunk]
        expected.append(np.exp(np.mean(kl)))
    mean, std = inception.inception_score(p, splits=2)
    assert mean == pytest.approx(np.mean(expected), abs=1e-6)
    assert std == pytest.approx(np.std(expected), abs=1e-6)
    with pytest.raises(ValueError):
        inception.inception_score(np.log(p), splits=2)  # logits are refused


def test_interleave_classes_and_chunk_splits():
    labels = np.array([2, 2, 0, 1, 0, 2, 0, 0])
    order = inception.interleave_classes(labels)
    assert sorted(order) == list(range(8))
    # the classes take turns while they last (class 1 has one row, class 2 three) and keep their order
    assert labels[order].tolist() == [0, 1, 2, 0, 2, 0, 2, 0]
    assert order.tolist() == [2, 3, 0, 4, 1, 6, 5, 7]
    # equal class sizes: row k*C + c is class c's k-th image
    eq = np.repeat(np.arange(4), 5)
    assert eq[inception.interleave_classes(eq)].tolist() == list(range(4)) * 5
    # a class-sorted real set scores far below the same set interleaved (every chunk needs all classes)
    one_hot = np.eye(4)[eq]
    assert inception.inception_score(one_hot, splits=5)[0] < 2.0
    assert inception.inception_score(one_hot[inception.interleave_classes(eq)], splits=5)[0] == pytest.approx(4.0)
    assert inception.splits_for_chunk(460, 200) == 2
    assert inception.splits_for_chunk(50, 200) == 1
    with pytest.raises(ValueError):
        inception.splits_for_chunk(10, 0)


# ------------------------------------------------------------------------ diversity
def test_diversity_identical_zero_distinct_positive():
    x = _faces(1)
    assert diversity.intra_class_diversity(np.repeat(x, 6, 0), np.zeros(6, int)) == pytest.approx(0.0, abs=1e-6)
    imgs = _faces(8, seed=3)
    assert diversity.intra_class_diversity(imgs, np.repeat([0, 1], 4)) > 0.05


def test_diversity_batched_equals_loop_and_small_images():
    imgs = _faces(11, seed=4)
    labels = np.array([0] * 5 + [1] * 4 + [2] * 1 + [3] * 1)  # classes 2 and 3 have no pairs
    batched = diversity.intra_class_diversity(imgs, labels, pair_batch=3)
    assert batched == pytest.approx(diversity.intra_class_diversity_loop(imgs, labels), abs=1e-6)
    assert batched == pytest.approx(diversity.intra_class_diversity(imgs, labels, pair_batch=4096), abs=1e-9)
    small = _faces(4, size=32, seed=5)
    assert 0 < diversity.intra_class_diversity(small, np.zeros(4, int)) < 1
    a = to_float_tensor(small)
    assert torch.allclose(diversity.ms_ssim_pairs(a, a), torch.ones(4), atol=1e-6)


def test_fast_ms_ssim_equals_the_library_per_pair():
    # the metric's fast path against pytorch_msssim (ms_ssim_pairs), pair by pair, at 64 px and at a
    # size that is enlarged first; odd sides exercise the library's padded downscaling
    for size, seed in ((64, 6), (32, 7), (45, 8)):
        x = to_float_tensor(_faces(6, size=size, seed=seed))
        stats = diversity._ImageStats(x)
        for i in range(5):
            fast = diversity.fast_ms_ssim_row(stats, i, i + 1, 6)
            ref = diversity.ms_ssim_pairs(x[i : i + 1].expand(5 - i, -1, -1, -1), x[i + 1 :])
            assert torch.allclose(fast, ref, atol=2e-6), (size, i, fast, ref)


# ------------------------------------------------------------------------ Frechet distance
def _closed_form(m1, s1, m2, s2):
    r1 = linalg.sqrtm(s1).real
    return float(((m1 - m2) ** 2).sum() + np.trace(s1 + s2 - 2 * linalg.sqrtm(r1 @ s2 @ r1).real))


def test_frechet_self_and_closed_form():
    rng = np.random.default_rng(0)
    f = rng.normal(size=(500, 8)) @ rng.normal(size=(8, 8))
    assert frechet.fcd(f, f) == pytest.approx(0.0, abs=1e-6)
    m1, m2 = rng.normal(size=4), rng.normal(size=4)
    v1, v2 = rng.uniform(0.5, 2, 4), rng.uniform(0.5, 2, 4)
    diag = ((m1 - m2) ** 2).sum() + (v1 + v2 - 2 * np.sqrt(v1 * v2)).sum()
    assert frechet.frechet_distance(m1, np.diag(v1), m2, np.diag(v2)) == pytest.approx(diag, rel=1e-9)
    a, b = rng.normal(size=(4, 4)), rng.normal(size=(4, 4))
    s1, s2 = a @ a.T + 0.1 * np.eye(4), b @ b.T + 0.1 * np.eye(4)  # non-commuting covariances
    assert frechet.frechet_distance(m1, s1, m2, s2) == pytest.approx(_closed_form(m1, s1, m2, s2), rel=1e-6)
    xa = rng.multivariate_normal(m1, s1, size=20000)
    xb = rng.multivariate_normal(m2, s2, size=20000)
    assert frechet.fcd(xa, xb) == pytest.approx(_closed_form(m1, s1, m2, s2), rel=0.05)


# ------------------------------------------------------------------------ inpainting
def _contains(mask, pt) -> bool:
    return bool(mask[int(round(pt[1])), int(round(pt[0]))])


@pytest.mark.parametrize("size", [64, 32])
def test_mask_geometry(size):
    t = template(size)
    ms = inpaint.masks(size)
    assert tuple(ms) == inpaint.MASKS
    for m in ms.values():
        assert m.shape == (size, size) and set(np.unique(m)) <= {0, 1} and m.any()
    right = np.zeros((size, size), np.uint8)
    right[:, size // 2 :] = 1
    assert (ms["right_half"] == right).all() and (ms["bottom_half"] == right.T).all()
    eyes, nose, mouth = ms["eyes"], ms["nose"], ms["mouth"]
    assert _contains(eyes, t[0]) and _contains(eyes, t[1])
    assert not any(_contains(eyes, p) for p in t[2:])
    assert _contains(nose, t[2]) and not any(_contains(nose, p) for p in np.delete(t, 2, 0))
    assert _contains(mouth, t[3]) and _contains(mouth, t[4]) and not any(_contains(mouth, p) for p in t[:3])
    assert eyes.sum() < size * size / 4 and mouth.sum() < size * size / 4 and nose.sum() < mouth.sum()


def test_inpaint_keeps_known_pixels_and_metrics(tiny_model):
    x = to_float_tensor(_faces(3, size=32, seed=6))
    m = inpaint.make_mask("eyes", 32)
    x_inp = inpaint.inpaint(tiny_model, x, m)
    keep = torch.as_tensor(m == 0)
    assert torch.equal(x_inp[:, :, keep], x[:, :, keep])
    assert not torch.allclose(x_inp[:, :, ~keep], x[:, :, ~keep])
    assert np.isinf(inpaint.masked_psnr(x, x, m)).all()
    psnr = inpaint.masked_psnr(x, x_inp, m)
    assert psnr.shape == (3,) and np.isfinite(psnr).all() and (psnr > 0).all()
    assert inpaint.masked_ssim(x, x, m) == pytest.approx(np.ones(3))
    assert (inpaint.masked_ssim(x, x_inp, m) < 1).all()


# ------------------------------------------------------------------------ probes
def _probe_data(seed: int, n: int):
    rng = np.random.default_rng(seed)
    zs, zu = rng.normal(size=(n, 4)), rng.normal(size=(n, 3))
    factors = {"ident": zs @ np.array([1.0, -2.0, 0.5, 0.0]), "pose": zu @ np.array([0.0, 1.5, -1.0]),
               "cls": (zs[:, 0] > 0).astype(int)}
    return {"zs": zs, "zu": zu}, factors


def test_disentanglement_table_and_gap():
    (c_tr, f_tr), (c_te, f_te) = _probe_data(0, 300), _probe_data(1, 200)
    kinds = {"ident": "continuous", "pose": "continuous", "cls": "discrete"}
    table = probes.disentanglement_table(c_tr, c_te, f_tr, f_te, kinds)
    assert list(table.index) == ["ident", "pose", "cls"]
    assert table.loc["ident", "from_zs"] > 0.95 and table.loc["ident", "from_zu"] < 0.05
    assert table.loc["pose", "from_zu"] > 0.95 and table.loc["pose", "from_zs"] < 0.05
    assert table.loc["cls", "from_zs"] > 0.9 and table.loc["cls", "metric"] == "accuracy"
    assert probes.disentanglement_gap(table, ["ident", "cls"], ["pose"]) > 1.5
    assert probes.disentanglement_gap(table, ["pose"], ["ident"]) < -1.5


# ------------------------------------------------------------------------ figures
def _grid_shape(nrow, ncol, size, pad=2):
    return (nrow * (size + pad) + pad, ncol * (size + pad) + pad, 3)


def test_figures_shapes(tiny_model):
    classes = [0, 2, 3]
    g = figures.class_samples(tiny_model, classes, per_class=4, seed=1)
    assert g.dtype == np.uint8 and g.shape == _grid_shape(3, 4, 32)
    assert np.array_equal(g, figures.class_samples(tiny_model, classes, per_class=4, seed=1))
    assert figures.interpolate_zs(tiny_model, classes, steps=5).shape == _grid_shape(3, 5, 32)
    assert figures.vary_zu(tiny_model, classes, n=6).shape == _grid_shape(3, 6, 32)
    x = _faces(2, size=32)
    order, change = figures.rank_zu_dimensions(tiny_model, x)
    assert sorted(order) == list(range(5)) and (np.diff(change[order]) <= 0).all()
    assert figures.zu_dimensions(tiny_model, x, n_dims=2, values=[-3, 0, 3]).shape == _grid_shape(4, 3, 32)
    g = figures.inpainting_rows(tiny_model, x, ["right_half", "mouth"])
    assert g.dtype == np.uint8 and g.shape == _grid_shape(2, 6, 32)
    assert tiny_model.training is False
    png = figures.training_curves({"loss/a": [(0, 1.0), (10, 0.5)], "acc": [(0, 0.1), (5, 0.9)]})
    from PIL import Image

    assert Image.open(io.BytesIO(png)).format == "PNG"


# ------------------------------------------------------------------------ evaluator classifier
def _colour_set(n_per_class: int, seed: int):
    rng = np.random.default_rng(seed)
    colours = np.array([[220, 40, 40], [40, 200, 40], [40, 40, 220], [230, 230, 60]])
    y = np.repeat(np.arange(4), n_per_class)
    x = colours[y][:, None, None, :] + rng.normal(0, 25, (len(y), 32, 32, 3))
    return np.clip(x, 0, 255).astype(np.uint8), y


def test_evaluator_trains_and_round_trips(tmp_path):
    x, y = _colour_set(24, seed=0)
    xt, yt = _colour_set(10, seed=1)
    model = classifier.train_evaluator(x, y, classifier.EvaluatorTraining(epochs=3, batch_size=16, lr=0.02, seed=0),
                                       val=(xt, yt))
    assert classifier.accuracy(model, xt, yt) > 0.9 and len(model.history) == 3
    probs = classifier.predict_probs(model, xt)
    assert probs.shape == (40, 4) and np.allclose(probs.sum(1), 1)
    feats = classifier.features(model, xt)
    assert feats.shape == (40, model.feature_dim)
    path = tmp_path / "evaluator.pt"
    classifier.save_evaluator(model, path, identities=["a", "b", "c", "d"])
    loaded, d = classifier.load_evaluator(path)
    assert d["identities"] == ["a", "b", "c", "d"]
    assert np.allclose(classifier.predict_probs(loaded, xt), probs, atol=1e-6)
    assert np.allclose(classifier.features(loaded, xt), feats, atol=1e-5)
