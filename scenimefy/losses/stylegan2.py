"""The StyleGAN2 training objective (Karras et al. 2020): non-saturating logistic GAN loss, lazy R1
on real images and path-length regularisation. Used to train G_s and as L_GAN of stage-1 fine-tuning.

All take raw discriminator logits (B, 1). The lazy regularisers are returned unweighted; the
caller multiplies by gamma/2 (R1) or the path weight and by the regularisation interval. Under
``--mixed_precision fp16`` both take the GradScaler's scale (``grad_scale``): their
``autograd.grad`` runs on the scaled output and the gradient is unscaled in fp32 (the AMP recipe
for gradient penalties); bf16 has fp32's exponent range and needs no scale.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def discriminator_logistic_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """D's loss: -log sigmoid(D(x)) - log(1 - sigmoid(D(G(z)))), batch mean."""
    return F.softplus(-real_logits).mean() + F.softplus(fake_logits).mean()


def generator_nonsaturating_loss(fake_logits: torch.Tensor) -> torch.Tensor:
    """G's non-saturating loss -log sigmoid(D(G(z))), batch mean (the L_GAN of Eq. 3)."""
    return F.softplus(-fake_logits).mean()


def r1_penalty(real_logits: torch.Tensor, real_images: torch.Tensor, grad_scale: float | None = None) -> torch.Tensor:
    """R1: mean over the batch of ||d D(x) / d x||^2 (``real_images`` must require grad).

    ``grad_scale``: the GradScaler's current scale when D ran under fp16 autocast (see
    :func:`scaled_input_grad`); None in fp32 / bf16.
    """
    grad = scaled_input_grad(real_logits.sum(), real_images, grad_scale)
    return grad.square().flatten(1).sum(dim=1).mean()


def scaled_input_grad(output: torch.Tensor, inputs: torch.Tensor, grad_scale: float | None) -> torch.Tensor:
    """d output / d inputs (graph kept), in fp32, following the AMP recipe for gradient penalties.

    Under fp16 autocast the backward of ``output`` runs through fp16 ops, where per-pixel
    gradients of 1e-3..1e-4 sit near fp16's subnormals (6e-5) and lose their digits. So the
    output is multiplied by the GradScaler's scale before ``autograd.grad`` (the same scale the
    loss backward uses, so an overflow there makes the step skipped, as for any loss) and the
    gradient divided by it after, in fp32.
    """
    if grad_scale is None or grad_scale == 1.0:
        (grad,) = torch.autograd.grad(output, inputs, create_graph=True)
        return grad.float()
    (grad,) = torch.autograd.grad(output * grad_scale, inputs, create_graph=True)
    return grad.float() / grad_scale


def path_length_penalty(
    fake_images: torch.Tensor,
    latents: torch.Tensor,
    mean_path_length: torch.Tensor | float,
    decay: float = 0.01,
    grad_scale: float | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Path-length regulariser: the Jacobian norm ||J_w^T y|| (y random image-space noise) should
    stay near its running mean.

    Args:
        fake_images: G(latents), (B, 3, H, W).
        latents: the per-layer latents G read, (B, n_latent, D), part of the graph.
        mean_path_length: the running mean a (a scalar), updated with ``decay``.
        grad_scale: the GradScaler's scale under fp16 autocast (:func:`scaled_input_grad`).
    Returns:
        (penalty, new running mean (detached), mean path length of this batch (detached)).
    """
    fake_images = fake_images.float()
    noise = torch.randn_like(fake_images) / math.sqrt(fake_images.shape[2] * fake_images.shape[3])
    grad = scaled_input_grad((fake_images * noise).sum(), latents, grad_scale)  # (B, n_latent, D)
    path_lengths = grad.square().sum(dim=2).mean(dim=1).sqrt()  # (B,)
    path_mean = mean_path_length + decay * (path_lengths.mean() - mean_path_length)
    penalty = (path_lengths - path_mean).square().mean()
    return penalty, path_mean.detach(), path_lengths.mean().detach()
