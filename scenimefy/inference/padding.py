"""Reflect padding that keeps a map's memory layout (the fast path's reflect-padded convs on CUDA)."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def reflect_pad(x: torch.Tensor, pads: tuple[int, int, int, int], keep_layout: bool | None = None) -> torch.Tensor:
    """``F.pad(x, pads, mode="reflect")`` (pads: left, right, top, bottom), in x's memory layout.

    CUDA's reflection pad writes NCHW whatever its input, so in the channels_last fast path
    every reflect-padded conv would pay two layout conversions (to NCHW here, back in cuDNN).
    ``keep_layout`` (default: on CUDA, for a channels_last map) builds the padded map in
    channels_last instead: the interior copied, then the reflected rows, then the reflected
    columns of the row-padded map (which fills the corners the way F.pad does).
    """
    if keep_layout is None:
        keep_layout = x.is_cuda
    if not (keep_layout and x.shape[1] > 1 and x.is_contiguous(memory_format=torch.channels_last)):
        return F.pad(x, pads, mode="reflect")
    left, right, top, bottom = pads
    n, c, h, w = x.shape
    if max(left, right) >= w or max(top, bottom) >= h:
        raise ValueError(f"reflect padding {pads} needs a map larger than {h}x{w}")
    size = (n, c, h + top + bottom, w + left + right)
    out = torch.empty(size, dtype=x.dtype, device=x.device, memory_format=torch.channels_last)
    out[:, :, top : top + h, left : left + w] = x
    if top:
        out[:, :, :top, left : left + w] = x[:, :, 1 : top + 1].flip(2)
    if bottom:
        out[:, :, top + h :, left : left + w] = x[:, :, h - 1 - bottom : h - 1].flip(2)
    if left:
        out[:, :, :, :left] = out[:, :, :, left + 1 : 2 * left + 1].flip(3)
    if right:
        out[:, :, :, left + w :] = out[:, :, :, left + w - 1 - right : left + w - 1].flip(3)
    return out
