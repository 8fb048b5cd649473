"""Running the translator on image tensors: the one place that decides how inference executes.

``translate`` takes a (B, 3, H, W) batch in [-1, 1] with H, W multiples of 4 and returns the
translated batch in [-1, 1], float32, on the input's device.
"""

from __future__ import annotations

import torch

from .models.translator import ScenimefyTranslator


@torch.inference_mode()
def translate(model: ScenimefyTranslator, x: torch.Tensor, *, exact: bool = False) -> torch.Tensor:
    """Translate ``x``; ``exact`` runs the reference fp32 eager path."""
    param = next(model.parameters())
    y = model(x.to(device=param.device, dtype=param.dtype))
    return y.float()
