"""Winograd F(m x m, 3 x 3) convolution (scenimefy.inference.winograd) against F.conv2d in float64.

Tolerances are elementwise and relative to the conditioning of each output,
bound = conv(|x|, |w|) (the sum of |products| it adds up): every float algorithm for a dot
product errs by at most (a constant) x eps x bound. Measured worst constants on these inputs
(5 seeds; F(6,3): 87 -> limit 256):

    fp32:  direct 4-5,  F(2,3) 2,  F(3,3) 9,  F(4,3) 12,  F(6,3) 85      -> limit 64 (256)
    bf16:  direct 0.9,  F(2,3) 1.7, F(4,3) 5.4 (eps = 2^-9)             -> limit 4 / 32

and mean errors relative to direct bf16 F.conv2d: F(2,3) 2.7x, F(4,3) 5.3x -> limits 4x / 12x.
"""

import pytest
import torch
import torch.nn.functional as F

from scenimefy.inference import winograd as wg

EPS = {torch.float32: 2.0**-24, torch.bfloat16: 2.0**-9}


def _inputs(shape, cout, seed=0, dtype=torch.float32, channels_last=True):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(shape, generator=g).to(dtype)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    w = torch.randn(cout, shape[1], 3, 3, generator=g) / (3 * shape[1] ** 0.5)
    b = torch.randn(cout, generator=g)
    return x, w, b


def _reference(x, w, b, padding):
    xd = x.double()
    ref = F.conv2d(xd, w.double(), None if b is None else b.double(), padding=padding)
    bound = F.conv2d(xd.abs(), w.double().abs(), None if b is None else b.double().abs(), padding=padding)
    return ref, bound


@pytest.mark.parametrize("m", [2, 3, 4, 6])
def test_matrices_compute_a_1d_correlation(m):
    a_t, g, b_t = wg.winograd_matrices(m)
    d, k = torch.randn(m + 2, dtype=torch.float64), torch.randn(3, dtype=torch.float64)
    y = a_t @ ((g @ k) * (b_t @ d))
    torch.testing.assert_close(y, F.conv1d(d[None, None], k[None, None])[0, 0], rtol=0, atol=1e-12)


def test_lavin_gray_points_give_their_matrices():
    # Lavin & Gray's F(4x4, 3x3) (points 0, +-1, +-2): B^T's first row is 4, 0, -5, 0, 1, 0 and
    # A^T's last row 0, 1, -1, 8, -8, 1 (the point at infinity's sign convention aside).
    a_t, _, b_t = wg.winograd_matrices(4, points=(0, 1, -1, 2, -2))
    assert b_t[0].tolist() == [4, 0, -5, 0, 1, 0]
    assert a_t[3].abs().tolist() == [0, 1, 1, 8, 8, 1]


# (N, C_in, C_out, H, W): odd sizes, sizes that are / are not multiples of every tile, 1-pixel
# outputs, batch 2.
SHAPES = [(2, 8, 5, 13, 17), (1, 6, 7, 18, 18), (1, 4, 3, 3, 3), (1, 4, 4, 1, 2), (2, 5, 8, 9, 26)]


@pytest.mark.parametrize("m", [2, 4])
@pytest.mark.parametrize("padding", [0, 1])
@pytest.mark.parametrize("channels_last", [True, False])
@pytest.mark.parametrize("shape", SHAPES)
def test_fp32_matches_conv2d(m, padding, channels_last, shape):
    n, cin, cout, h, w = shape
    if h + 2 * padding < 3 or w + 2 * padding < 3:
        pytest.skip("smaller than the kernel")
    x, weight, bias = _inputs((n, cin, h, w), cout, channels_last=channels_last)
    ww = wg.transform_weight(weight, m)
    for b in (None, bias):
        # A small band size forces 2-3 bands per image (and a short last one).
        band = (m + 2) ** 2 * -(-(w + 2 * padding - 2) // m) * max(cin, cout) * 4 * 2
        y = wg.conv2d(x, ww, b, padding, band_bytes=band)
        ref, bound = _reference(x, weight, b, padding)
        assert y.shape == ref.shape and y.dtype == x.dtype
        fmt = torch.channels_last if channels_last else torch.contiguous_format
        assert y.is_contiguous(memory_format=fmt)
        assert ((y.double() - ref).abs() <= 64 * EPS[torch.float32] * bound).all()
        y_one_band = wg.conv2d(x, ww, b, padding)
        torch.testing.assert_close(y_one_band, y, rtol=0, atol=1e-5)


@pytest.mark.parametrize("m, max_limit, mean_ratio", [(2, 4, 4.0), (4, 32, 12.0)])
@pytest.mark.parametrize("padding", [0, 1])
def test_bf16_error_relative_to_direct_bf16(m, max_limit, mean_ratio, padding):
    x, weight, _ = _inputs((2, 32, 19, 21), 24, seed=3, dtype=torch.bfloat16)
    ww = wg.transform_weight(weight, m, dtype=torch.bfloat16)
    y = wg.conv2d(x, ww, None, padding, band_bytes=20000)
    assert y.dtype == torch.bfloat16 and y.is_contiguous(memory_format=torch.channels_last)
    ref, bound = _reference(x, weight, None, padding)
    err = (y.double() - ref).abs()
    direct = (F.conv2d(x, weight.bfloat16(), padding=padding).double() - ref).abs()
    assert (err <= max_limit * EPS[torch.bfloat16] * bound).all()
    assert err.mean() <= mean_ratio * direct.mean()


@pytest.mark.parametrize("m, limit", [(3, 256), (6, 256), (8, 16384)])
def test_other_tile_sizes(m, limit):
    # F(6,3): worst constant 87; F(8,3): ~3000 (1e-4 of bound: too lossy for bf16, usable in fp32).
    x, weight, bias = _inputs((1, 8, 14, 19), 6)
    y = wg.conv2d(x, wg.transform_weight(weight, m), bias, 1, band_bytes=1)
    ref, bound = _reference(x, weight, bias, 1)
    assert ((y.double() - ref).abs() <= limit * EPS[torch.float32] * bound).all()


def test_points_without_one():
    # The bias then needs the least-norm e with A^T e = 1 instead of the column of the point 1.
    x, weight, bias = _inputs((1, 5, 11, 13), 4)
    ww = wg.transform_weight(weight, 4, points=(0, 1.5, -1.5, 2 / 3, -2 / 3))
    y = wg.conv2d(x, ww, bias, 1)
    ref, bound = _reference(x, weight, bias, 1)
    assert ((y.double() - ref).abs() <= 64 * EPS[torch.float32] * bound).all()


def test_weight_transform_is_rounded_once():
    w = torch.randn(4, 3, 3, 3)
    u64 = wg.transform_weight(w.double(), 4).u
    u16 = wg.transform_weight(w, 4, dtype=torch.bfloat16).u
    assert u16.dtype == torch.bfloat16 and u16.shape == (36, 3, 4)
    torch.testing.assert_close(u16, u64.to(torch.bfloat16), rtol=0, atol=0)


def test_rejects_what_conv2d_rejects():
    ww = wg.transform_weight(torch.randn(4, 3, 3, 3), 2)
    with pytest.raises(ValueError):
        wg.conv2d(torch.randn(1, 5, 8, 8), ww)  # channels
    with pytest.raises(ValueError):
        wg.conv2d(torch.randn(1, 3, 2, 8), ww, padding=0)  # smaller than the kernel
    with pytest.raises(ValueError):
        wg.conv2d(torch.randn(1, 3, 8, 8), ww, padding=2)
    with pytest.raises(ValueError):
        wg.transform_weight(torch.randn(4, 3, 5, 5))


@pytest.mark.parametrize("parallel", [False, True])
def test_inference_mode_and_threads(parallel):
    x, weight, _ = _inputs((1, 8, 30, 20), 8)
    ww = wg.transform_weight(weight, 4)
    threads = torch.get_num_threads()
    with torch.inference_mode():
        y = wg.conv2d(x, ww, None, 1, band_bytes=1, parallel_bands=parallel)
    assert torch.get_num_threads() == threads
    ref, _ = _reference(x, weight, None, 1)
    torch.testing.assert_close(y.double(), ref, rtol=0, atol=1e-4)


@pytest.mark.parametrize("channels_last", [True, False])
@pytest.mark.parametrize("shape", [(2, 6, 8, 13, 17), (1, 4, 12, 7, 8)])
def test_shuffle_writes_the_four_phases_interleaved(channels_last, shape):
    """shuffle=True: output channel (py, px, c) of the conv lands at pixel (2i + py, 2j + px) of channel c."""
    n, cin, cout, h, w = shape
    x, weight, bias = _inputs((n, cin, h, w), cout, channels_last=channels_last)
    ww = wg.transform_weight(weight, 6)
    band = 8**2 * -(-w // 6) * max(cin, cout) * 4 * 2  # several bands, a short last one
    y = wg.conv2d(x, ww, bias, 1, shuffle=True, band_bytes=band)
    plain = wg.conv2d(x, ww, bias, 1)
    assert y.shape == (n, cout // 4, 2 * h, 2 * w)
    assert y.is_contiguous(memory_format=torch.channels_last if channels_last else torch.contiguous_format)
    phases = plain.view(n, 2, 2, cout // 4, h, w)
    for py in (0, 1):
        for px in (0, 1):
            assert torch.equal(y[:, :, py::2, px::2], phases[:, py, px])
    with pytest.raises(ValueError, match="four phases"):
        wg.conv2d(x, wg.transform_weight(weight[:3], 6), None, 1, shuffle=True)


def test_fp32_weights_on_bf16_maps_compute_in_fp32_and_round_once():
    """A bf16 map with an fp32 Winograd weight (kernel choice on a bf16 CPU): the bands widen it as
    they copy it and round the result once as they place it -- a bf16 direct conv's rounding, not
    bf16 Winograd's (2-5x larger)."""
    x, weight, _ = _inputs((1, 16, 21, 27), 24, seed=5, dtype=torch.bfloat16)
    y = wg.conv2d(x, wg.transform_weight(weight, 6), padding=1)
    assert y.dtype == torch.bfloat16 and y.is_contiguous(memory_format=torch.channels_last)
    exact = F.conv2d(x.double(), weight.double(), padding=1)
    # within one bf16 rounding of the exact result (plus fp32 Winograd's error, far smaller)
    assert ((y.double() - exact).abs() <= exact.abs() * 2.0**-8 + 1e-4).all()
