"""The realism figures (lrlivae.evaluate.realism) on data whose answer is known, and the decoder and
discriminator options they judge: resize-convolutions, GroupNorm (training and eval outputs equal), sum
pooling, the reconstruction weight of D's loss and the R1 penalty."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from lrlivae import losses
from lrlivae.evaluate.realism import (high_frequency_energy, manifold_metrics, realism_in_features,
                                      sharpness_ratio, train_eval_gap, two_sample_accuracy)
from lrlivae.nn.config import ModelConfig
from lrlivae.nn.model import build_discriminator, build_model


def test_same_distribution_has_high_precision_and_recall_and_far_samples_none():
    rng = np.random.default_rng(0)
    real = rng.normal(size=(300, 8))
    same = rng.normal(size=(300, 8))
    m = manifold_metrics(real, same)
    assert m["precision"] > 0.8 and m["recall"] > 0.8 and m["coverage"] > 0.8
    assert 0.6 < m["density"] < 1.6
    far = rng.normal(size=(300, 8)) + 10.0
    m = manifold_metrics(real, far)
    assert m["precision"] == 0.0 and m["recall"] == 0.0 and m["coverage"] == 0.0 and m["density"] == 0.0


def test_collapsed_samples_are_precise_but_recall_little():
    rng = np.random.default_rng(1)
    real = rng.normal(size=(300, 4))
    collapsed = rng.normal(scale=0.05, size=(300, 4))  # all near the mode
    m = manifold_metrics(real, collapsed)
    assert m["precision"] > 0.9 and m["recall"] < 0.2


def test_per_class_figures_average_over_classes():
    rng = np.random.default_rng(2)
    real = np.concatenate([rng.normal(size=(40, 4)), rng.normal(size=(40, 4)) + 20])
    real_y = np.repeat([0, 1], 40)
    fake = np.concatenate([rng.normal(size=(40, 4)), rng.normal(scale=0.01, size=(40, 4)) + 20])
    fake_y = np.repeat([0, 1], 40)
    m = realism_in_features(real, real_y, fake, fake_y)
    assert m["recall_per_class"] < 0.75  # class 1 collapsed to its mean
    assert m["precision_per_class"] > 0.8


def test_sharpness_ratio_tells_blur_and_noise_from_real():
    rng = np.random.default_rng(3)
    real = rng.integers(0, 256, size=(20, 16, 16, 3)).astype(np.uint8)
    assert sharpness_ratio(real, real) == pytest.approx(1.0)
    blurred = ((real[:, :-1, :-1].astype(float) + real[:, 1:, 1:] + real[:, 1:, :-1] + real[:, :-1, 1:]) / 4).astype(np.uint8)
    assert high_frequency_energy(blurred) < 0.5 * high_frequency_energy(real[:, :-1, :-1])


def _faces(n, seed, flat=False):
    rng = np.random.default_rng(seed)
    x = np.zeros((n, 16, 16, 3), np.uint8)
    for i in range(n):
        g = rng.integers(40, 200)
        x[i] = g
        if not flat:
            x[i] = np.clip(g + rng.normal(0, 40, (16, 16, 3)), 0, 255)
    return x


def test_two_sample_accuracy_is_chance_for_one_distribution_and_high_for_another():
    real_a, real_b = _faces(400, 0), _faces(400, 1)
    flat = _faces(400, 2, flat=True)
    same = two_sample_accuracy(real_a, real_b, seed=0)
    differ = two_sample_accuracy(real_a, flat, seed=0)
    assert same < 0.65, same
    assert differ > 0.9, differ
    assert two_sample_accuracy(real_a, flat, seed=0) == differ  # repeatable


def _cfg(**kw):
    return ModelConfig(n_classes=4, zs_dim=4, zu_dim=4, image_size=32, width=0.5, dec_depth=1, **kw)


@pytest.mark.parametrize("up", ["transpose", "resize"])
def test_group_norm_decoder_is_the_same_in_training_and_use(up):
    torch.manual_seed(0)
    group = build_model(_cfg(dec_up=up, dec_norm="group"))
    assert train_eval_gap(group, 4, n=16) < 1e-5
    torch.manual_seed(0)
    batch = build_model(_cfg(dec_up=up, dec_norm="batch"))
    assert train_eval_gap(batch, 4, n=16) > 1e-3
    # a GroupNorm decoder's output for one image does not depend on the others in the batch
    z = torch.randn(8, 8)
    group.train()
    with torch.no_grad():
        full = group.dec(z[:, :4], z[:, 4:])
        one = group.dec(z[:1, :4], z[:1, 4:])
    torch.testing.assert_close(full[:1], one, atol=1e-5, rtol=1e-5)


def test_resize_decoder_has_no_transposed_convolution():
    model = build_model(_cfg(dec_up="resize"))
    kinds = {type(m).__name__ for m in model.dec.modules()}
    assert "ConvTranspose2d" not in kinds and "Upsample" in kinds
    assert model.generate(y=0, n=3).x.shape == (3, 3, 32, 32)


def test_sum_pooling_scales_the_discriminator_features_by_the_map_area():
    torch.manual_seed(0)
    mean_d = build_discriminator(_cfg(disc_pool="mean"))
    torch.manual_seed(0)
    sum_d = build_discriminator(_cfg(disc_pool="sum"))
    x = torch.randn(2, 3, 32, 32)
    mean_d.eval(), sum_d.eval()
    with torch.no_grad():
        f_mean, f_sum = mean_d.features(x), sum_d.features(x)
    torch.testing.assert_close(f_sum, f_mean * 4, atol=1e-5, rtol=1e-4)  # 32 px / 16 = a 2x2 map


def test_d_loss_rec_weight_zero_ignores_reconstructions():
    d_real, d_rec, d_s = torch.zeros(4), torch.full((4,), 3.0), torch.full((4,), -2.0)
    assert float(losses.d_loss_hinge(d_real, d_rec, d_s, rec_weight=0.0)) == pytest.approx(1.0)
    assert float(losses.d_loss_hinge(d_real, d_rec, d_s)) == pytest.approx(5.0)


def test_r1_penalty_is_half_the_squared_input_gradient():
    x = torch.randn(3, 5, requires_grad=True)
    w = torch.randn(5)
    d = x @ w  # gradient w for every row
    assert float(losses.r1_penalty(d, x)) == pytest.approx(0.5 * float(w.pow(2).sum()), rel=1e-5)


def test_refreshed_decoder_statistics_bring_eval_samples_to_what_training_saw():
    from lrlivae.train.bn_refresh import refresh_decoder_statistics

    torch.manual_seed(0)
    model = build_model(_cfg(dec_norm="batch"))
    for m in model.dec.modules():  # running statistics far from those of prior samples
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.fill_(3.0)
            m.running_var.fill_(9.0)
    before = train_eval_gap(model, 4, n=64)
    params = {k: v.clone() for k, v in model.state_dict().items()
              if not any(w in k for w in ("running", "num_batches", "rec_mean", "rec_var"))}
    assert refresh_decoder_statistics(model, batches=20, batch_size=64, seed=0) > 0
    after = train_eval_gap(model, 4, n=64)
    assert after < 0.3 * before, (before, after)
    for k, v in params.items():  # only the statistics moved
        torch.testing.assert_close(model.state_dict()[k], v)


def test_decoder_without_normalisation_is_the_same_in_training_and_use():
    torch.manual_seed(0)
    model = build_model(_cfg(dec_up="resize", dec_norm="none"))
    assert not any(isinstance(m, (torch.nn.BatchNorm2d, torch.nn.GroupNorm)) for m in model.dec.modules())
    assert train_eval_gap(model, 4, n=16) < 1e-6


def test_reconstructions_use_the_statistics_of_encoder_codes():
    """With training images given, the refresh keeps a second set of statistics for decoding encoder codes:
    eval-mode reconstructions then match training-mode ones better than with the prior samples' set."""
    from lrlivae.nn.decoder import reconstruction_statistics
    from lrlivae.train.bn_refresh import refresh_decoder_statistics

    torch.manual_seed(0)
    model = build_model(_cfg(dec_norm="batch"))
    with torch.no_grad():  # encoder codes far from the prior: z_u from the encoder shifted
        model.enc_u.mu.bias.fill_(3.0)
        model.enc_u.logvar.weight.zero_()
        model.enc_u.logvar.bias.fill_(-30.0)  # z_u sampled = its mean (to the log-variance bound)
    x = torch.rand(64, 3, 32, 32) * 2 - 1
    y = torch.arange(64) % 4
    refresh_decoder_statistics(model, batches=10, batch_size=64, seed=0, images=lambda i: (x, y))
    model.eval()
    with torch.no_grad():
        enc = model.encode(x)
        eval_rec = model.reconstruct(x, sample=False).x_rec
        prior_set = model.decode(enc.zs, enc.mu)  # the generation statistics
        model.dec.train()
        train_rec = model.decode(enc.zs, enc.mu)
    assert (eval_rec - train_rec).abs().mean() < 0.5 * (prior_set - train_rec).abs().mean()
    with reconstruction_statistics(model):
        assert all(m.use_rec for m in model.dec.modules() if hasattr(m, "rec_mean"))
    assert not any(m.use_rec for m in model.dec.modules() if hasattr(m, "rec_mean"))



@pytest.mark.parametrize("mode", ["fixed", "renorm"])
def test_decoder_batch_norms_on_the_statistics_of_use_give_eval_outputs_in_training(mode):
    """fixed: eval mode's normalisation in training, statistics still; renorm: the same output, batch norm's
    gradient, the statistics following the batches. Both: gradients reach the decoder, the train/eval gap is
    0, the mode travels with the weights, a refresh keeps it."""
    from lrlivae.nn.decoder import decoder_statistics, set_decoder_statistics
    from lrlivae.train.bn_refresh import refresh_decoder_statistics

    torch.manual_seed(0)
    model = build_model(_cfg(dec_norm="batch"))
    refresh_decoder_statistics(model, batches=2, batch_size=16, seed=0)
    assert decoder_statistics(model) == "batch"
    assert set_decoder_statistics(model, mode) > 0 and decoder_statistics(model) == mode
    assert train_eval_gap(model, 4, n=16) < 1e-5
    before = [b.clone() for n, b in model.dec.named_buffers() if "running" in n]
    model.train()
    out = model.generate(y=torch.arange(8) % 4, n=8, generator=torch.Generator().manual_seed(0)).x
    out.mean().backward()  # gradients still reach the decoder's weights
    assert all(p.grad is not None for p in model.dec.parameters())
    after = [b for n, b in model.dec.named_buffers() if "running" in n]
    moved = any(not torch.equal(a, b) for a, b in zip(before, after))
    assert moved == (mode == "renorm")
    # the mode travels with the weights; a state dict without it (an earlier checkpoint) loads on batch statistics
    state = model.state_dict()
    twin = build_model(_cfg(dec_norm="batch"))
    twin.load_state_dict(state)
    assert decoder_statistics(twin) == mode
    twin.load_state_dict({k: v for k, v in state.items() if not k.endswith("stats_mode")})
    assert decoder_statistics(twin) == "batch"
    refresh_decoder_statistics(model, batches=2, batch_size=16, seed=1)
    assert decoder_statistics(model) == mode


def test_renormalised_batch_norm_has_the_gradient_of_batch_norm():
    """Batch renormalisation's gradient with respect to the input is batch norm's scaled by r = sigma_B /
    sigma (per channel); its output is eval mode's."""
    from lrlivae.nn.decoder import DecoderBatchNorm2d

    torch.manual_seed(0)
    bn = DecoderBatchNorm2d(3)
    with torch.no_grad():
        bn.running_mean.copy_(torch.tensor([0.5, -0.2, 0.1]))
        bn.running_var.copy_(torch.tensor([2.0, 0.5, 1.0]))
        bn.weight.copy_(torch.tensor([1.5, 0.7, 1.0]))
    x = torch.randn(8, 3, 4, 4) * 1.3 + 0.4
    bn.eval()
    expected = bn(x).detach()
    mean0, var0 = bn.running_mean.clone(), bn.running_var.clone()
    bn.train()
    bn.stats_mode.fill_(2)
    xr = x.clone().requires_grad_(True)
    yr = bn(xr)
    torch.testing.assert_close(yr, expected, atol=1e-5, rtol=1e-5)
    g = torch.randn_like(yr)
    (yr * g).sum().backward()
    bn.stats_mode.fill_(0)
    xb = x.clone().requires_grad_(True)
    (bn(xb) * g).sum().backward()
    r = ((x.var((0, 2, 3), unbiased=False) + bn.eps).sqrt() / (var0 + bn.eps).sqrt()).view(1, 3, 1, 1)
    torch.testing.assert_close(xr.grad, xb.grad * r, atol=1e-5, rtol=1e-4)
    assert not torch.equal(mean0, bn.running_mean)

@pytest.mark.parametrize("head", [1, 2])
def test_decoder_head_adds_full_resolution_convolutions(head):
    base, more = build_model(_cfg(dec_up="resize")), build_model(_cfg(dec_up="resize", dec_head=head))

    def full_res_convs(model):
        sizes, hook = [], lambda m, i, o: sizes.append(o.shape[-1])
        handles = [m.register_forward_hook(hook) for m in model.dec.modules() if isinstance(m, torch.nn.Conv2d)]
        model.eval()
        with torch.no_grad():
            x = model.generate(y=0, n=2).x
        for h in handles:
            h.remove()
        assert x.shape == (2, 3, 32, 32)
        return sum(s == 32 for s in sizes)

    assert full_res_convs(more) == full_res_convs(base) + head
