"""Building blocks shared by ``train/train_stylegan.py`` and ``train/finetune_stylegan.py``.

The training loops themselves live in those scripts; here are the pieces both need: latent
sampling with style mixing, the discriminator update (logistic loss + lazy R1) and its Adam, the
EMA of the generator, the fine-tuning source and freezing, sample grids, and the final folder's
model card + training record (uploads go through ``scenimefy.hub.publish``, like every upload).
"""

from __future__ import annotations

import json
import os
import random
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn

from scenimefy.data.pixels import to_uint8
from scenimefy.losses.stylegan2 import discriminator_logistic_loss, r1_penalty
from scenimefy.models.stylegan2 import StyleGAN2Discriminator, StyleGAN2Generator
from scenimefy.training.config import ConfigError


def sample_latents(generator: StyleGAN2Generator, batch: int, mixing_prob: float, device: torch.device) -> torch.Tensor:
    """Per-layer latents (B, n_latent, D) of fresh z; with probability ``mixing_prob`` two z are
    mixed at a random layer (style-mixing regularisation), as in StyleGAN2 training."""
    z = torch.randn(2, batch, generator.style_dim, device=device)
    if mixing_prob > 0 and random.random() < mixing_prob:
        w = generator.mapping(z.flatten(0, 1)).view(2, batch, -1)  # (2, B, D)
        return generator.mix_styles(w[0], w[1], random.randint(1, generator.n_latent - 1))
    w = generator.mapping(z[0])  # (B, D)
    return w.unsqueeze(1).expand(-1, generator.n_latent, -1)


def discriminator_step(
    discriminator: nn.Module,
    optimizer: torch.optim.Optimizer,
    real: torch.Tensor,
    fake: torch.Tensor,
    backward: Callable[[torch.Tensor], None],
    r1_gamma: float = 10.0,
    regularize: bool = False,
    reg_interval: int = 16,
    grad_scaler: torch.amp.GradScaler | None = None,
) -> dict[str, float]:
    """One D update on real vs (detached) fake images; every ``reg_interval`` steps (``regularize``)
    a second update with the lazy R1 penalty gamma/2 * ||grad D(x)||^2 * interval.

    ``grad_scaler``: the one ``backward`` scales losses with under fp16 (``accelerator.scaler``);
    R1's input gradient is taken on the same scale and unscaled (losses.stylegan2.r1_penalty).
    """
    logs = {}
    loss = discriminator_logistic_loss(discriminator(real), discriminator(fake.detach()))
    optimizer.zero_grad(set_to_none=True)
    backward(loss)
    optimizer.step()
    logs["d_loss"] = loss.item()
    if regularize and r1_gamma > 0:
        real = real.detach().requires_grad_(True)
        real_logits = discriminator(real)
        r1 = r1_penalty(real_logits, real, grad_scale=current_scale(grad_scaler))
        optimizer.zero_grad(set_to_none=True)
        # 0 * logits keeps every D output in the graph, as DDP wants.
        backward(r1_gamma / 2 * r1 * reg_interval + 0 * real_logits[0, 0])
        optimizer.step()
        logs["r1"] = r1.item()
    return logs


def current_scale(grad_scaler: torch.amp.GradScaler | None) -> float | None:
    """The scale an fp16 GradScaler applies now; None without one (fp32, bf16) or when it is off."""
    if grad_scaler is None or not grad_scaler.is_enabled():
        return None
    return float(grad_scaler.get_scale())


@torch.no_grad()
def ema_update(ema: nn.Module, model: nn.Module, decay: float) -> None:
    """ema <- decay * ema + (1 - decay) * model for the parameters being trained.

    ``lerp`` leaves a parameter bit-identical when both copies agree, and frozen parameters
    (requires_grad False) are skipped, so frozen layers stay exactly as they were.
    """
    for p_ema, p in zip(ema.parameters(), model.parameters()):
        if p.requires_grad:
            p_ema.lerp_(p.detach().to(p_ema.dtype), 1 - decay)


def set_requires_grad(module: nn.Module, flag: bool, trainable: set[int] | None = None) -> None:
    """Switch gradients on/off; with ``trainable`` (ids of parameters) only those are switched on."""
    for p in module.parameters():
        p.requires_grad_(flag and (trainable is None or id(p) in trainable))


def image_grid(images: torch.Tensor, ncols: int) -> Image.Image:
    """(N, 3, H, W) in [-1, 1] -> one RGB image, ``ncols`` per row, 2 px white gutters."""
    images = to_uint8(images).cpu()
    n, _, h, w = images.shape
    nrows = -(-n // ncols)
    grid = torch.full((3, nrows * (h + 2) - 2, ncols * (w + 2) - 2), 255, dtype=torch.uint8)
    for i in range(n):
        r, c = divmod(i, ncols)
        grid[:, r * (h + 2) : r * (h + 2) + h, c * (w + 2) : c * (w + 2) + w] = images[i]
    return Image.fromarray(np.ascontiguousarray(grid.permute(1, 2, 0).numpy()))


def adam_for_lazy_regularization(params, lr: float, reg_every: int) -> torch.optim.Adam:
    """Adam with lr and betas rescaled for a regulariser applied every ``reg_every`` steps (StyleGAN2 App. B)."""
    ratio = reg_every / (reg_every + 1)
    return torch.optim.Adam(params, lr=lr * ratio, betas=(0.0**ratio, 0.99**ratio))


def source_size(path: str) -> int | None:
    """The resolution of a fine-tuning source (folder with generator/config.json) without loading
    it; None for a rosinality .pt (read when loaded)."""
    config = Path(path) / "generator" / "config.json"
    return int(json.loads(config.read_text())["size"]) if config.is_file() else None


def load_source(path: str) -> tuple[StyleGAN2Generator, StyleGAN2Discriminator | None]:
    """G_s and (if present) D from a converted folder or a rosinality .pt."""
    from scenimefy.hub.convert_stylegan2 import load_rosinality_checkpoint, stylegan2_from_rosinality

    source = Path(path)
    if source.is_file():
        states = load_rosinality_checkpoint(source)
        discriminator = stylegan2_from_rosinality(states, "d") if "d" in states else None
        return stylegan2_from_rosinality(states, "g_ema"), discriminator
    generator = StyleGAN2Generator.from_pretrained(source / "generator")
    has_d = (source / "discriminator" / "config.json").is_file()
    return generator, StyleGAN2Discriminator.from_pretrained(source / "discriminator") if has_d else None


def freeze_all_but_last_blocks(generator: StyleGAN2Generator, trainable_blocks: int) -> set[int]:
    """Freeze G except its last ``trainable_blocks`` synthesis blocks; returns the trained params' ids."""
    blocks = generator.synthesis_blocks()
    if not 1 <= trainable_blocks <= len(blocks):
        raise ConfigError(
            f"--trainable_blocks {trainable_blocks} does not fit a {generator.size} px source "
            f"({len(blocks)} synthesis blocks): use 1 to {len(blocks)} (the paper: 3)"
        )
    generator.requires_grad_(False)
    for block in blocks[-trainable_blocks:]:
        block.requires_grad_(True)
    return {id(p) for p in generator.parameters() if p.requires_grad}


def write_stylegan_folder(
    output_dir: str | os.PathLike,
    *,
    script: str,
    title: str,
    description: str,
    config,
    steps: int,
    data: dict[str, str],
    sources: dict[str, str],
    notes: list[str],
) -> dict:
    """README.md (model card) + training_config.json (training record) beside generator/ and
    discriminator/, so ``scenimefy publish stylegan2 <output_dir>`` needs nothing else."""
    from scenimefy.hub import cards
    from scenimefy.training.config import config_to_dict

    license, provenance, uses_authors_weights = cards.resolve_license(config.hub_license, sources)
    record = cards.training_record(
        script=script,
        steps=steps,
        config=config_to_dict(config),
        data=data,
        license=license,
        provenance=provenance,
        uses_authors_weights=uses_authors_weights,
        notes=notes,
    )
    networks = [("generator", "StyleGAN2Generator"), ("discriminator", "StyleGAN2Discriminator")]
    card = cards.stylegan_card(
        networks,
        str(output_dir),
        license=license,
        title=title,
        description=description,
        record=record,
        config_file=cards.TRAINING_RECORD,
    )
    cards.write_model_folder_card(output_dir, card, record)
    return record


def push_stylegan_folder(output_dir: str | os.PathLike, repo_id: str, message: str) -> str:
    """Upload ``generator/``, ``discriminator/`` and their card through the one upload path."""
    from scenimefy.hub.publish import publish_stylegan2

    return publish_stylegan2(output_dir, repo_id, commit_message=message).url
