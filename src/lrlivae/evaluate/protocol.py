"""The fixed evaluation protocol (Sec. 4.3, Appendix B.5), for Lr-LiVAE and the baselines alike.

- inception_score(_std): exp(E_x KL(p(y|x) || p(y))) with the evaluator's p(y|x) on `per_class` samples
  per class (for Lr-LiVAE z_s ~ N(mu_c, Sigma_c), z_u ~ N(0, I); eval mode, seed `seed`), classes
  interleaved, `splits` splits of consecutive chunks; inception_score_real: the same on the real test
  split (the ceiling), interleaved by class and cut into chunks of the generated chunk size (IS depends
  on the chunk size, so the two are comparable only so);
- generated_class_accuracy: how often the evaluator reads a sample of class c as c;
- intra_class_diversity(_real): Eq. 12, 1 - mean MS-SSIM over all pairs within a class, averaged over
  classes (lrlivae.evaluate.diversity);
- fcd: Frechet distance of evaluator features, generated samples vs real test images;
- zs_accuracy (GM posterior, test split), zs/zu_probe_accuracy (logistic probes fitted on train codes),
  chance_accuracy, and the class-accuracy decomposition (lrlivae.evaluate.diagnose);
- inpaint_psnr_<mask>, inpaint_ssim_<mask>: x_inp = M x' + (1 - M) x on the test split, over the masked
  region; masks placed from the alignment template (lrlivae.evaluate.inpaint);
- synthetic data: the disentanglement table (each ground-truth factor probed from z_s and from z_u on
  held-out codes) and disentanglement_gap over `nuisance_factors`;
- realism (lrlivae.evaluate.realism, each with its written protocol): precision, recall, density, coverage
  in the evaluator's feature space against the real test split, overall and per person (`*_per_class`);
  sharpness_ratio; two_sample_accuracy against the real training split; train_eval_gap of the decoder;
- with a judge reference (lrlivae.evaluate.identity.JudgeReference): identity_judge/* of the same samples.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

import numpy as np
import torch
from pydantic import Field

from lrlivae.data.aligned import AlignedFaces, to_float_tensor, to_uint8_images
from lrlivae.encode import encode_rows, evaluating, gm_accuracy, probe_accuracy
from lrlivae.evaluate.classifier import accuracy, features, predict_probs
from lrlivae.evaluate.diversity import intra_class_diversity
from lrlivae.evaluate.frechet import fcd
from lrlivae.evaluate.inception import inception_score, interleave_classes, splits_for_chunk
from lrlivae.evaluate.inpaint import MASKS, inpaint, make_mask, masked_psnr, masked_ssim
from lrlivae.evaluate.probes import disentanglement_gap, disentanglement_table
from lrlivae.evaluate.realism import realism_in_features, sharpness_ratio, train_eval_gap, two_sample_accuracy

DEFAULT_NUISANCE = ("yaw", "pitch", "smile", "mouth_open", "eyes_closed", "light_x", "light_y", "light_strength",
                    "bg_brightness")


@dataclass(frozen=True)
class EvalProtocol:
    """The protocol's settings (params.yaml `evaluate` fills them; the bounds are checked there)."""

    per_class: Annotated[int, Field(ge=2, description="generated samples per class (paper: 100 for faces)")] = 50
    splits: Annotated[int, Field(ge=1, description="Inception Score splits")] = 10
    nuisance_factors: Annotated[tuple[str, ...], Field(
        description="synthetic factors of disentanglement_gap's nuisance side")] = DEFAULT_NUISANCE


def generate_per_class(model, n_classes: int, per_class: int, seed: int, device) -> tuple[np.ndarray, np.ndarray]:
    """`per_class` uint8 samples of every class from `model.generate`, classes interleaved (so that each
    Inception Score split, a consecutive chunk, holds all of them); returns (images, labels)."""
    g = torch.Generator(device=device).manual_seed(seed)
    imgs, ys = [], []
    with evaluating(model):
        for c in range(n_classes):
            out = model.generate(y=c, n=per_class, generator=g)
            imgs.append(to_uint8_images(out.x))
            ys.append(np.full(per_class, c))
    ys = np.concatenate(ys)
    order = interleave_classes(ys)
    return np.concatenate(imgs)[order], ys[order]


def generation_metrics(model, ev, n_classes: int, x_te: np.ndarray, y_te: np.ndarray, protocol: EvalProtocol,
                       seed: int, device, judge=None, x_tr: np.ndarray | None = None) -> dict:
    """Inception Score (and its real-image ceiling), generated-class accuracy, intra-class diversity, FCD
    and the realism figures of any model with `generate(y=c, n, generator)` (Lr-LiVAE or a baseline); the
    two-sample test needs the real training crops `x_tr`; with a judge reference also the identity_judge/*
    figures of the same samples."""
    m: dict[str, float] = {}
    gen, gen_y = generate_per_class(model, n_classes, protocol.per_class, seed, device)
    splits = min(protocol.splits, len(gen))
    m["inception_score"], m["inception_score_std"] = inception_score(predict_probs(ev, gen), splits=splits)
    real_order = interleave_classes(y_te)
    m["inception_score_real"], _ = inception_score(
        predict_probs(ev, x_te[real_order]), splits=splits_for_chunk(len(x_te), len(gen) // splits))
    m["generated_class_accuracy"] = accuracy(ev, gen, gen_y)
    m["intra_class_diversity"] = intra_class_diversity(gen, gen_y)
    try:
        m["intra_class_diversity_real"] = intra_class_diversity(x_te, y_te)
    except ValueError as e:  # a test split with one image per class has no pairs
        print(f"[lrlivae] warning: intra_class_diversity_real not computed: {e}")
    f_gen, f_te = features(ev, gen), features(ev, x_te)
    m["fcd"] = fcd(f_gen, f_te)
    m.update(realism_in_features(f_te, y_te, f_gen, gen_y))
    m["sharpness_ratio"] = sharpness_ratio(gen, x_te)
    if x_tr is not None:
        m["two_sample_accuracy"] = two_sample_accuracy(x_tr, gen, seed=seed)
    m["train_eval_gap"] = train_eval_gap(model, n_classes, seed=seed)
    if judge is not None:
        m.update(judge.score(gen, gen_y))
    return m


def inpainting_metrics(model, x: torch.Tensor, size: int) -> dict:
    """inpaint_psnr_<mask>, inpaint_ssim_<mask> on x (N, C, S, S) for every mask, for any model with
    `reconstruct(x, sample=False)` (a baseline that needs labels comes wrapped in `LabelBound`)."""
    m: dict[str, float] = {}
    for name in MASKS:
        mask = make_mask(name, size)
        with evaluating(model):
            x_inp = inpaint(model, x, mask)
        m[f"inpaint_psnr_{name}"] = float(np.mean(masked_psnr(x, x_inp, mask)))
        m[f"inpaint_ssim_{name}"] = float(np.mean(masked_ssim(x, x_inp, mask)))
    return m


def score_model(model, ev, ds: AlignedFaces, ids: list[str], protocol: EvalProtocol, seed: int, device,
                judge=None) -> tuple[dict, object]:
    """Every figure of the protocol for one Lr-LiVAE model on the labeled test split of `ds`: generation
    metrics, code accuracies and probes, the class-accuracy decomposition and code statistics, inpainting,
    and on synthetic data the disentanglement table. Returns (metrics, table or None)."""
    from lrlivae.evaluate.diagnose import diagnose

    labels = ds.labels(ids)
    tr, te = ds.labeled_rows("train", ids), ds.labeled_rows("test", ids)
    x_te, y_te = np.asarray(ds.faces[te]), labels[te]
    m: dict[str, float] = {}
    m.update(generation_metrics(model, ev, len(ids), x_te, y_te, protocol, seed, device, judge,
                                x_tr=np.asarray(ds.faces[tr])))
    codes_tr = encode_rows(model, ds.faces, tr, device)
    codes_te = encode_rows(model, ds.faces, te, device)
    m["zs_accuracy"] = gm_accuracy(model, codes_te.zs, y_te)
    m["zs_probe_accuracy"] = probe_accuracy(codes_tr.zs, labels[tr], codes_te.zs, y_te)
    m["zu_probe_accuracy"] = probe_accuracy(codes_tr.mu, labels[tr], codes_te.mu, y_te)
    m["chance_accuracy"] = 1.0 / len(ids)
    m["evaluator_real_accuracy"] = accuracy(ev, x_te, y_te)
    m.update(diagnose(model, ev, codes_tr, labels[tr], codes_te, y_te, seed=seed))
    m.update(inpainting_metrics(model, to_float_tensor(x_te), ds.faces.shape[1]))
    table = None
    if any(c.startswith("f_") for c in ds.index.columns):
        from lrlivae.data.synthetic import FACTOR_KINDS, IDENTITY_FACTORS, NUISANCE_FACTORS

        kinds = {k: v for k, v in FACTOR_KINDS.items() if f"f_{k}" in ds.index}
        if kinds:
            f_tr = {k: ds.index[f"f_{k}"].to_numpy()[tr] for k in kinds}
            f_te = {k: ds.index[f"f_{k}"].to_numpy()[te] for k in kinds}
            table = disentanglement_table(codes_tr, codes_te, f_tr, f_te, kinds)
            nuisance = [k for k in NUISANCE_FACTORS if k in kinds and k in protocol.nuisance_factors]
            m["disentanglement_gap"] = disentanglement_gap(table, [k for k in IDENTITY_FACTORS if k in kinds],
                                                           nuisance)
    return m, table
