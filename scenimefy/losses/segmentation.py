"""Semantic consistency from segmentation score maps (paper 3.2, Tables 3 and 4).

``S`` is a per-class score map (B, C, H, W) in [0, 1] from :class:`scenimefy.models.SemanticSegmenter`.

  L_BCE(anime, real) = CrossEntropy(S_anime as logits, argmax_c S_real), mean over pixels
  abundance(real)    = number of distinct argmax classes of S_real

A pseudo pair is kept iff L_BCE < 5.0 and abundance > 1. Because S is in [0, 1] the
"logits" differ by at most 1, so L_BCE sits just under ln 150 ~ 5.01 (paper: 4.2-4.8).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

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
