"""The ResNet translator of Scenimefy (paper 3.3), CUT's ``ResnetGenerator`` with anti-aliasing.

Layout, at ngf=64, n_blocks=9 (reference ``nn.Sequential`` index in brackets, used by
``encode``): reflect-pad 3 [0], 7x7 conv [1], norm [2], ReLU [3]; two down blocks, each a
stride-1 3x3 conv [4, 8], norm, ReLU and a blur-pool [7, 11]; n_blocks residual blocks
[12 .. 12+n_blocks-1]; two up blocks, each a blur-upsample, 3x3 conv, norm, ReLU; reflect-pad,
7x7 conv, tanh. InstanceNorm has no affine parameters and no running statistics.
Images are (B, 3, H, W) in [-1, 1]; H and W must be multiples of 4.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from diffusers import ModelMixin
from diffusers.configuration_utils import ConfigMixin, register_to_config
from torch import nn

#: The encoder taps the paper's contrastive losses read (reference ``nce_layers``).
NCE_LAYERS = (0, 4, 8, 12, 16)


def binomial_filter(size: int) -> torch.Tensor:
    """Normalised 2-D binomial kernel of the anti-aliased sampling layers ([1,2,1], [1,3,3,1])."""
    coeffs = [1.0]
    for _ in range(size - 1):
        coeffs = [a + b for a, b in zip([0.0] + coeffs, coeffs + [0.0])]
    row = torch.tensor(coeffs)
    kernel = row[:, None] * row[None, :]
    return kernel / kernel.sum()


def instance_norm(x: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    return F.instance_norm(x, eps=eps)


class BlurDownsample(nn.Module):
    """Blur-pool (Zhang 2019): reflect-pad 1, 3x3 binomial depthwise conv, stride 2."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.channels = channels
        self.register_buffer("filt", binomial_filter(3).expand(channels, 1, 3, 3).clone(), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.pad(x, (1, 1, 1, 1), mode="reflect")
        return F.conv2d(x, self.filt.to(x.dtype), stride=2, groups=self.channels)


class BlurUpsample(nn.Module):
    """Anti-aliased x2 upsampling: replicate-pad 1, 4x4 binomial transposed conv, crop."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.channels = channels
        # x4 keeps the mean: each output pixel receives a quarter of the kernel mass.
        self.register_buffer("filt", (binomial_filter(4) * 4).expand(channels, 1, 4, 4).clone(), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.pad(x, (1, 1, 1, 1), mode="replicate")
        x = F.conv_transpose2d(x, self.filt.to(x.dtype), stride=2, padding=2, groups=self.channels)
        return x[:, :, 1:-1, 1:-1]


class ResnetBlock(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(dim, dim, 3)
        self.conv2 = nn.Conv2d(dim, dim, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu(instance_norm(self.conv1(F.pad(x, (1, 1, 1, 1), mode="reflect"))))
        h = instance_norm(self.conv2(F.pad(h, (1, 1, 1, 1), mode="reflect")))
        return x + h


class DownBlock(nn.Module):
    """conv -> norm -> ReLU -> (blur-pool | nothing: the conv has stride 2)."""

    def __init__(self, in_ch: int, out_ch: int, antialias: bool) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_ch, out_ch, 3, stride=1 if antialias else 2, padding=1)
        self.blur = BlurDownsample(out_ch) if antialias else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.blur(F.relu(instance_norm(self.conv(x))))


class UpBlock(nn.Module):
    """(blur-upsample -> conv | transposed conv stride 2) -> norm -> ReLU."""

    def __init__(self, in_ch: int, out_ch: int, antialias: bool) -> None:
        super().__init__()
        self.antialias = antialias
        if antialias:
            self.upsample = BlurUpsample(in_ch)
            self.conv = nn.Conv2d(in_ch, out_ch, 3, padding=1)
        else:
            self.upsample = nn.Identity()
            self.conv = nn.ConvTranspose2d(in_ch, out_ch, 3, stride=2, padding=1, output_padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(instance_norm(self.conv(self.upsample(x))))


class ScenimefyTranslator(ModelMixin, ConfigMixin):
    """Photo -> anime scene translator G (paper 3.3).

    Args:
        in_channels / out_channels: image channels.
        ngf: width of the first layer; the bottleneck runs at ``4 * ngf``.
        n_blocks: residual blocks in the bottleneck.
        antialias: blur-pool downsampling (reference default); else strided convs.
        antialias_up: blur upsampling (reference default); else transposed convs.
    """

    config_name = "config.json"

    @register_to_config
    def __init__(
        self,
        in_channels: int = 3,
        out_channels: int = 3,
        ngf: int = 64,
        n_blocks: int = 9,
        antialias: bool = True,
        antialias_up: bool = True,
    ) -> None:
        super().__init__()
        self.stem = nn.Conv2d(in_channels, ngf, 7)
        self.down = nn.ModuleList([DownBlock(ngf, ngf * 2, antialias), DownBlock(ngf * 2, ngf * 4, antialias)])
        self.blocks = nn.ModuleList([ResnetBlock(ngf * 4) for _ in range(n_blocks)])
        self.up = nn.ModuleList([UpBlock(ngf * 4, ngf * 2, antialias_up), UpBlock(ngf * 2, ngf, antialias_up)])
        self.head = nn.Conv2d(ngf, out_channels, 7)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) in [-1, 1], H and W multiples of 4 -> (B, C, H, W) in [-1, 1]."""
        h = F.relu(instance_norm(self.stem(F.pad(x, (3, 3, 3, 3), mode="reflect"))))
        for block in self.down:
            h = block(h)
        for block in self.blocks:
            h = block(h)
        for block in self.up:
            h = block(h)
        return torch.tanh(self.head(F.pad(h, (3, 3, 3, 3), mode="reflect")))

    def _encoder_steps(self) -> list:
        """The encoder as the reference's flat layer list, so tap indices match ``nce_layers``."""
        steps: list = [
            lambda h: F.pad(h, (3, 3, 3, 3), mode="reflect"),
            self.stem,
            instance_norm,
            F.relu,
        ]
        for block in self.down:
            steps += [block.conv, instance_norm, F.relu]
            if isinstance(block.blur, BlurDownsample):
                steps.append(block.blur)
        steps += list(self.blocks)
        return steps

    def encode(self, x: torch.Tensor, layers: Sequence[int] = NCE_LAYERS) -> list[torch.Tensor]:
        """Feature maps after the encoder layers ``layers`` (reference indices, see module doc).

        Stops after the deepest requested layer, so taps cost only the encoder prefix they need.
        """
        steps = self._encoder_steps()
        wanted = sorted(set(layers))
        if not wanted or wanted[0] < 0 or wanted[-1] >= len(steps):
            raise ValueError(f"encoder layers must lie in [0, {len(steps) - 1}], got {list(layers)}")
        found: dict[int, torch.Tensor] = {}
        h = x
        for index, step in enumerate(steps[: wanted[-1] + 1]):
            h = step(h)
            if index in wanted:
                found[index] = h
        return [found[i] for i in layers]
