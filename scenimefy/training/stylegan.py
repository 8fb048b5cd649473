"""Building blocks shared by ``train/train_stylegan.py`` and ``train/finetune_stylegan.py``.

The training loops themselves live in those scripts; here are the pieces both need: latent
sampling with style mixing, the discriminator update (logistic loss + lazy R1), the EMA of the
generator, sample grids, trackers and the Hub upload.
"""

from __future__ import annotations

import os
import random
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn

from scenimefy.data.pixels import to_uint8
from scenimefy.losses.stylegan2 import discriminator_logistic_loss, r1_penalty
from scenimefy.models.stylegan2 import StyleGAN2Generator


def cycle(loader) -> Iterator:
    """Endless batches (a GAN counts steps, not epochs)."""
    while True:
        yield from loader


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
) -> dict[str, float]:
    """One D update on real vs (detached) fake images; every ``reg_interval`` steps (``regularize``)
    a second update with the lazy R1 penalty gamma/2 * ||grad D(x)||^2 * interval."""
    logs = {}
    loss = discriminator_logistic_loss(discriminator(real), discriminator(fake.detach()))
    optimizer.zero_grad(set_to_none=True)
    backward(loss)
    optimizer.step()
    logs["d_loss"] = loss.item()
    if regularize and r1_gamma > 0:
        real = real.detach().requires_grad_(True)
        real_logits = discriminator(real)
        r1 = r1_penalty(real_logits, real)
        optimizer.zero_grad(set_to_none=True)
        # 0 * logits keeps every D output in the graph, as DDP wants.
        backward(r1_gamma / 2 * r1 * reg_interval + 0 * real_logits[0, 0])
        optimizer.step()
        logs["r1"] = r1.item()
    return logs


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


def make_trackers(report_to: str, logging_dir: str | os.PathLike, project: str) -> list:
    """accelerate ``log_with`` from a comma list: "jsonl" (always available), installed tracker
    names ("tensorboard", "wandb", ...) or "none"."""
    from scenimefy.training.tracking import JSONLTracker

    trackers = []
    for name in (n.strip() for n in report_to.split(",")):
        if name and name != "none":
            trackers.append(JSONLTracker(project, logging_dir) if name == "jsonl" else name)
    return trackers


def push_folder_to_hub(output_dir: str | os.PathLike, repo_id: str, message: str) -> str:
    """Create (if needed) model repo ``repo_id`` and upload ``generator/``, ``discriminator/`` and
    ``README.md`` of ``output_dir`` (load with ``from_pretrained(repo_id, subfolder="generator")``).
    The token comes from the local login or HF_TOKEN. Returns the repo id."""
    from huggingface_hub import create_repo, upload_folder

    repo_id = create_repo(repo_id, exist_ok=True, repo_type="model").repo_id
    upload_folder(
        repo_id=repo_id,
        folder_path=str(Path(output_dir)),
        allow_patterns=["generator/*", "discriminator/*", "README.md"],
        commit_message=message,
    )
    return repo_id
