"""The one conversion between 8-bit pixels and the networks' [-1, 1] range.

The arithmetic is the reference's ``ToTensor`` + ``Normalize(0.5, 0.5)``, ``(p / 255 - 0.5) / 0.5``,
so the authors' demo is reproduced bit for bit. Layout (HWC / CHW) is the caller's business.
"""

from __future__ import annotations

import torch


def to_model_range(pixels: torch.Tensor) -> torch.Tensor:
    """uint8 levels 0..255 -> float32 in [-1, 1]."""
    return (pixels.float() / 255.0 - 0.5) / 0.5


def to_uint8(x: torch.Tensor, *, truncate: bool = False) -> torch.Tensor:
    """[-1, 1] -> uint8 levels (clamped), rounded to nearest, or truncated as the authors' demo does."""
    y = (x.detach().float().clamp(-1, 1) + 1) / 2 * 255
    return (y if truncate else y.round()).to(torch.uint8)
