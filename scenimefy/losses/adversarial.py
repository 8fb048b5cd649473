"""Least-squares GAN losses (LSGAN, Mao et al. 2017), the reference's ``--gan_mode lsgan``.

The paper writes the adversarial terms of Eq. 4 and Eq. 7 in the log form of the original GAN;
the authors train them, like CUT, as least squares on the raw PatchGAN outputs (no sigmoid):
the discriminator regresses real patches to 1 and fakes to 0, the generator pushes fakes to 1.
"""

from __future__ import annotations

import torch


def lsgan_loss(prediction: torch.Tensor, target_is_real: bool) -> torch.Tensor:
    """Mean squared distance of the patch predictions to 1 (real) or 0 (fake)."""
    target = 1.0 if target_is_real else 0.0
    return ((prediction - target) ** 2).mean()


def discriminator_loss(pred_real: torch.Tensor, pred_fake: torch.Tensor) -> torch.Tensor:
    """D's side of Eq. 4 / Eq. 7: real patches -> 1, fake patches -> 0, halved as in pix2pix/CUT."""
    # Eq. 4/7 (LSGAN): L_D = 1/2 E[(D(y) - 1)^2] + 1/2 E[D(G(x))^2]
    return 0.5 * (lsgan_loss(pred_real, True) + lsgan_loss(pred_fake, False))


def generator_adversarial_loss(pred_fake: torch.Tensor) -> torch.Tensor:
    """G's side of Eq. 4 / Eq. 7: make the discriminator call the fakes real."""
    # Eq. 4/7 (LSGAN): L_G = E[(D(G(x)) - 1)^2]
    return lsgan_loss(pred_fake, True)
