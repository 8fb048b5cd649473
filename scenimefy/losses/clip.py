"""CLIP priors of stage-1 fine-tuning (paper 3.1): D_CLIP of Eq. 1 and the CLIP-embedded PatchNCE of Eq. 2.

A frozen open_clip image encoder embeds whole images (for the cosine distance between
x_p = G_s(w) and y_p = G_t(w)) and random crops of them (for the patch loss, which uses CLIP in
place of CUT's trainable MLP head). Images arrive as generator outputs in [-1, 1]; the encoder
resizes them to its input size and applies CLIP's normalisation, differentiably, so gradients
reach G_t.

Weights: ``pretrained`` is an open_clip tag (``"openai"``, ``"laion2b_s34b_b79k"``, ...) fetched
through the Hugging Face cache, or ``None`` for a randomly initialised encoder (offline tests).
``model_name`` is an open_clip architecture name or the path of an open_clip model-config JSON
file (a tiny architecture for tests).
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from scenimefy.losses.contrastive import patch_nce_loss

# CLIP's preprocessing constants (open_clip OPENAI_DATASET_MEAN / _STD), used when a model has none.
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


class PriorWeightsError(RuntimeError):
    """Pretrained weights of a loss prior (CLIP, LPIPS) are needed but cannot be had."""


class CLIPImageEncoder(nn.Module):
    """Frozen CLIP image tower: (B, 3, H, W) in [-1, 1] -> (B, D) unit-norm embeddings."""

    def __init__(
        self,
        visual: nn.Module,
        image_size: int,
        mean: tuple[float, ...] = CLIP_MEAN,
        std: tuple[float, ...] = CLIP_STD,
    ) -> None:
        super().__init__()
        self.visual = visual.requires_grad_(False).eval()
        self.image_size = image_size
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)

    def train(self, mode: bool = True) -> CLIPImageEncoder:
        return super().train(False)  # frozen prior: dropout and friends stay off

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if images.shape[-2:] != (self.image_size, self.image_size):
            images = F.interpolate(
                images, size=(self.image_size,) * 2, mode="bicubic", align_corners=False, antialias=True
            )  # (B, 3, S, S)
        pixels = ((images + 1) / 2 - self.mean.to(images.dtype)) / self.std.to(images.dtype)
        return F.normalize(self.visual(pixels), dim=-1)  # (B, D)


def _model_name(model_name: str) -> str:
    """Register a model-config JSON file with open_clip and return its name (the file stem)."""
    import open_clip

    if model_name.endswith(".json"):
        path = Path(model_name)
        if not path.is_file():
            raise FileNotFoundError(f"open_clip model config not found: {path}")
        open_clip.add_model_config(path)
        return path.stem
    if ":" not in model_name and model_name not in open_clip.list_models():  # hf-hub:/local-dir: pass through
        raise ValueError(f"unknown open_clip model {model_name!r}; see open_clip.list_models() or pass a config .json")
    return model_name


def load_clip_image_encoder(
    model_name: str = "ViT-B-32", pretrained: str | None = "openai", cache_dir: str | os.PathLike | None = None
) -> CLIPImageEncoder:
    """A frozen :class:`CLIPImageEncoder` from open_clip; ``pretrained=None`` gives random weights.

    Raises :class:`PriorWeightsError` when the weights are neither cached nor downloadable
    (with ``HF_HUB_OFFLINE=1`` this fails at once instead of retrying the network).
    """
    import open_clip

    name = _model_name(model_name)
    try:
        model = open_clip.create_model(
            name,
            pretrained=pretrained,
            cache_dir=str(cache_dir) if cache_dir else None,
            require_pretrained=bool(pretrained),
        )
    except RuntimeError as err:
        offline = os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes")
        where = " offline (HF_HUB_OFFLINE is set)" if offline else ""
        raise PriorWeightsError(
            f"CLIP weights {name}/{pretrained} are not available{where}: "
            f"{str(err).splitlines()[0]} Download them once online (open_clip caches them in the Hugging Face "
            f"cache) or use randomly initialised priors (random_priors) for a smoke run."
        ) from None
    config = open_clip.get_model_preprocess_cfg(model)
    size = config.get("size", model.visual.image_size)
    size = size[0] if isinstance(size, (tuple, list)) else size
    return CLIPImageEncoder(
        model.visual, int(size), tuple(config.get("mean", CLIP_MEAN)), tuple(config.get("std", CLIP_STD))
    )


def clip_cosine_distance(encoder: CLIPImageEncoder, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Mean over the batch of 1 - cos(E(x), E(y)): 0 for identical images, up to 2."""
    # Eq. 1: D_CLIP(x_p, y_p), the cosine distance in CLIP space
    return (1 - (encoder(x) * encoder(y)).sum(dim=-1)).mean()


def random_patch_boxes(
    batch: int, image_size: int, patch_size: int, num_patches: int, generator: torch.Generator | None = None
) -> torch.Tensor:
    """(batch, num_patches, 2) random (top, left) corners of ``patch_size`` squares inside the image."""
    if not 0 < patch_size <= image_size:
        raise ValueError(f"patch_size must lie in [1, {image_size}], got {patch_size}")
    return torch.randint(0, image_size - patch_size + 1, (batch, num_patches, 2), generator=generator)


def crop_patches(images: torch.Tensor, boxes: torch.Tensor, patch_size: int) -> torch.Tensor:
    """Crop (B, 3, H, W) at ``boxes`` (B, N, 2) -> (B * N, 3, p, p), image-major."""
    crops = [
        images[b, :, top : top + patch_size, left : left + patch_size]
        for b in range(images.shape[0])
        for top, left in boxes[b].tolist()
    ]
    return torch.stack(crops)


def clip_patch_nce(
    encoder: CLIPImageEncoder,
    source: torch.Tensor,
    target: torch.Tensor,
    boxes: torch.Tensor,
    patch_size: int,
    temperature: float = 0.07,
) -> torch.Tensor:
    """L_patch: PatchNCE between CLIP embeddings of crops of ``target`` (queries, y_p) and of
    ``source`` (keys, x_p) at the same ``boxes`` (positives); the other crops of the same source
    image are the negatives (Eq. 2, via :func:`scenimefy.losses.contrastive.patch_nce_loss`)."""
    batch, num_patches = boxes.shape[:2]
    queries = encoder(crop_patches(target, boxes, patch_size)).view(batch, num_patches, -1)  # (B, N, D)
    keys = encoder(crop_patches(source, boxes, patch_size)).view(batch, num_patches, -1)  # (B, N, D)
    return patch_nce_loss(queries, keys, temperature)
