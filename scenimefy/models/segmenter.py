"""Mask2Former semantic segmentation (ADE20K, 150 classes) as per-class score maps.

Each image gets a score map S (B, 150, H, W): Mask2Former's semantic inference, softmax over each
query's classes without the null class, times the sigmoid of the query's mask logits, summed
over queries (:func:`scenimefy.losses.segmentation.semantic_scores`). S lies in [0, 1]; the
selection criteria and L_BCE that read it live in ``scenimefy.losses.segmentation``.

Like the reference (``Seg_selection/segmentation_net.py``) images are quantised to 0..255,
ImageNet-normalised and fed at their own size (padded to a multiple of 32); the mask logits are
upsampled to the padded input, scored, cropped. ``shortest_edge`` optionally resizes first (the
Hub image processor uses 384), the score map is then resized back to the image's size.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from scenimefy.data.pixels import to_uint8
from scenimefy.losses.segmentation import semantic_abundance, semantic_consistency, semantic_scores

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class SemanticSegmenter(nn.Module):
    """A Mask2Former semantic segmenter returning per-class score maps at the images' size.

    Args:
        model: a ``Mask2FormerForUniversalSegmentation``.
        image_mean / image_std: normalisation of [0, 1] pixels (the image processor's values).
        size_divisor: inputs are zero-padded (after normalisation) to a multiple of this.
        shortest_edge: resize so the shorter side has this length first; None feeds the image as
            is, like the reference selection.
    """

    def __init__(
        self,
        model: nn.Module,
        image_mean: tuple[float, ...] = IMAGENET_MEAN,
        image_std: tuple[float, ...] = IMAGENET_STD,
        size_divisor: int = 32,
        shortest_edge: int | None = None,
    ) -> None:
        super().__init__()
        self.model = model.eval()
        self.image_mean = tuple(image_mean)
        self.image_std = tuple(image_std)
        self.size_divisor = size_divisor
        self.shortest_edge = shortest_edge

    @property
    def num_classes(self) -> int:
        return len(self.model.config.id2label)

    @classmethod
    def from_pretrained(cls, folder: str | os.PathLike, *, shortest_edge: int | None = None) -> SemanticSegmenter:
        """Load a Mask2Former saved in a local folder (a Hub id: ``scenimefy.hub.load_segmenter``)."""
        from transformers import Mask2FormerForUniversalSegmentation

        folder = Path(folder)
        if not folder.is_dir():
            raise FileNotFoundError(f"Mask2Former weights: {folder} is not a folder")
        model = Mask2FormerForUniversalSegmentation.from_pretrained(folder)
        processor: dict = {}
        if (folder / "preprocessor_config.json").is_file():
            processor = json.loads((folder / "preprocessor_config.json").read_text())
        return cls(
            model,
            image_mean=tuple(processor.get("image_mean", IMAGENET_MEAN)),
            image_std=tuple(processor.get("image_std", IMAGENET_STD)),
            size_divisor=int(processor.get("size_divisor") or 32),
            shortest_edge=shortest_edge,
        )

    def preprocess(self, images: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
        """Images -> normalised, padded pixel values in the model's dtype, and the unpadded size.

        ``images``: (B, 3, H, W) uint8 in 0..255, or float in [-1, 1].
        """
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"expected images of shape (B, 3, H, W), got {tuple(images.shape)}")
        param = next(self.model.parameters())
        pixels = images.to(param.device, torch.float32)
        if images.dtype != torch.uint8:  # the reference rounds [-1, 1] to 0..255 levels; clamped like the saved PNGs
            pixels = to_uint8(pixels).float()
        if self.shortest_edge is not None:
            h, w = pixels.shape[-2:]
            scale = self.shortest_edge / min(h, w)
            size = (round(h * scale), round(w * scale))
            pixels = F.interpolate(pixels, size=size, mode="bilinear", align_corners=False, antialias=True)
        # On 0..255 pixels, as the reference normalises (pixel_mean 123.675, ...), in float32.
        mean = torch.tensor(self.image_mean, device=param.device).view(1, 3, 1, 1) * 255
        std = torch.tensor(self.image_std, device=param.device).view(1, 3, 1, 1) * 255
        pixels = (pixels - mean) / std
        h, w = pixels.shape[-2:]
        # At least two cells at the coarsest (1/32) scale: GroupNorm fails on a 1x1 map.
        pad_h = max(-h % self.size_divisor, 2 * self.size_divisor - h)
        pad_w = max(-w % self.size_divisor, 2 * self.size_divisor - w)
        pixels = F.pad(pixels, (0, pad_w, 0, pad_h))  # zeros after normalisation, as detectron2 pads
        return pixels.to(param.dtype), (h, w)

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) images (uint8, or float in [-1, 1]) -> (B, C, H, W) float32 score maps."""
        pixels, (h, w) = self.preprocess(images)
        out = self.model(pixel_values=pixels)
        scores = semantic_scores(out.class_queries_logits, out.masks_queries_logits, pixels.shape[-2:])
        scores = scores[:, :, :h, :w]
        if scores.shape[-2:] != images.shape[-2:]:
            scores = F.interpolate(scores, size=images.shape[-2:], mode="bilinear", align_corners=False)
        return scores

    def score_pairs(self, anime: torch.Tensor, real: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(L_BCE, abundance of the real image), each (B,), from one batched segmentation pass."""
        scores = self(torch.cat([anime, real]))
        anime_scores, real_scores = scores.chunk(2)
        return semantic_consistency(anime_scores, real_scores), semantic_abundance(real_scores)
