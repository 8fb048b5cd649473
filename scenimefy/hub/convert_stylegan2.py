"""Convert rosinality-layout StyleGAN2 checkpoints (the authors' lhq-220000.pt / shinkai-221000.pt).

Those files are ``{'g', 'd', 'g_ema', 'g_optim', 'd_optim', 'args', ...}`` where ``args`` is a
pickled argparse.Namespace. They are read with ``weights_only=True`` and exactly that one class
allow-listed; anything else that is not a tensor or plain container is still refused. The
architecture is inferred from the tensor shapes; the blur-kernel buffers the layout stores are
checked against the inferred config and dropped (our modules rebuild them from the config).
"""

from __future__ import annotations

import argparse
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from scenimefy.hub.convert import CheckpointError, safe_torch_load
from scenimefy.models.stylegan2 import StyleGAN2Discriminator, StyleGAN2Generator, channel_table

ROSINALITY_MODEL_KEYS = ("g_ema", "g", "d")


def load_rosinality_checkpoint(path: str | os.PathLike) -> dict[str, dict[str, torch.Tensor]]:
    """Read a rosinality StyleGAN2 ``.pt`` safely -> ``{'g_ema'|'g'|'d': state dict}`` (those present).

    A bare generator state dict is accepted too and returned as ``{'g_ema': state}``.
    """
    with torch.serialization.safe_globals([argparse.Namespace]):
        checkpoint = safe_torch_load(path)
    if "style.1.weight" in checkpoint or "module.style.1.weight" in checkpoint:
        return {"g_ema": checkpoint}
    found = {k: checkpoint[k] for k in ROSINALITY_MODEL_KEYS if isinstance(checkpoint.get(k), dict)}
    if not found:
        raise CheckpointError(
            f"{path} holds none of {list(ROSINALITY_MODEL_KEYS)} (keys: {sorted(map(str, checkpoint))[:10]}): "
            "not a rosinality StyleGAN2 checkpoint"
        )
    return found


def _strip_module(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k[len("module.") :] if k.startswith("module.") else k: v for k, v in state.items()}


def _count(state: Mapping[str, torch.Tensor], pattern: str) -> int:
    return sum(1 for k in state if re.fullmatch(pattern, k))


def _infer_channels(channels: dict[int, int], size: int) -> tuple[int, int | None]:
    """(channel_multiplier, channel_max) whose capped reference table gives ``channels``."""
    top = max(channels.values())
    for multiplier in (2, 1, 4, 8, 16):
        for cap in (None, top):
            if channel_table(size, multiplier, cap) == channels:
                return multiplier, cap
    raise CheckpointError(f"channels per resolution {channels} match no StyleGAN2 channel table (multiplier, cap)")


def _infer_blur_kernel(state: Mapping[str, torch.Tensor], key: str, scale: float) -> list[float]:
    if key not in state:
        return [1, 3, 3, 1]
    kernel = state[key].float() / scale
    row = kernel.sum(dim=1)  # a normalised outer product k k^T / sum(k)^2 has rows summing to k / sum(k)
    if row.numel() == 4 and torch.allclose(row, torch.tensor([1.0, 3.0, 3.0, 1.0]) / 8, atol=1e-6):
        return [1, 3, 3, 1]
    return row.tolist()


def _load_checked(model: torch.nn.Module, state: dict[str, torch.Tensor], what: str) -> None:
    buffers = dict(model.named_buffers())
    weights = {}
    for key, value in state.items():
        if key.endswith(".kernel"):  # blur filters: must be the ones the config rebuilds
            if (
                key not in buffers
                or buffers[key].shape != value.shape
                or not torch.allclose(buffers[key], value.float())
            ):
                raise CheckpointError(f"{what}: blur kernel {key} does not match the inferred config")
        else:
            weights[key] = value
    try:
        model.load_state_dict(weights, strict=True)
    except RuntimeError as err:
        raise CheckpointError(f"{what}: weights do not fit the inferred architecture: {err}") from None


def generator_from_rosinality(state: Mapping[str, torch.Tensor], **overrides: Any) -> StyleGAN2Generator:
    """A :class:`StyleGAN2Generator` from a rosinality ``g``/``g_ema`` state dict (config from shapes).

    ``overrides`` set what shapes cannot tell (``lr_mlp``, default 0.01 as in the reference).
    """
    state = _strip_module(state)
    if "style.1.weight" not in state or "input.input" not in state:
        raise CheckpointError("not a StyleGAN2 generator state dict (no style.1.weight / input.input)")
    n_rgb = _count(state, r"to_rgbs\.\d+\.conv\.weight")
    size = 2 ** (n_rgb + 2)
    channels = {4: state["input.input"].shape[1]}
    for i in range(n_rgb):
        channels[2 ** (i + 3)] = state[f"convs.{2 * i}.conv.weight"].shape[1]
    multiplier, cap = _infer_channels(channels, size)
    config = {
        "size": size,
        "style_dim": state["style.1.weight"].shape[1],
        "n_mlp": _count(state, r"style\.\d+\.weight"),
        "channel_multiplier": multiplier,
        "channel_max": cap,
        "blur_kernel": _infer_blur_kernel(state, "convs.0.conv.blur.kernel", 4.0),
    }
    config.update(overrides)
    model = StyleGAN2Generator(**config)
    _load_checked(model, state, "generator")
    return model.eval()


def discriminator_from_rosinality(state: Mapping[str, torch.Tensor], **overrides: Any) -> StyleGAN2Discriminator:
    """A :class:`StyleGAN2Discriminator` from a rosinality ``d`` state dict (config from shapes)."""
    state = _strip_module(state)
    if "convs.0.0.weight" not in state or "final_linear.1.weight" not in state:
        raise CheckpointError("not a StyleGAN2 discriminator state dict (no convs.0.0.weight / final_linear)")
    n_blocks = _count(state, r"convs\.\d+\.conv1\.0\.weight")
    log_size = n_blocks + 2
    channels = {2**log_size: state["convs.0.0.weight"].shape[0]}
    for j in range(1, n_blocks + 1):
        channels[2 ** (log_size - j)] = state[f"convs.{j}.conv2.1.weight"].shape[0]
    multiplier, cap = _infer_channels(channels, 2**log_size)
    config = {
        "size": 2**log_size,
        "channel_multiplier": multiplier,
        "channel_max": cap,
        "blur_kernel": _infer_blur_kernel(state, "convs.1.conv2.0.kernel", 1.0),
        "stddev_feat": state["final_conv.0.weight"].shape[1] - channels[4],
    }
    config.update(overrides)
    model = StyleGAN2Discriminator(**config)
    _load_checked(model, state, "discriminator")
    return model.eval()


def stylegan2_from_rosinality(
    source: str | os.PathLike | Mapping[str, Any], key: str = "g_ema", **overrides: Any
) -> StyleGAN2Generator | StyleGAN2Discriminator:
    """One network of a rosinality checkpoint: ``key`` 'g_ema' / 'g' -> generator, 'd' -> discriminator.

    ``source`` is a ``.pt`` path or what :func:`load_rosinality_checkpoint` returned.
    """
    if key not in ROSINALITY_MODEL_KEYS:
        raise ValueError(f"key must be one of {ROSINALITY_MODEL_KEYS}, got {key!r}")
    states = load_rosinality_checkpoint(source) if isinstance(source, (str, os.PathLike)) else source
    if key not in states:
        raise CheckpointError(f"checkpoint has no {key!r} network (it has {sorted(states)})")
    if key == "d":
        return discriminator_from_rosinality(states[key], **overrides)
    return generator_from_rosinality(states[key], **overrides)


def convert_stylegan2_checkpoint(
    src: str | os.PathLike, out_dir: str | os.PathLike, generator_key: str = "g_ema"
) -> dict[str, Path]:
    """``lhq-220000.pt`` -> ``out_dir/generator`` (``g_ema``) and ``out_dir/discriminator`` (if ``d`` is there).

    Each folder holds ``config.json`` + safetensors, loadable with ``from_pretrained``.
    """
    states = load_rosinality_checkpoint(src)
    out_dir = Path(out_dir)
    written = {"generator": out_dir / "generator"}
    stylegan2_from_rosinality(states, generator_key).save_pretrained(written["generator"])
    if "d" in states:
        written["discriminator"] = out_dir / "discriminator"
        stylegan2_from_rosinality(states, "d").save_pretrained(written["discriminator"])
    return written
