"""Loss functions, one per equation of the paper, with explicit hyperparameters."""

from .adversarial import discriminator_loss, generator_adversarial_loss, lsgan_loss
from .contrastive import (
    hard_negative_contrastive_loss,
    hdce_gamma,
    patch_nce_loss,
    relation_weights,
    semantic_relation_consistency,
    style_patch_nce_loss,
)

__all__ = [
    "discriminator_loss",
    "generator_adversarial_loss",
    "hard_negative_contrastive_loss",
    "hdce_gamma",
    "lsgan_loss",
    "patch_nce_loss",
    "relation_weights",
    "semantic_relation_consistency",
    "style_patch_nce_loss",
]
