"""Stage 1 under mixed precision, on the CPU's autocast (fp16 and bf16): the R1 and path-length
regularisers and the modulated conv against fp32.

Tolerances (relative, measured here on a 32 px StyleGAN2 with seeded weights): R1 in fp16 is within
4e-4 of fp32 (asserted: 2e-3), in bf16 within 8e-3 (asserted: 3e-2); the mean path length in fp16
within 2e-3 (asserted: 5e-3), in bf16 within 7e-3 (asserted: 3e-2).
"""

import pytest
import torch
import torch.nn.functional as F

from scenimefy.losses.stylegan2 import path_length_penalty, r1_penalty
from scenimefy.models.stylegan2 import ModulatedConv2d, StyleGAN2Discriminator, StyleGAN2Generator, runs_in_fp16
from scenimefy.training.stylegan import current_scale

SIZE = 32


@pytest.fixture(scope="module")
def nets():
    torch.manual_seed(0)
    d = StyleGAN2Discriminator(size=SIZE, channel_multiplier=1, channel_max=32)
    g = StyleGAN2Generator(size=SIZE, channel_multiplier=1, channel_max=32, style_dim=32, n_mlp=2)
    real = torch.rand(4, 3, SIZE, SIZE) * 2 - 1
    w = g.mapping(torch.randn(4, 32)).detach()
    return d, g, real, w


def r1(d, real, dtype=None, scale=None):
    x = real.clone().requires_grad_(True)
    with torch.autocast("cpu", dtype=dtype or torch.bfloat16, enabled=dtype is not None):
        return r1_penalty(d(x).float(), x, grad_scale=scale)


def path_length(g, w, dtype=None, scale=None):
    latents = w.unsqueeze(1).expand(-1, g.n_latent, -1).clone().requires_grad_(True)
    torch.manual_seed(5)  # the same image-space noise in every run
    with torch.autocast("cpu", dtype=dtype or torch.bfloat16, enabled=dtype is not None):
        penalty, _, length = path_length_penalty(g(latents, noise_mode="const"), latents, 0.0, grad_scale=scale)
    assert penalty.dtype == torch.float32 and torch.isfinite(penalty)
    return length.item()


@pytest.mark.parametrize(
    ("dtype", "scale", "r1_tol", "pl_tol"),
    [(torch.float16, None, 2e-3, 5e-3), (torch.float16, 2.0**8, 2e-3, 5e-3), (torch.bfloat16, None, 3e-2, 3e-2)],
)
def test_regularisers_under_autocast_match_fp32(nets, dtype, scale, r1_tol, pl_tol):
    d, g, real, w = nets
    ref = r1(d, real).item()
    got = r1(d, real, dtype, scale)
    assert got.dtype == torch.float32
    assert abs(got.item() / ref - 1) < r1_tol
    ref_pl = path_length(g, w)
    assert abs(path_length(g, w, dtype, scale) / ref_pl - 1) < pl_tol


def test_an_overflowing_scale_gives_a_non_finite_penalty_that_the_grad_scaler_skips(nets):
    """GradScaler's first scale (2^16) overflows fp16 in D's backward here: the penalty is not finite,
    so its gradients are not either, and the scaler skips the step and halves its scale (the AMP
    recipe: the regulariser shares the loss's scale and its overflow handling)."""
    d, _, real, _ = nets
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**16)
    optimizer = torch.optim.SGD(d.parameters(), lr=0.1)
    before = [p.detach().clone() for p in d.parameters()]
    penalty = r1(d, real, torch.float16, current_scale(scaler))
    assert not torch.isfinite(penalty)
    optimizer.zero_grad()
    scaler.scale(penalty).backward()
    scaler.step(optimizer)
    scaler.update()
    assert scaler.get_scale() == 2.0**15
    assert all(torch.equal(a, b) for a, b in zip(before, d.parameters()))
    assert current_scale(None) is None and current_scale(torch.amp.GradScaler("cpu", enabled=False)) is None


def test_modulated_conv_pre_normalises_under_fp16_and_matches_fp32():
    torch.manual_seed(1)
    conv = ModulatedConv2d(16, 8, 3, style_dim=16)
    with torch.no_grad():
        conv.modulation.bias.fill_(300.0)  # styles ~300 and inputs ~300: x * s ~ 1e5 > fp16's 65504
    x = torch.randn(2, 16, 8, 8) * 300
    style = torch.randn(2, 16)
    ref = conv(x, style)
    # the conv's input as the plain formulation would hand it to an fp16 conv overflows
    styles = conv.modulation(style)
    assert torch.isinf((x * styles.view(2, -1, 1, 1)).half()).any()
    with torch.autocast("cpu", dtype=torch.float16):
        assert runs_in_fp16(x)
        got = conv(x, style)
    assert torch.isfinite(got).all()
    torch.testing.assert_close(got.float(), ref, rtol=1e-2, atol=1e-2 * ref.abs().max().item())
    # in fp32 the pre-normalised arithmetic is the same function (it only runs under fp16)
    with torch.no_grad():
        got_half = conv.half()(x.half(), style.half()).float()
    conv.float()
    assert torch.isfinite(got_half).all()
    assert not runs_in_fp16(x)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert not runs_in_fp16(x)  # bf16 has fp32's range: no pre-normalisation


def test_generator_under_fp16_autocast_matches_fp32(nets):
    _, g, _, w = nets
    latents = w.unsqueeze(1).expand(-1, g.n_latent, -1)
    with torch.no_grad():
        ref = g(latents, noise_mode="const")
        with torch.autocast("cpu", dtype=torch.float16):
            got = g(latents, noise_mode="const").float()
    assert torch.isfinite(got).all()
    assert (got - ref).abs().max() < 2e-2 * ref.abs().max()
    assert F.mse_loss(got, ref) < 1e-5 * ref.square().mean() + 1e-7
