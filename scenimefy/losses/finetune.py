"""Stage-1 loss: semantic-constrained fine-tuning of the target StyleGAN2 G_t (paper 3.1, Eq. 1-3).

With x_p = G_s(w) (frozen source) and y_p = G_t(w) (same w, same noise):

    L_global   = D_CLIP(x_p, y_p) + lambda_lpips * LPIPS(x_p, y_p)                    (Eq. 1)
    L_patch    = PatchNCE over CLIP embeddings of random crops of y_p and x_p          (Eq. 2)
    L_finetune = L_GAN(G_t, D) + lambda_global * L_global + lambda_patch * L_patch     (Eq. 3)

Paper weights: lambda_lpips 0.01, lambda_global 1.0, lambda_patch 0.05. LPIPS is the VGG variant
(the paper's "VGG perceptual loss [43]", Zhang et al.) from the ``lpips`` package.
"""

from __future__ import annotations

import urllib.error
import warnings

import torch
from torch import nn

from scenimefy.losses.clip import (
    CLIPImageEncoder,
    PriorWeightsError,
    clip_cosine_distance,
    clip_patch_nce,
    random_patch_boxes,
)
from scenimefy.losses.stylegan2 import generator_nonsaturating_loss


def load_lpips(net: str = "vgg", pretrained: bool = True) -> nn.Module:
    """A frozen ``lpips.LPIPS`` (inputs in [-1, 1]); ``pretrained=False`` gives a random stand-in.

    The pretrained trunk comes from torchvision's ImageNet weights (torch hub cache, downloaded
    when online); the stand-in (random trunk and random linear heads) downloads nothing.
    """
    import lpips  # after `import scenimefy`, which makes torchvision importable

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # torchvision's "pretrained is deprecated"
            model = lpips.LPIPS(net=net, pretrained=pretrained, pnet_rand=not pretrained, verbose=False)
    except (urllib.error.URLError, OSError, RuntimeError) as err:
        raise PriorWeightsError(
            f"LPIPS ({net}) needs torchvision's ImageNet {net} weights in {torch.hub.get_dir()}/checkpoints, which "
            f"could not be loaded or downloaded ({err}). Fetch them once online, or use randomly initialised "
            f"priors (random_priors) for a smoke run."
        ) from None
    return model.requires_grad_(False).eval()


def global_loss(
    clip_encoder: CLIPImageEncoder,
    lpips_model: nn.Module,
    source: torch.Tensor,
    target: torch.Tensor,
    lambda_lpips: float = 0.01,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """L_global between x_p (``source``) and y_p (``target``), both (B, 3, H, W) in [-1, 1].

    Returns (loss, {"clip": D_CLIP, "lpips": LPIPS}) so both terms can be logged.
    """
    clip_term = clip_cosine_distance(clip_encoder, source, target)
    lpips_term = lpips_model(source, target).mean()
    # Eq. 1: L_global = D_CLIP(x_p, y_p) + lambda_lpips * lpips(x_p, y_p)
    return clip_term + lambda_lpips * lpips_term, {"clip": clip_term, "lpips": lpips_term}


def finetune_generator_loss(
    fake_logits: torch.Tensor,
    source: torch.Tensor,
    target: torch.Tensor,
    clip_encoder: CLIPImageEncoder,
    lpips_model: nn.Module,
    lambda_global: float = 1.0,
    lambda_lpips: float = 0.01,
    lambda_patch: float = 0.05,
    num_patches: int = 8,
    patch_size: int = 64,
    temperature: float = 0.07,
    generator: torch.Generator | None = None,
) -> dict[str, torch.Tensor]:
    """L_finetune for G_t. ``fake_logits`` = D(y_p); ``source`` = x_p (no grad); ``target`` = y_p.

    L_patch crops ``num_patches`` random ``patch_size`` squares per image (the same positions in
    x_p and y_p). Returns the total under "loss" and every term (for logging).
    """
    gan = generator_nonsaturating_loss(fake_logits)
    glob, parts = global_loss(clip_encoder, lpips_model, source, target, lambda_lpips)
    patch = gan.new_zeros(())
    if lambda_patch > 0:
        boxes = random_patch_boxes(target.shape[0], target.shape[-1], patch_size, num_patches, generator)
        patch = clip_patch_nce(clip_encoder, source, target, boxes, patch_size, temperature)
    # Eq. 3: L_finetune = L_GAN(G_t, D) + lambda_global * L_global + lambda_patch * L_patch
    total = gan + lambda_global * glob + lambda_patch * patch
    terms = {"loss": total, "gan": gan, "global": glob, "patch": patch, **parts}
    return terms
