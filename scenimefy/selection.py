"""Segmentation-guided selection of pseudo pairs (paper 3.2) and the L_BCE metric (Tables 3, 4).

A Mask2Former (ADE20K, 150 classes) gives each image a per-class score map S (B, 150, H, W):
Mask2Former's semantic inference, softmax over each query's classes without the null class,
times the sigmoid of the query's mask logits, summed over queries. S lies in [0, 1].

  L_BCE(anime, real) = CrossEntropy(S_anime as logits, argmax_c S_real), mean over pixels
  abundance(real)    = number of distinct argmax classes of S_real

A pseudo pair is kept iff L_BCE < 5.0 and abundance > 1. Because S is in [0, 1] the
"logits" differ by at most 1, so L_BCE sits just under ln 150 ~ 5.01 (paper: 4.2-4.8).

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

from .hub import WeightsUnavailableError, download_hub_file, download_hub_folder

DEFAULT_SEGMENTER = "facebook/mask2former-swin-base-IN21k-ade-semantic"
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
#: Paper 3.2: drop pairs whose L_BCE is at least this ...
MAX_LBCE = 5.0
#: ... or whose real image shows at most this many classes.
MIN_CLASSES = 1


def semantic_scores(class_logits: torch.Tensor, mask_logits: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Mask2Former semantic inference: (B, Q, C+1) class and (B, Q, h, w) mask logits -> (B, C, *size).

    Computed in float32 whatever the model's dtype: the selection compares values near ln C.
    """
    masks = F.interpolate(mask_logits.float(), size=size, mode="bilinear", align_corners=False)
    classes = class_logits.float().softmax(dim=-1)[..., :-1]  # drop the null ("no object") class
    return torch.einsum("bqc,bqhw->bchw", classes, masks.sigmoid())


def semantic_consistency(anime_scores: torch.Tensor, real_scores: torch.Tensor) -> torch.Tensor:
    """L_BCE per pair (B,): cross-entropy of the anime score map against the real image's labels."""
    if anime_scores.shape != real_scores.shape:
        raise ValueError(f"score maps differ in shape: {tuple(anime_scores.shape)} vs {tuple(real_scores.shape)}")
    labels = real_scores.argmax(dim=1)  # (B, H, W)
    return F.cross_entropy(anime_scores.float(), labels, reduction="none").mean(dim=(1, 2))


def semantic_abundance(scores: torch.Tensor) -> torch.Tensor:
    """Number of distinct argmax classes per image (B,), int64."""
    labels = scores.argmax(dim=1).flatten(1)  # (B, H*W)
    present = torch.zeros(scores.shape[:2], dtype=torch.bool, device=scores.device)
    return present.scatter_(1, labels, True).sum(dim=1)


def keep_pairs(
    lbce: torch.Tensor, classes: torch.Tensor, max_lbce: float = MAX_LBCE, min_classes: int = MIN_CLASSES
) -> torch.Tensor:
    """The paper's two criteria (B,) bool: semantic consistency and semantic abundance."""
    return (lbce < max_lbce) & (classes > min_classes)


def _weights_folder(name_or_path: str | os.PathLike) -> Path:
    """A local folder with the Mask2Former files: as given, or the Hub snapshot (never hangs)."""
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        return path
    name = str(name_or_path)
    looks_local = path.exists() or name.startswith((".", "/", "~")) or name.count("/") != 1
    advice = (
        "Download it once with internet access (run this command online, or `huggingface-cli download "
        f"{name if name.count('/') == 1 else DEFAULT_SEGMENTER}`), or pass a local folder saved with "
        "Mask2FormerForUniversalSegmentation.save_pretrained (config.json + model.safetensors)."
    )
    if looks_local:
        raise WeightsUnavailableError(f"Mask2Former weights: {name!r} is not a folder. {advice}")
    try:
        folder = download_hub_folder(name, allow_patterns=["config.json", "preprocessor_config.json", "*.safetensors"])
        if not any(folder.glob("*.safetensors")):  # older repos hold only a pickle; loaded weights_only
            download_hub_file(name, "pytorch_model.bin")
    except (WeightsUnavailableError, ValueError):
        raise WeightsUnavailableError(
            f"Mask2Former weights {name!r} are neither a local folder nor in the Hugging Face cache, "
            f"and the Hub cannot be reached (or is switched off by HF_HUB_OFFLINE). {advice}"
        ) from None
    return folder


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
    def from_pretrained(
        cls, name_or_path: str | os.PathLike = DEFAULT_SEGMENTER, *, shortest_edge: int | None = None
    ) -> "SemanticSegmenter":
        """Load a Mask2Former from a Hub id (cache only when offline) or a local folder."""
        from transformers import Mask2FormerForUniversalSegmentation

        folder = _weights_folder(name_or_path)
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
            pixels = torch.round((pixels.clamp(-1, 1) + 1) * 127.5)
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
