"""StyleGAN2: parity with the reference (rosinality layout), ops, configs, converter and safe loading."""

import argparse

import numpy as np
import pytest
import torch

from scenimefy.hub.convert import CheckpointError
from scenimefy.hub.convert_stylegan2 import (
    convert_stylegan2_checkpoint,
    discriminator_from_rosinality,
    generator_from_rosinality,
    load_rosinality_checkpoint,
    stylegan2_from_rosinality,
)
from scenimefy.models import StyleGAN2Discriminator, StyleGAN2Generator
from scenimefy.models.ops import make_kernel, upfirdn2d, upfirdn2d_reference, use_reference_upfirdn2d
from scenimefy.models.stylegan2 import channel_table
from tests.support.paths import PARITY

TINY = {"size": 16, "style_dim": 8, "n_mlp": 2, "channel_max": 8}


@pytest.fixture(scope="module")
def parity():
    states = load_rosinality_checkpoint(PARITY / "stylegan2.pt")
    vectors = {k: torch.from_numpy(v) for k, v in np.load(PARITY / "stylegan2.npz").items()}
    return stylegan2_from_rosinality(states, "g_ema"), stylegan2_from_rosinality(states, "d"), vectors


def test_config_is_inferred_from_the_parity_checkpoint(parity):
    generator, discriminator, ref = parity
    assert (generator.size, generator.style_dim, generator.config.n_mlp) == (64, 128, 4)
    assert generator.config.channel_max == 64 and discriminator.config.channel_max == 64
    assert discriminator.size == 64 and int(ref["size"]) == 64


@torch.no_grad()
def test_generator_and_discriminator_match_the_reference(parity):
    generator, discriminator, ref = parity
    w = generator.mapping(ref["z"])
    torch.testing.assert_close(w, ref["w"], atol=1e-4, rtol=0)
    torch.testing.assert_close(generator(w, noise_mode="const"), ref["image"], atol=1e-4, rtol=0)
    truncated = generator.truncate(w, ref["mean_w"], 0.7)
    torch.testing.assert_close(generator(truncated), ref["image_trunc07"], atol=1e-4, rtol=0)
    mixed = generator.mix_styles(w[:1], w[1:], inject_index=3)
    torch.testing.assert_close(generator(mixed), ref["image_mix_inject3"], atol=1e-4, rtol=0)
    torch.testing.assert_close(discriminator(ref["image"]), ref["d_logits"], atol=1e-4, rtol=0)


def test_reference_ops_give_the_same_network_output(parity):
    generator, discriminator, ref = parity
    with torch.no_grad(), use_reference_upfirdn2d():
        torch.testing.assert_close(generator(ref["w"]), ref["image"], atol=1e-4, rtol=0)
        torch.testing.assert_close(discriminator(ref["image"]), ref["d_logits"], atol=1e-4, rtol=0)


@pytest.mark.parametrize(
    "up,down,pad", [(1, 1, (1, 1)), (1, 2, (2, 2)), (2, 1, (2, 1)), (2, 2, (0, 3)), (3, 1, (-1, 2, 1, 0))]
)
def test_upfirdn2d_matches_its_definition_with_gradients(up, down, pad):
    torch.manual_seed(0)
    kernel = torch.randn(4, 3)  # asymmetric and non-square: catches a missing flip or swapped axes
    x = torch.randn(2, 3, 9, 7, dtype=torch.float64, requires_grad=True)
    fast = upfirdn2d(x, kernel.double(), up, down, pad)
    slow = upfirdn2d_reference(x, kernel.double(), up, down, pad)
    torch.testing.assert_close(fast, slow)
    grad = torch.randn_like(fast)
    (g_fast,) = torch.autograd.grad(fast, x, grad)
    (g_slow,) = torch.autograd.grad(slow, x, grad)
    torch.testing.assert_close(g_fast, g_slow)


def test_channel_table_is_the_reference_table():
    assert list(channel_table(256, 2).values()) == [512, 512, 512, 512, 512, 256, 128]
    assert channel_table(1024, 1)[1024] == 16 and channel_table(64, 2, channel_max=64) == dict.fromkeys(
        (4, 8, 16, 32, 64), 64
    )
    with pytest.raises(ValueError, match="power of two"):
        channel_table(48)


@pytest.mark.parametrize(
    "config",
    [
        TINY,
        {
            "size": 8,
            "style_dim": 4,
            "n_mlp": 1,
            "channel_multiplier": 1,
            "channel_max": 4,
            "lr_mlp": 0.1,
            "blur_kernel": [1, 2, 1],
        },
    ],
)
def test_save_pretrained_round_trip(tmp_path, config):
    torch.manual_seed(0)
    generator = StyleGAN2Generator(**config).eval()
    discriminator = StyleGAN2Discriminator(
        size=config["size"], channel_max=config["channel_max"], blur_kernel=config.get("blur_kernel", (1, 3, 3, 1))
    ).eval()
    generator.save_pretrained(tmp_path / "g")
    discriminator.save_pretrained(tmp_path / "d")
    generator2 = StyleGAN2Generator.from_pretrained(tmp_path / "g").eval()
    discriminator2 = StyleGAN2Discriminator.from_pretrained(tmp_path / "d").eval()
    assert generator2.config.blur_kernel == list(config.get("blur_kernel", [1, 3, 3, 1]))
    z = torch.randn(3, config["style_dim"])
    with torch.no_grad():
        image = generator(generator.mapping(z))
        torch.testing.assert_close(generator2(generator2.mapping(z)), image, atol=0, rtol=0)  # noise buffers saved too
        torch.testing.assert_close(discriminator2(image), discriminator(image), atol=0, rtol=0)


def test_rosinality_state_dict_config_inference_round_trips():
    torch.manual_seed(0)
    # The second config's multiplier shows only above the cap: 128 px has 128 channels at cm 1, 256 at cm 2.
    for config in (TINY, {"size": 128, "style_dim": 8, "n_mlp": 3, "channel_multiplier": 1, "channel_max": 256}):
        generator = StyleGAN2Generator(**config)
        rebuilt = generator_from_rosinality({f"module.{k}": v for k, v in generator.state_dict().items()})
        assert {k: rebuilt.config[k] for k in config} == config
        discriminator = StyleGAN2Discriminator(
            size=config["size"], channel_multiplier=rebuilt.config.channel_multiplier, channel_max=config["channel_max"]
        )
        rebuilt_d = discriminator_from_rosinality(discriminator.state_dict())
        assert (rebuilt_d.config.size, rebuilt_d.config.channel_multiplier) == (
            config["size"],
            rebuilt.config.channel_multiplier,
        )
    with pytest.raises(CheckpointError, match="not a StyleGAN2 generator"):
        generator_from_rosinality({"foo": torch.zeros(1)})


def test_latent_helpers_and_noise_modes():
    torch.manual_seed(0)
    generator = StyleGAN2Generator(**TINY).eval()
    with torch.no_grad():
        for name, param in generator.named_parameters():
            if name.endswith("noise.weight"):
                param.fill_(1.0)  # zero at init: noise would have no effect
    assert (generator.n_latent, generator.num_layers) == (6, 5)
    w = generator.mapping(torch.randn(2, 8))
    mean = generator.mean_latent(64, generator=torch.Generator().manual_seed(0))
    assert mean.shape == (1, 8)
    torch.testing.assert_close(mean, generator.mean_latent(64, generator=torch.Generator().manual_seed(0)))
    torch.testing.assert_close(generator.truncate(w, mean, 1.0), w)
    torch.testing.assert_close(generator.truncate(w, mean, 0.0), mean.expand_as(w))
    per_layer = generator.mix_styles(w, w.flip(0), inject_index=2)
    assert per_layer.shape == (2, 6, 8)
    torch.testing.assert_close(per_layer[:, :2], w[:, None].expand(-1, 2, -1))
    torch.testing.assert_close(per_layer[:, 2:], w.flip(0)[:, None].expand(-1, 4, -1))
    with torch.no_grad():
        image = generator(w)
        assert image.shape == (2, 3, 16, 16)
        torch.testing.assert_close(generator(generator.mix_styles(w, w, 3)), image)  # (B, D) == repeated per-layer w
        assert not torch.equal(generator(w, noise_mode="random"), generator(w, noise_mode="random"))
        noise = generator.make_noise(2)
        torch.testing.assert_close(generator(w, noise=noise), generator(w, noise=noise))
        assert generator(w, noise_mode="none").isfinite().all()
        assert generator.double()(w.double()).dtype == torch.float64  # dtype comes from the caller
    with pytest.raises(ValueError, match="noise_mode"):
        generator(w.double(), noise_mode="fixed")
    with pytest.raises(ValueError, match="w must be"):
        generator(torch.zeros(2, 5, 8, dtype=torch.float64))


def test_discriminator_accepts_batches_the_stddev_group_does_not_divide():
    discriminator = StyleGAN2Discriminator(size=16, channel_max=8)
    assert discriminator(torch.randn(3, 3, 16, 16)).shape == (3, 1)
    with pytest.raises(ValueError, match="image must be"):
        discriminator(torch.randn(1, 3, 8, 8))


def test_blur_kernels_are_checked_against_the_config():
    state = StyleGAN2Generator(**TINY).state_dict()
    state["convs.0.conv.blur.kernel"] = make_kernel([1, 3, 3, 1]) * 4
    state["to_rgbs.0.upsample.kernel"] = make_kernel([1, 3, 3, 1])  # should be x4: wrong
    with pytest.raises(CheckpointError, match="to_rgbs.0.upsample.kernel"):
        generator_from_rosinality(state)


def test_checkpoint_with_argparse_namespace_converts_with_weights_only(tmp_path, monkeypatch):
    source = torch.load(PARITY / "stylegan2.pt", weights_only=True)
    checkpoint = {
        "g": source["g_ema"],
        "g_ema": source["g_ema"],
        "d": source["d"],
        "g_optim": {"state": {}, "param_groups": [{"lr": 0.002, "betas": (0.0, 0.99), "params": [0]}]},
        "args": argparse.Namespace(size=64, latent=128, n_mlp=4, channel_multiplier=2, ckpt=None, path="lhq"),
    }
    torch.save(checkpoint, tmp_path / "lhq-220000.pt")
    calls = []
    real_load = torch.load
    monkeypatch.setattr(torch, "load", lambda *a, **k: calls.append(k.get("weights_only")) or real_load(*a, **k))
    written = convert_stylegan2_checkpoint(tmp_path / "lhq-220000.pt", tmp_path / "out")
    assert calls and all(flag is True for flag in calls)
    assert sorted(written) == ["discriminator", "generator"]
    generator = StyleGAN2Generator.from_pretrained(written["generator"])
    discriminator = StyleGAN2Discriminator.from_pretrained(written["discriminator"])
    ref = np.load(PARITY / "stylegan2.npz")
    with torch.no_grad():
        image = generator(generator.mapping(torch.from_numpy(ref["z"])))
        np.testing.assert_allclose(image.numpy(), ref["image"], atol=1e-4)
        np.testing.assert_allclose(discriminator(image).numpy(), ref["d_logits"], atol=1e-4)


class _Exploit:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))  # would create the marker file when unpickled


def test_checkpoint_with_other_pickled_objects_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    torch.save({"g_ema": {"style.1.weight": torch.zeros(1)}, "args": _Exploit(marker)}, tmp_path / "evil.pt")
    with pytest.raises(CheckpointError, match="refused"):
        load_rosinality_checkpoint(tmp_path / "evil.pt")
    assert not marker.exists()
    with pytest.raises(CheckpointError, match="not found"):
        load_rosinality_checkpoint(tmp_path / "missing.pt")
    torch.save({"model": {}}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="not a rosinality"):
        convert_stylegan2_checkpoint(tmp_path / "other.pt", tmp_path / "out")
