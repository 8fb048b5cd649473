"""Scenimefy-Lite: a small translator distilled from the full one, for video, webcam and ONNX.

Same op vocabulary and module names as ``ScenimefyTranslator`` (``stem``, ``down``, ``blocks``,
``up``, ``head``; reflect-padded convs, InstanceNorm without affine, ReLU, blur-pool down, blur
up, residual blocks), so the fast path (``scenimefy.inference.translate``), the ONNX export
and the converters serve both; only the widths and depths differ:

    stem   k x k conv, channels[0], full size
    down   n_down = len(channels) - 1 blocks: 3x3 conv channels[i] -> channels[i+1], norm,
           ReLU, blur-pool (or a stride-2 conv when ``antialias`` is off)
    blocks n_blocks residual blocks at channels[-1], 1 / 2**n_down of the input size
    up     the mirror of ``down``: blur-upsample, 3x3 conv, norm, ReLU
    head   k x k conv to out_channels, tanh

Images are (B, 3, H, W) in [-1, 1]; H and W must be multiples of 2**n_down (4 for the default
two downsamplings, as the full translator), and the map at the bottleneck at least 2 pixels a
side (reflect padding).

The default config (channels (16, 32, 64), 8 blocks, a 7x7 stem and a 3x3 head: the full
translator's topology at a quarter of its width) costs 58,080 multiply-adds per output pixel,
1/16.8 of the full translator's 977k, and has 0.64M parameters. The 3x3 head (the full
translator's is 7x7) is ~8% faster through the fast path, where a 3-channel conv fills few of
oneDNN's lanes, and distils as well; docs/lite.md has the measurements behind these choices.
The fast path (``scenimefy.inference.translate``) serves configs with two downsamplings (three
widths); others run eagerly in the pipeline, or through ONNX (``scenimefy.inference.onnx``).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from diffusers import ModelMixin
from diffusers.configuration_utils import ConfigMixin, register_to_config
from torch import nn

from scenimefy.models.translator import DownBlock, ResnetBlock, UpBlock, instance_norm


class ScenimefyLiteTranslator(ModelMixin, ConfigMixin):
    """Small photo -> anime translator with the full translator's layers (see module doc).

    Args:
        in_channels / out_channels: image channels.
        channels: width per resolution level, full size first; ``len(channels) - 1``
            downsamplings, the residual blocks run at ``channels[-1]``.
        n_blocks: residual blocks in the bottleneck.
        stem_kernel / head_kernel: odd kernel sizes of the first and last (reflect-padded) convs.
        antialias: blur-pool downsampling (as the full translator); else stride-2 convs.
        antialias_up: blur upsampling; else transposed convs.
    """

    config_name = "config.json"

    @register_to_config
    def __init__(
        self,
        in_channels: int = 3,
        out_channels: int = 3,
        channels: Sequence[int] = (16, 32, 64),
        n_blocks: int = 8,
        stem_kernel: int = 7,
        head_kernel: int = 3,
        antialias: bool = True,
        antialias_up: bool = True,
    ) -> None:
        super().__init__()
        channels = tuple(int(c) for c in channels)
        if len(channels) < 1 or min(channels) < 1:
            raise ValueError(f"channels must be one or more positive widths, got {channels}")
        if stem_kernel % 2 == 0 or head_kernel % 2 == 0:
            raise ValueError(f"stem_kernel and head_kernel must be odd, got {stem_kernel}, {head_kernel}")
        self.stem = nn.Conv2d(in_channels, channels[0], stem_kernel)
        self.down = nn.ModuleList([DownBlock(a, b, antialias) for a, b in zip(channels, channels[1:])])
        self.blocks = nn.ModuleList([ResnetBlock(channels[-1]) for _ in range(n_blocks)])
        self.up = nn.ModuleList([UpBlock(b, a, antialias_up) for a, b in reversed(list(zip(channels, channels[1:])))])
        self.head = nn.Conv2d(channels[0], out_channels, head_kernel)

    @property
    def n_down(self) -> int:
        return len(self.config.channels) - 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) in [-1, 1], H and W multiples of 2**n_down -> (B, C, H, W) in [-1, 1]."""
        multiple = 2**self.n_down
        if x.shape[-2] % multiple or x.shape[-1] % multiple:
            raise ValueError(f"H and W must be multiples of {multiple}, got {tuple(x.shape[-2:])}")
        p = self.stem.kernel_size[0] // 2
        h = F.relu(instance_norm(self.stem(F.pad(x, (p, p, p, p), mode="reflect"))))
        for block in self.down:
            h = block(h)
        for block in self.blocks:
            h = block(h)
        for block in self.up:
            h = block(h)
        p = self.head.kernel_size[0] // 2
        return torch.tanh(self.head(F.pad(h, (p, p, p, p), mode="reflect")))

    def macs_per_pixel(self) -> float:
        """Multiply-adds of the convolutions per output pixel (exact for any valid size)."""
        side = 2**self.n_down * 4
        return count_macs(self, side, side) / (side * side)


@torch.no_grad()
def count_macs(model: nn.Module, height: int, width: int) -> int:
    """Multiply-adds of every ``nn.Conv2d`` / ``nn.ConvTranspose2d`` in one (1, C, H, W) forward.

    Works for the full and the lite translator (any module whose convs are submodules). The
    fixed blur filters (functional depthwise convs, ~2% of either net) and the elementwise ops
    are not counted, as in the figures of the paper's architecture and of docs/lite.md.
    """
    total = 0

    def hook(module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        nonlocal total
        kh, kw = module.kernel_size
        per_out = module.in_channels // module.groups * kh * kw
        if isinstance(module, nn.ConvTranspose2d):  # each input value meets out/groups * k*k taps
            total += inputs[0][0].numel() * module.out_channels // module.groups * kh * kw
        else:
            total += output[0].numel() * per_out

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))]
    try:
        param = next(model.parameters())
        model(torch.zeros(1, model.config.in_channels, height, width, device=param.device, dtype=param.dtype))
    finally:
        for handle in handles:
            handle.remove()
    return total


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
