"""A tiny randomly initialised Mask2Former (ADE-sized head, 150 classes) for fast tests."""

from __future__ import annotations

import torch
from transformers import Mask2FormerConfig, Mask2FormerForUniversalSegmentation, SwinConfig


def tiny_mask2former(num_labels: int = 150, num_queries: int = 8, seed: int = 0) -> Mask2FormerForUniversalSegmentation:
    backbone = SwinConfig(
        image_size=64,
        patch_size=4,
        embed_dim=16,
        depths=[1, 1, 1, 1],
        num_heads=[1, 1, 2, 2],
        window_size=4,
        out_features=["stage1", "stage2", "stage3", "stage4"],
    )
    config = Mask2FormerConfig(
        backbone_config=backbone,
        feature_size=32,  # GroupNorm(32, .) in the pixel decoder needs multiples of 32
        mask_feature_size=32,
        hidden_dim=32,
        encoder_feedforward_dim=32,
        encoder_layers=1,
        decoder_layers=2,
        num_attention_heads=2,
        dim_feedforward=32,
        num_queries=num_queries,
        id2label={i: f"class{i}" for i in range(num_labels)},
        label2id={f"class{i}": i for i in range(num_labels)},
    )
    torch.manual_seed(seed)
    return Mask2FormerForUniversalSegmentation(config).eval()
