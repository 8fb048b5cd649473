"""PatchGAN discriminators of the translator's two branches (paper 3.3).

One class serves both: D_U (unsupervised branch) judges anime images, ``in_channels=3``; D_P
(supervised branch, Eq. 4) judges the channel concatenation (x_p, y) of a pseudo-pair input and an
output, ``in_channels=6``. The default is the reference "basic" 70x70 PatchGAN of CUT with
anti-aliasing: each downsampling is a stride-1 4x4 conv followed by a blur-pool.

Layout (ndf=64, n_layers=3): conv(ndf) LReLU blur | conv(2ndf) IN LReLU blur | conv(4ndf) IN LReLU
blur | conv(8ndf) IN LReLU | conv(1). 4x4 kernels, padding 1, LeakyReLU 0.2, InstanceNorm without
affine parameters. The output is one raw (no sigmoid) score per patch: (B, 1, h, w).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from diffusers import ModelMixin
from diffusers.configuration_utils import ConfigMixin, register_to_config
from torch import nn

from scenimefy.models.translator import BlurDownsample, instance_norm


class DiscriminatorBlock(nn.Module):
    """4x4 conv (padding 1) -> [InstanceNorm] -> LeakyReLU(0.2) -> [downsample by 2]."""

    def __init__(self, in_ch: int, out_ch: int, norm: bool, downsample: bool, antialias: bool) -> None:
        super().__init__()
        strided = downsample and not antialias
        self.conv = nn.Conv2d(in_ch, out_ch, 4, stride=2 if strided else 1, padding=1)
        self.norm = norm
        self.blur = BlurDownsample(out_ch) if downsample and antialias else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv(x)
        if self.norm:
            h = instance_norm(h)
        return self.blur(F.leaky_relu(h, 0.2))


class PatchDiscriminator(ModelMixin, ConfigMixin):
    """PatchGAN: a fully convolutional real/fake score per overlapping image patch.

    Args:
        in_channels: 3 for D_U (an image), 6 for D_P (input and output concatenated).
        ndf: width of the first layer; doubles per layer up to ``8 * ndf``.
        n_layers: downsampling layers (3 gives the 70x70 receptive field of pix2pix).
        antialias: blur-pool downsampling (reference default); else stride-2 convs.
    """

    config_name = "config.json"

    @register_to_config
    def __init__(self, in_channels: int = 3, ndf: int = 64, n_layers: int = 3, antialias: bool = True) -> None:
        super().__init__()
        widths = [ndf * min(2**i, 8) for i in range(n_layers + 1)]
        blocks = [DiscriminatorBlock(in_channels, widths[0], norm=False, downsample=True, antialias=antialias)]
        for i in range(1, n_layers):
            blocks.append(DiscriminatorBlock(widths[i - 1], widths[i], norm=True, downsample=True, antialias=antialias))
        blocks.append(
            DiscriminatorBlock(widths[n_layers - 1], widths[n_layers], norm=True, downsample=False, antialias=antialias)
        )
        self.blocks = nn.ModuleList(blocks)
        self.head = nn.Conv2d(widths[n_layers], 1, 4, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, in_channels, H, W) in [-1, 1] -> (B, 1, h, w) patch scores."""
        if x.shape[1] != self.config.in_channels:
            raise ValueError(f"discriminator expects {self.config.in_channels} channels, got {x.shape[1]}")
        for block in self.blocks:
            x = block(x)
        return self.head(x)
