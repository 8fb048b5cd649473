"""Single ops of the fast path (scenimefy.inference.ops) against the ops they replace, in float64."""

import pytest
import torch

from scenimefy.inference import winograd
from scenimefy.inference.ops import BlurUp, BlurUpConv, Context, Conv, Span, blur_up_conv_weight


def _unfused(x, w, rows, cols):
    ctx = Context()
    x, rows, cols = BlurUp()(x, rows, cols, ctx)
    return Conv(w, None, reflect=False)(x, rows, cols, ctx)


# (rows, cols) of the input held by the tensor: the whole image, tiles on a border, an inner tile
SPANS = [((0, 9), (0, 7)), ((3, 9), (0, 7)), ((0, 5), (2, 7)), ((2, 7), (1, 6))]


@pytest.mark.parametrize("channels_last", [True, False])
@pytest.mark.parametrize("spans", SPANS, ids=lambda s: f"rows{s[0]}-cols{s[1]}")
def test_blur_up_conv_equals_blur_up_then_conv(channels_last, spans):
    """Same output lines and values as BlurUp + zero-padded Conv, borders and tile edges included."""
    g = torch.Generator().manual_seed(0)
    (r0, r1), (c0, c1) = spans
    image = torch.randn(1, 6, 9, 7, generator=g)
    w = torch.randn(5, 6, 3, 3, generator=g) / 16
    rows, cols = Span(r0, r1, 9), Span(c0, c1, 7)
    x = image[:, :, r0:r1, c0:c1]
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    x = x.contiguous(memory_format=fmt)
    ref, ref_rows, ref_cols = _unfused(x.double(), w.double(), rows, cols)
    fused = winograd.transform_weight(blur_up_conv_weight(w), 6, dtype=torch.float32)
    op = BlurUpConv(w.contiguous(memory_format=fmt), fused)
    y, y_rows, y_cols = op(x, rows, cols, Context())
    assert (y_rows, y_cols) == (ref_rows, ref_cols)
    assert y.shape == ref.shape and y.is_contiguous(memory_format=fmt)
    # Elementwise, relative to what each output adds up (as in test_winograd): fp32 rounding only.
    bound, _, _ = _unfused(x.double().abs(), w.double().abs(), rows, cols)
    assert ((y.double() - ref).abs() <= 256 * 2.0**-24 * bound).all()


def test_fused_weight_is_the_upsampling_then_the_conv_on_a_delta():
    """Phase (py, px) of the fused kernel, applied to a one-pixel input, is what BlurUp then the conv
    put on output pixel (2i + py, 2j + px): checked on the interior of a 7x7 impulse response."""
    w = torch.randn(1, 1, 3, 3, dtype=torch.float64)
    x = torch.zeros(1, 1, 7, 7, dtype=torch.float64)
    x[0, 0, 3, 3] = 1
    full, _, _ = _unfused(x, w, Span(0, 7, 7), Span(0, 7, 7))
    fused = blur_up_conv_weight(w)  # (4, 1, 3, 3)
    for py in (0, 1):
        for px in (0, 1):
            phase = torch.nn.functional.conv2d(x, fused[2 * py + px : 2 * py + px + 1], padding=1)
            torch.testing.assert_close(phase[0, 0, 1:-1, 1:-1], full[0, 0, py::2, px::2][1:-1, 1:-1])
