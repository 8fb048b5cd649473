"""StyleGAN2's resampling and activation ops in pure PyTorch (no compiled extensions).

``upfirdn2d`` (upsample by zero insertion, FIR filter, downsample) is what the official and the
rosinality code implement as a CUDA kernel. Here it maps onto one depthwise ``conv2d`` (filter and
downsample in one strided call, nothing computed at discarded positions) or one depthwise
``conv_transpose2d`` (upsampling without multiplying the inserted zeros), which run at library
speed on CPU and GPU and have ordinary autograd. ``upfirdn2d_reference`` is the literal
definition (zero insertion, padding, full-resolution single-channel convolution, subsampling),
kept to test against and as the benchmark baseline; ``use_reference_upfirdn2d()`` switches the
modules below onto it.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator, Sequence

import torch
import torch.nn.functional as F
from torch import nn

Pad = Sequence[int]  # (p0, p1) for both axes, or (x0, x1, y0, y1)


def make_kernel(k: Sequence[float] | torch.Tensor) -> torch.Tensor:
    """A 1-D filter -> its normalised 2-D outer product (a 2-D one is only normalised)."""
    k = torch.as_tensor(k, dtype=torch.float32)
    if k.ndim == 1:
        k = k[None, :] * k[:, None]
    return k / k.sum()


def _pads(pad: Pad) -> tuple[int, int, int, int]:
    if len(pad) == 2:
        return pad[0], pad[1], pad[0], pad[1]
    if len(pad) == 4:
        return tuple(pad)  # type: ignore[return-value]
    raise ValueError(f"pad must be (p0, p1) or (x0, x1, y0, y1), got {tuple(pad)}")


def _check(x: torch.Tensor, kernel: torch.Tensor, up: int, down: int) -> None:
    if x.ndim != 4 or kernel.ndim != 2:
        raise ValueError(f"expected x (B, C, H, W) and a 2-D kernel, got {tuple(x.shape)} and {tuple(kernel.shape)}")
    if up < 1 or down < 1:
        raise ValueError(f"up and down must be >= 1, got up={up}, down={down}")


def upfirdn2d(x: torch.Tensor, kernel: torch.Tensor, up: int = 1, down: int = 1, pad: Pad = (0, 0)) -> torch.Tensor:
    """Upsample (zero insertion), pad, convolve with ``kernel``, downsample: (B, C, H, W) -> (B, C, H', W').

    H' = (H * up + y0 + y1 - kh) // down + 1 (same for W), as in the reference op. Negative pads crop.
    """
    _check(x, kernel, up, down)
    x0, x1, y0, y1 = _pads(pad)
    channels = x.shape[1]
    kh, kw = kernel.shape
    kernel = kernel.to(dtype=x.dtype, device=x.device)
    if up == 1:
        # Cross-correlation with the flipped kernel is the convolution; the stride drops exactly
        # the samples the reference computes and then discards.
        weight = kernel.flip([0, 1]).expand(channels, 1, kh, kw)
        return F.conv2d(F.pad(x, [x0, x1, y0, y1]), weight, stride=down, groups=channels)
    # conv_transpose2d with stride ``up`` is zero insertion + full convolution with the kernel;
    # its output starts k-1 samples before the reference's (padded) window, so pad/crop to it.
    weight = kernel.expand(channels, 1, kh, kw)
    out = F.conv_transpose2d(x, weight, stride=up, groups=channels)  # (B, C, (H-1)*up + kh, (W-1)*up + kw)
    out = F.pad(out, [x0 - kw + 1, x1 + up - kw, y0 - kh + 1, y1 + up - kh])
    return out[:, :, ::down, ::down] if down > 1 else out


def upfirdn2d_reference(
    x: torch.Tensor, kernel: torch.Tensor, up: int = 1, down: int = 1, pad: Pad = (0, 0)
) -> torch.Tensor:
    """The literal definition of ``upfirdn2d``: slow, for tests and the benchmark baseline."""
    _check(x, kernel, up, down)
    x0, x1, y0, y1 = _pads(pad)
    batch, channels, height, width = x.shape
    kh, kw = kernel.shape
    out = x.reshape(batch * channels, height, 1, width, 1)
    out = F.pad(out, [0, up - 1, 0, 0, 0, up - 1])  # zeros after every sample
    out = out.reshape(batch * channels, 1, height * up, width * up)
    out = F.pad(out, [max(x0, 0), max(x1, 0), max(y0, 0), max(y1, 0)])
    out = out[:, :, max(-y0, 0) : out.shape[2] - max(-y1, 0), max(-x0, 0) : out.shape[3] - max(-x1, 0)]
    weight = kernel.flip([0, 1]).to(dtype=x.dtype, device=x.device)[None, None]
    out = F.conv2d(out, weight)  # every output position, including those dropped below
    out = out[:, :, ::down, ::down]
    return out.reshape(batch, channels, out.shape[2], out.shape[3])


_UPFIRDN2D: Callable[..., torch.Tensor] = upfirdn2d


@contextlib.contextmanager
def use_reference_upfirdn2d() -> Iterator[None]:
    """Run the modules of this file on ``upfirdn2d_reference`` (benchmarks and tests only)."""
    global _UPFIRDN2D
    previous, _UPFIRDN2D = _UPFIRDN2D, upfirdn2d_reference
    try:
        yield
    finally:
        _UPFIRDN2D = previous


def fused_leaky_relu(
    x: torch.Tensor, bias: torch.Tensor | None = None, negative_slope: float = 0.2, scale: float = math.sqrt(2)
) -> torch.Tensor:
    """Add a per-channel bias (dim 1), leaky ReLU, then rescale by sqrt(2) to keep unit variance."""
    if bias is not None:
        x = x + bias.view(1, -1, *([1] * (x.ndim - 2)))
    return F.leaky_relu(x, negative_slope) * scale


class FusedLeakyReLU(nn.Module):
    """``fused_leaky_relu`` with a learned bias (the parameter StyleGAN2 stores as ``activate.bias``)."""

    def __init__(self, channels: int, bias: bool = True, negative_slope: float = 0.2, scale: float = math.sqrt(2)):
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(channels)) if bias else None
        self.negative_slope, self.scale = negative_slope, scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return fused_leaky_relu(x, self.bias, self.negative_slope, self.scale)


class Blur(nn.Module):
    """FIR filter with padding; ``upsample_factor`` rescales the kernel to keep the mean after upsampling."""

    def __init__(self, kernel: Sequence[float], pad: tuple[int, int], upsample_factor: int = 1) -> None:
        super().__init__()
        # Not persistent: the kernel follows from the config, so checkpoints do not carry it.
        self.register_buffer("kernel", make_kernel(kernel) * upsample_factor**2, persistent=False)
        self.pad = pad

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _UPFIRDN2D(x, self.kernel, pad=self.pad)


class Upsample(nn.Module):
    """x``factor`` upsampling by zero insertion and the FIR ``kernel`` (the skip path of ToRGB)."""

    def __init__(self, kernel: Sequence[float], factor: int = 2) -> None:
        super().__init__()
        self.factor = factor
        self.register_buffer("kernel", make_kernel(kernel) * factor**2, persistent=False)
        p = self.kernel.shape[0] - factor
        self.pad = ((p + 1) // 2 + factor - 1, p // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _UPFIRDN2D(x, self.kernel, up=self.factor, pad=self.pad)
