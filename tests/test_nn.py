"""Networks: config round trip, shapes per architecture, the projection discriminator and its spectral-norm
state, bounded log-variances, and eval-mode generation."""
from __future__ import annotations

import io

import pytest
import torch
import torch.nn as nn
from torch.nn.utils import parametrize

from lrlivae.nn import (ARCHS, Discriminator, LrLiVAE, ModelConfig, build_discriminator, build_model,
                        count_parameters, frozen_spectral_norm)


def _tiny(**kw) -> ModelConfig:
    return ModelConfig(**{"arch": "small", "width": 0.5, "zs_dim": 8, "zu_dim": 6, "n_classes": 4, **kw})


# --------------------------------------------------------------------------- config
def test_config_round_trip_and_presets():
    for arch in ARCHS:
        cfg = ModelConfig.preset(arch, n_classes=7)
        d = cfg.to_dict()
        assert all(v is None or type(v) in (str, int, float) for v in d.values())
        assert ModelConfig.from_dict(d) == cfg
    faces, cifar = ModelConfig.preset("paper_faces"), ModelConfig.preset("paper_cifar")
    assert (faces.image_size, faces.zs_dim, faces.zu_dim, faces.enc_hidden_size, faces.disc_hidden_size) == \
        (64, 512, 512, 1024, 1024)
    assert (cifar.image_size, cifar.zs_dim, cifar.zu_dim, cifar.disc_hidden_size) == (32, 100, 200, 512)
    assert ModelConfig.from_dict({"zs_dim": 3}).zs_dim == 3  # missing keys take defaults


@pytest.mark.parametrize("bad,err", [
    ({"arch": "resnet"}, ValueError),
    ({"image_size": 40}, ValueError),
    ({"zs_dim": 0}, ValueError),
    ({"n_classes": 2.5}, TypeError),
    ({"zu_dim": True}, TypeError),
    ({"width": -1.0}, ValueError),
    ({"gm_var_min": 10.0, "gm_var_max": 1.0}, ValueError),
    ({"gm_var_init": 1e3}, ValueError),
])
def test_config_validation(bad, err):
    with pytest.raises(err):
        ModelConfig(**bad)


def test_config_from_dict_rejects_unknown_keys():
    with pytest.raises(ValueError, match="unknown ModelConfig keys"):
        ModelConfig.from_dict({"zs_dim": 3, "z_dim": 4})


# --------------------------------------------------------------------------- shapes
@pytest.mark.parametrize("arch,overrides", [
    ("small", {}),
    ("paper_faces", {"n_classes": 5}),
    ("paper_cifar", {"n_classes": 10}),
])
def test_shapes_for_every_architecture(arch, overrides):
    torch.manual_seed(0)
    cfg = ModelConfig.preset(arch, **overrides)
    model, disc = build_model(cfg), build_discriminator(cfg)
    B, S = 3, cfg.image_size
    x = torch.rand(B, 3, S, S) * 2 - 1
    y = torch.tensor([0, 1, 2])
    enc = model.encode(x)
    assert enc.zs.shape == (B, cfg.zs_dim) and enc.mu.shape == (B, cfg.zu_dim) == enc.logvar.shape
    rec = model.reconstruct(x)
    assert rec.x_rec.shape == x.shape and rec.x_rec.abs().max() <= 1.0
    assert model.adv(rec.zu).shape == (B, cfg.n_classes)
    gen = model.generate(y)
    assert gen.x.shape == x.shape and gen.zs.shape == (B, cfg.zs_dim) and gen.zu.shape == (B, cfg.zu_dim)
    assert disc(x, y).shape == (B,) and disc(x).shape == (B,)
    assert model.prior.means.shape == (cfg.n_classes, cfg.zs_dim)


def test_paper_architectures_follow_the_tables():
    faces = build_model(ModelConfig.preset("paper_faces", n_classes=5))
    convs = [m for m in faces.enc_s.modules() if isinstance(m, nn.Conv2d)]
    assert len(convs) == 13 and all(c.kernel_size == (3, 3) for c in convs)  # VGG16-BN
    assert [c.out_channels for c in convs] == [64, 64, 128, 128, 256, 256, 256, 512, 512, 512, 512, 512, 512]
    assert sum(isinstance(m, nn.MaxPool2d) for m in faces.enc_s.modules()) == 4
    assert sum(isinstance(m, nn.BatchNorm2d) for m in faces.enc_s.modules()) == 13
    d_faces = build_discriminator(ModelConfig.preset("paper_faces", n_classes=5))
    d_convs = [m for m in d_faces.modules() if isinstance(m, nn.Conv2d)]
    assert [(c.out_channels, c.stride[0]) for c in d_convs] == \
        [(64, 2), (128, 2), (256, 1), (256, 2), (512, 1), (512, 2), (512, 2)]  # Table 4
    cifar = ModelConfig.preset("paper_cifar")
    enc = build_model(cifar).enc_u
    assert [(c.out_channels, c.kernel_size[0], c.stride[0]) for c in enc.modules() if isinstance(c, nn.Conv2d)] \
        == [(32, 5, 2), (64, 5, 2), (128, 3, 2), (256, 3, 2)]  # Table 3
    d_cifar = build_discriminator(cifar)
    assert [(c.out_channels, c.kernel_size[0], c.stride[0]) for c in d_cifar.modules()
            if isinstance(c, nn.Conv2d)] == [(32, 5, 1), (128, 5, 2), (256, 5, 2), (256, 5, 2)]


def test_parameter_groups_cover_the_model_once():
    model = build_model(_tiny())
    groups = model.parameter_groups()
    ids = [id(p) for ps in groups.values() for p in ps]
    assert len(ids) == len(set(ids)) and set(ids) == {id(p) for p in model.parameters()}
    assert groups["gm_means"] == [model.prior.means] and groups["gm_logvars"] == [model.prior.logvar_raw]
    assert count_parameters(model) == sum(p.numel() for p in model.parameters())


def test_encoder_u_logvar_is_bounded_with_finite_gradients():
    cfg = _tiny(logvar_bound=10.0)
    model = build_model(cfg)
    with torch.no_grad():
        model.enc_u.logvar.weight.mul_(1e4)  # drive the raw log-variance far outside the bound
    x = (torch.rand(4, 3, 64, 64) * 2 - 1).requires_grad_()
    _, logvar = model.enc_u(x)
    assert logvar.abs().max() <= 10.0 and logvar.abs().max() > 9.0
    logvar.exp().sum().backward()
    assert torch.isfinite(x.grad).all()


# --------------------------------------------------------------------------- discriminator
def _unconditional(disc: Discriminator, x: torch.Tensor) -> torch.Tensor:
    h = disc.act(disc.fc_hidden(disc.features(x)))
    return disc.fc_out(h).squeeze(1)


def test_discriminator_projection_term():
    torch.manual_seed(0)
    disc = build_discriminator(_tiny()).eval()
    x = torch.rand(4, 3, 64, 64) * 2 - 1
    with torch.no_grad():
        uncond = _unconditional(disc, x)
        torch.testing.assert_close(disc(x, None), uncond)
        y1, y2 = torch.tensor([0, 1, 2, 3]), torch.tensor([1, 2, 3, 0])
        assert not torch.allclose(disc(x, y1), disc(x, y2))
        h = disc.act(disc.fc_hidden(disc.features(x)))
        torch.testing.assert_close(disc(x, y1), uncond + (disc.embed.weight[y1] * h).sum(1))
        mixed = disc(x, torch.tensor([0, -1, 2, -1]))  # -1: unlabeled rows get the unconditional part only
        torch.testing.assert_close(mixed[[1, 3]], uncond[[1, 3]])
        torch.testing.assert_close(mixed[[0, 2]], disc(x, y1)[[0, 2]])


def test_every_discriminator_weight_is_spectrally_normalised():
    for arch in ARCHS:
        disc = build_discriminator(ModelConfig.preset(arch, n_classes=3))
        layers = [m for m in disc.modules() if isinstance(m, (nn.Conv2d, nn.Linear, nn.Embedding))]
        assert layers and all(parametrize.is_parametrized(m, "weight") for m in layers)
        assert sum(isinstance(m, nn.LeakyReLU) and m.negative_slope == 0.1 for m in disc.modules()) >= 4


def test_power_iteration_advances_once_per_discriminator_step():
    torch.manual_seed(0)
    disc = build_discriminator(_tiny()).train()
    sn = disc.fc_hidden.parametrizations.weight[0]
    x_real, x_rec, x_s = (torch.rand(3, 3, 64, 64) * 2 - 1 for _ in range(3))
    y = torch.tensor([0, 1, 2])
    u0 = sn._u.clone()
    d_real, d_rec, d_s = disc.forward_batches([x_real, x_rec, x_s], [y, y, None])
    assert d_real.shape == d_rec.shape == d_s.shape == (3,)
    u1 = sn._u.clone()
    assert not torch.equal(u0, u1)
    # the generator's pass reuses the stored vectors: no further power iteration, D back in train mode
    with frozen_spectral_norm(disc):
        g_rec, g_s = disc.forward_batches([x_rec, x_s], [y, None])
    assert torch.equal(sn._u, u1) and disc.training
    # one concatenated call gives what separate calls would give with the same (frozen) vectors
    with frozen_spectral_norm(disc), torch.no_grad():
        torch.testing.assert_close(g_rec, disc(x_rec, y))
        torch.testing.assert_close(g_s, disc(x_s))
    # the one-step recipe: same power-iteration state as a single forward call
    one = build_discriminator(_tiny()).train()
    one.load_state_dict(disc.state_dict())
    one(torch.cat([x_real, x_rec]))
    disc.forward_batches([x_real, x_rec])
    torch.testing.assert_close(one.fc_hidden.parametrizations.weight[0]._u, sn._u)


def test_generator_gradient_flows_through_frozen_discriminator():
    disc = build_discriminator(_tiny()).train()
    x = (torch.rand(2, 3, 64, 64) * 2 - 1).requires_grad_()
    with frozen_spectral_norm(disc):
        disc(x, torch.tensor([0, 1])).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


# --------------------------------------------------------------------------- eval-mode generation
def _warm_up_batch_norm(model: LrLiVAE, steps: int = 20) -> None:
    """Train-mode passes (no optimiser) so the running statistics leave their initial values."""
    model.train()
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for _ in range(steps):
            x = torch.rand(16, 3, 64, 64, generator=g) * 2 - 1
            model.reconstruct(x, generator=g)
            model.generate(n=16, generator=g)


def test_eval_mode_generation_is_varied_and_per_sample():
    torch.manual_seed(0)
    model = build_model(_tiny())
    _warm_up_batch_norm(model)
    model.eval()
    stats_before = {k: v.clone() for k, v in model.state_dict().items() if "running" in k}
    with torch.no_grad():
        a = model.generate(torch.tensor([0, 0, 1, 2]), generator=torch.Generator().manual_seed(1))
        b = model.generate(torch.tensor([0, 0, 1, 2]), generator=torch.Generator().manual_seed(2))
        again = model.generate(torch.tensor([0, 0, 1, 2]), generator=torch.Generator().manual_seed(1))
        single = model.decode(a.zs[2:3], a.zu[2:3])
        other_class = model.generate(torch.tensor([3, 3, 3, 3]), zu=a.zu, generator=torch.Generator().manual_seed(1))
    assert torch.equal(a.x, again.x)  # reproducible with a seeded generator
    assert (a.x - b.x).abs().mean() > 1e-3  # different noise -> different images
    assert (a.x[0] - a.x[1]).abs().mean() > 1e-3  # same class, different z -> different images
    assert (a.x - other_class.x).abs().mean() > 1e-3  # same z_u, other class -> different images
    assert a.x.flatten(1).std(dim=1).min() > 1e-2  # no constant images
    torch.testing.assert_close(single, a.x[2:3], rtol=1e-4, atol=1e-5)  # independent of the batch in eval mode
    for k, v in model.state_dict().items():
        if k in stats_before:
            assert torch.equal(v, stats_before[k]), f"eval-mode generation changed {k}"
    # the running statistics were actually tracked during training
    bn = next(m for m in model.dec.modules() if isinstance(m, nn.BatchNorm2d))
    assert not torch.allclose(bn.running_var, torch.ones_like(bn.running_var))


def test_generate_label_arguments():
    model = build_model(_tiny()).eval()
    with torch.no_grad():
        assert model.generate(2, n=5).y.tolist() == [2] * 5
        assert model.generate(n=6, generator=torch.Generator().manual_seed(0)).y.shape == (6,)
        assert model.generate(torch.tensor([1, 3])).x.shape == (2, 3, 64, 64)
        with pytest.raises(ValueError):
            model.generate(None)
        with pytest.raises(ValueError):
            model.generate(torch.tensor([4]))
        with pytest.raises(ValueError):
            model.generate(torch.tensor([1, 2]), n=3)


def test_generation_gives_no_gradient_to_the_prior():
    model = build_model(_tiny()).train()
    model.generate(n=4).x.sum().backward()
    assert model.prior.means.grad is None and model.prior.logvar_raw.grad is None
    assert any(p.grad is not None for p in model.dec.parameters())


def test_checkpoint_round_trip_weights_only():
    cfg = _tiny()
    model, disc = build_model(cfg), build_discriminator(cfg)
    buf = io.BytesIO()
    torch.save({"config": cfg.to_dict(), "model": model.state_dict(), "disc": disc.state_dict()}, buf)
    buf.seek(0)
    ckpt = torch.load(buf, weights_only=True)
    cfg2 = ModelConfig.from_dict(ckpt["config"])
    model2, disc2 = build_model(cfg2), build_discriminator(cfg2)
    model2.load_state_dict(ckpt["model"])
    disc2.load_state_dict(ckpt["disc"])
    model.eval(), model2.eval(), disc.eval(), disc2.eval()
    x = torch.rand(2, 3, 64, 64) * 2 - 1
    with torch.no_grad():
        torch.testing.assert_close(model.reconstruct(x, sample=False).x_rec, model2.reconstruct(x, sample=False).x_rec)
        torch.testing.assert_close(disc(x, torch.tensor([0, 1])), disc2(x, torch.tensor([0, 1])))
