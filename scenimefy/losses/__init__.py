"""Loss functions with explicit hyperparameters, one per equation of the paper.

Paper equation -> function:

- Eq. 1  L_global = D_CLIP + lambda_lpips LPIPS    ``finetune.global_loss`` (``clip.clip_cosine_distance``)
- Eq. 2  L_patch, PatchNCE                         ``contrastive.patch_nce_loss`` (``clip.clip_patch_nce``)
- Eq. 3  L_finetune of G_t                         ``finetune.finetune_generator_loss``
  (its L_GAN: ``stylegan2.generator_nonsaturating_loss``, D: ``stylegan2.discriminator_logistic_loss``, ``r1_penalty``)
- Sec. 3.2  L_BCE and semantic abundance           ``segmentation.semantic_consistency``, ``semantic_abundance``,
  the selection rule                               ``segmentation.keep_pairs``
- Eq. 4  L_cGAN (LSGAN, paired D_P)                ``adversarial.discriminator_loss``, ``generator_adversarial_loss``
- Eq. 5  L_StylePatchNCE                           ``contrastive.style_patch_nce_loss``
- Eq. 7  L_SRC and L_hDCE (Jung et al. Eq. 3, 4)   ``contrastive.semantic_relation_consistency``,
                                                   ``hard_negative_contrastive_loss`` (gamma: ``hdce_gamma``)
- Eq. 6-8  L_sup, L_unsup and their sum with lambda_sup(t): ``scenimefy.training.translator``
- Hosoda's perceptual (VGG) content term            ``perceptual.VGGPerceptualLoss``
"""

from scenimefy.losses.adversarial import discriminator_loss, generator_adversarial_loss, lsgan_loss
from scenimefy.losses.contrastive import (
    hard_negative_contrastive_loss,
    hdce_gamma,
    patch_nce_loss,
    relation_weights,
    semantic_relation_consistency,
    style_patch_nce_loss,
)
from scenimefy.losses.segmentation import keep_pairs, semantic_abundance, semantic_consistency

__all__ = [
    "discriminator_loss",
    "generator_adversarial_loss",
    "hard_negative_contrastive_loss",
    "hdce_gamma",
    "keep_pairs",
    "lsgan_loss",
    "patch_nce_loss",
    "relation_weights",
    "semantic_abundance",
    "semantic_consistency",
    "semantic_relation_consistency",
    "style_patch_nce_loss",
]
