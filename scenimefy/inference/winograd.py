"""Winograd minimal filtering F(m x m, 3 x 3) for stride-1 3x3 convolutions, in pure PyTorch.

Why: the translator's 3x3 convolutions are ~95% of its multiply-adds and oneDNN's direct
convolutions already run them near the CPU's peak, so only less arithmetic helps. Winograd's
minimal filtering algorithms (Lavin & Gray, "Fast Algorithms for Convolutional Neural Networks",
CVPR 2016, arXiv:1509.09308, 2015) compute an m x m output tile from an n x n input tile
(n = m + 2) with n^2 multiplications instead of 9 m^2:

    Y = A^T [ (G g G^T) (.) (B^T d B) ] A          (Lavin & Gray, eq. 8)

Summed over input channels, the element-wise products become n^2 independent GEMMs
(tiles x C_in) @ (C_in x C_out): 2.25x fewer multiplications for F(2x2, 3x3), 4x for F(4x4, 3x3).
The rest -- the input transform B^T d B and the output transform A^T M A -- is memory traffic,
and whether the conv gets faster is decided by how cheaply those run. Here:

* the image is processed in horizontal bands of tile rows, so the transformed input V of a band
  (n^2 x tiles x C_in) and the GEMM output M stay in cache between the three steps, and the
  buffers are reused from band to band (no page faults, bounded memory for any image size);
* bands run concurrently on Python threads with single-threaded ops: a band is ~8 small ops,
  and with multi-threaded ops each would end in an OpenMP barrier, which costs milliseconds
  whenever another process holds a core;
* each transform is separable (a 1-D transform along rows, then along columns) and runs as two
  small matrix products over the whole band (a gather copy + mm + bmm); ``torch.compile`` of the
  transforms was measured: 40-55 s of compilation per shape for no net gain (docs/inference.md);
* the transform matrices come from the Toom-Cook construction for a chosen set of interpolation
  points (Lavin & Gray sec. 4; points 0, +-1, +-2 and infinity give their F(4x4, 3x3) matrices).

Precision: the transforms amplify rounding (the entries of A^T grow like the points' powers), so
larger tiles lose bits: in fp32 the mean error is ~2x (F(4,3)) to ~8x (F(6,3)) that of a direct
conv, ~1e-6 relative, invisible in 8-bit output. In bf16 the GEMM operands U, V and its output M
are each rounded to 8 significant bits: ~2.2x (F(2,3)), ~4x (F(3,3)), ~5x (F(4,3)) the error of a
direct bf16 conv (docs/winograd-notes.md).

Entry points: :func:`transform_weight` (once per weight, cacheable) and :func:`conv2d`.
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from fractions import Fraction

import torch

from scenimefy.inference.runtime import single_threaded_ops
from scenimefy.inference.winograd_transforms import interpolation_points, winograd_matrices

__all__ = ["WinogradWeight", "conv2d", "transform_weight", "winograd_matrices"]

#: Bytes of the largest per-band buffer (V or M) when bands run in parallel, one per core: a
#: few MB keeps a band's working set in cache while each op is still large enough that its
#: launch cost does not matter.
DEFAULT_BAND_BYTES = 8 * 1024**2
#: ... and when bands run one after another with multi-threaded ops: every op then ends in an
#: OpenMP barrier, so fewer, larger bands (this bounds the extra memory: ~3x this).
DEFAULT_SERIAL_BAND_BYTES = 64 * 1024**2


# --------------------------------------------------------------------------- weights


@dataclass(frozen=True)
class WinogradWeight:
    """A 3x3 conv weight in the Winograd domain: U = G g G^T, laid out for the batched GEMM.

    ``u`` is (n*n, C_in, C_out) -- one (C_in x C_out) matrix per tile position xi -- in the
    dtype the GEMMs run in. ``points`` are the interpolation points it was built for.
    """

    u: torch.Tensor
    m: int
    points: tuple[Fraction, ...]

    @property
    def n(self) -> int:
        return self.m + 2

    @property
    def in_channels(self) -> int:
        return self.u.shape[1]

    @property
    def out_channels(self) -> int:
        return self.u.shape[2]


def transform_weight(
    weight: torch.Tensor,
    m: int = 4,
    *,
    dtype: torch.dtype | None = None,
    points: Sequence[float | Fraction] | None = None,
) -> WinogradWeight:
    """Transform a (C_out, C_in, 3, 3) weight once into the Winograd domain of F(m x m, 3 x 3).

    Computed in float64 and rounded once to ``dtype`` (default: the weight's dtype), so a bf16
    U carries one rounding of the exact transform, not of the bf16 weight's transform.
    """
    if weight.dim() != 4 or weight.shape[-2:] != (3, 3):
        raise ValueError(f"expected a (C_out, C_in, 3, 3) weight, got {tuple(weight.shape)}")
    pts = interpolation_points(m, points)
    _, g, _ = winograd_matrices(m, pts)
    g = g.to(weight.device)
    n = m + 2
    u = torch.einsum("ak,oikl,bl->abio", g, weight.detach().double(), g)  # (n, n, C_in, C_out)
    u = u.reshape(n * n, weight.shape[1], weight.shape[0])
    return WinogradWeight(u.to(dtype or weight.dtype).contiguous(), m, pts)


# --------------------------------------------------------------------------- transforms


@dataclass
class _Plan:
    """Per-call constants: transform matrices in the compute dtype, buffers for one band."""

    bt: torch.Tensor  # (n, n)
    bt3: torch.Tensor  # (n, n, n): B^T for each of n batches
    at: torch.Tensor  # (m, n)
    at3n: torch.Tensor  # (n, m, n): A^T for each of n batches
    at3m: torch.Tensor  # (m, m, n)
    bufs: list[torch.Tensor]
    strided_bmm: bool  # contract leading axes with bmm on transposed views (fp32) or mm


def _plan(w: WinogradWeight, dtype: torch.dtype, device: torch.device, numel: int) -> _Plan:
    a_t, _, b_t = winograd_matrices(w.m, w.points)
    m, n = w.m, w.n
    bt = b_t.to(device=device, dtype=dtype)
    at = a_t.to(device=device, dtype=dtype)
    bufs = [torch.empty(numel, dtype=dtype, device=device) for _ in range(2)]
    return _Plan(
        bt,
        bt.expand(n, n, n).contiguous(),
        at,
        at.expand(n, m, n).contiguous(),
        at.expand(m, m, n).contiguous(),
        bufs,
        strided_bmm=dtype == torch.float32,
    )


def _input_transform(src: torch.Tensor, r: int, tw: int, m: int, plan: _Plan) -> torch.Tensor:
    """V = B^T d B for every tile of a band: src (rows, cols, C) -> (n*n, r*tw, C).

    Tile (ty, tx) reads src[m*ty : m*ty + n, m*tx : m*tx + n]. One strided gather puts the
    n x n tile positions first; then B^T runs along the tile columns and the tile rows, each as
    one batched product over the whole band. (fp32: bmm on a transposed view contracts the
    leading axis without a copy, where a plain mm goes to MKL's sgemm, 2x slower on these
    6 x 6 products; bf16: the transposed view makes oneDNN copy it, mm does not.)
    """
    n = m + 2
    c = src.shape[-1]
    sr, sc, sch = src.stride()
    k = n * n * r * tw * c
    d = plan.bufs[0][:k].view(n, n, r, tw, c)
    d.copy_(src.as_strided((n, n, r, tw, c), (sr, sc, m * sr, m * sc, sch), src.storage_offset()))
    d = d.view(n, n, -1)
    e = plan.bufs[1][:k].view(n, n, -1)
    v = plan.bufs[0][:k].view(n, n, -1)
    if plan.strided_bmm:
        torch.bmm(plan.bt3, d.transpose(0, 1), out=e)  # e[j, a] = sum_i B^T[a, i] d[i, j]
        torch.bmm(plan.bt3, e.transpose(0, 1), out=v)  # v[a, b] = sum_j B^T[b, j] e[j, a]
    else:
        torch.bmm(plan.bt3, d, out=e)  # e[i, b] = sum_j B^T[b, j] d[i, j]
        torch.mm(plan.bt, e.view(n, -1), out=v.view(n, -1))  # v[a, b] = sum_i B^T[a, i] e[i, b]
    return v.view(n * n, r * tw, c)


def _output_transform(mm: torch.Tensor, r: int, tw: int, m: int, plan: _Plan) -> torch.Tensor:
    """Y = A^T M A for every tile of a band: (n*n, r*tw, C) -> (r, m, tw, m, C) view."""
    n = m + 2
    c = mm.shape[-1]
    t = mm.view(n, n, -1)
    f = plan.bufs[1][: m * n * r * tw * c].view(n, m, -1)
    y = plan.bufs[0][: m * m * r * tw * c].view(m, m, -1)
    if plan.strided_bmm:
        torch.bmm(plan.at3n, t.transpose(0, 1), out=f)  # f[b, i] = sum_a A^T[i, a] t[a, b]
        torch.bmm(plan.at3m, f.transpose(0, 1), out=y)  # y[i, j] = sum_b A^T[j, b] f[b, i]
    else:
        torch.bmm(plan.at3n, t, out=f)  # f[a, j] = sum_b A^T[j, b] t[a, b]
        torch.mm(plan.at, f.view(n, -1), out=y.view(m, -1))  # y[i, j] = sum_a A^T[i, a] f[a, j]
    return y.view(m, m, r, tw, c).permute(2, 0, 3, 1, 4)


# --------------------------------------------------------------------------- convolution


def _check(x: torch.Tensor, w: WinogradWeight, padding: int) -> tuple[int, int]:
    if x.dim() != 4 or x.shape[1] != w.in_channels:
        raise ValueError(f"expected a (N, {w.in_channels}, H, W) input, got {tuple(x.shape)}")
    if padding not in (0, 1):
        raise ValueError(f"padding must be 0 or 1, got {padding}")
    ho, wo = x.shape[2] + 2 * padding - 2, x.shape[3] + 2 * padding - 2
    if ho < 1 or wo < 1:
        raise ValueError(f"input {tuple(x.shape[2:])} with padding {padding} is smaller than the 3x3 kernel")
    return ho, wo


def conv2d(
    x: torch.Tensor,
    weight: WinogradWeight,
    bias: torch.Tensor | None = None,
    padding: int = 0,
    *,
    shuffle: bool = False,
    band_bytes: int | None = None,
    parallel_bands: bool | None = None,
) -> torch.Tensor:
    """``F.conv2d(x, w, bias, padding=padding)`` for a 3x3 ``w`` given as ``transform_weight(w)``.

    x: (N, C_in, H, W), any H, W (>= 3 - 2 * padding), NCHW or channels_last, fp32 or bf16.
    Returns (N, C_out, H + 2p - 2, W + 2p - 2) in x's dtype and memory format. The transforms
    and the GEMMs run in ``weight.u.dtype``: a bf16 x with an fp32 weight is widened in the copy
    each band makes of its rows and rounded once in the copy that places its tiles, so fp32
    Winograd serves a bf16 path at no extra pass over the maps. Inference only (no autograd: the ops
    write into preallocated buffers).

    shuffle: the output channels are four phases of a twice larger image, ordered (row phase,
        column phase, channel): returns (N, C_out / 4, 2 (H + 2p - 2), 2 (W + 2p - 2)) with
        phase (py, px) of channel c at rows 2i + py, columns 2j + px (``bias``, if any, has the
        C_out entries in the same order). The interleaving happens in the copy that places each
        band's tiles anyway, so it costs nothing extra.

    band_bytes: size of the largest per-band buffer (V or M); default: :data:`DEFAULT_BAND_BYTES`
        with ``parallel_bands``, else :data:`DEFAULT_SERIAL_BAND_BYTES`.
    parallel_bands: run bands concurrently on ``torch.get_num_threads()`` Python threads with
        single-threaded ops (default: on CPU with more than one thread). Each op of a band is
        then a plain loop with no OpenMP barrier: on a busy machine, where every barrier of a
        2-thread op waits for a descheduled thread (~ms each), this is what keeps the ~8 ops a
        band needs cheap; when idle, each core keeps its own band in cache.
    """
    ho, wo = _check(x, weight, padding)
    m, n = weight.m, weight.n
    batch, cin = x.shape[:2]
    cout = weight.out_channels
    if shuffle and cout % 4:
        raise ValueError(f"shuffle needs output channels in four phases, got {cout}")
    th, tw = -(-ho // m), -(-wo // m)  # tiles; the last row / column of tiles may overhang
    channels_last = x.is_contiguous(memory_format=torch.channels_last) and cin > 1
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    shape = (batch, cout // 4, 2 * ho, 2 * wo) if shuffle else (batch, cout, ho, wo)
    out = torch.empty(shape, dtype=x.dtype, device=x.device, memory_format=fmt)
    threads = torch.get_num_threads() if x.device.type == "cpu" else 1
    if parallel_bands is None:
        parallel_bands = threads > 1
    if band_bytes is None:
        band_bytes = DEFAULT_BAND_BYTES if parallel_bands else DEFAULT_SERIAL_BAND_BYTES

    # Band height: tile rows per band such that V and M fit ``band_bytes``, and in parallel
    # mode at least two bands per thread (a small image would otherwise run on one core).
    per_row = n * n * tw * max(cin, cout) * weight.u.element_size()
    rows_per_band = max(1, min(th, band_bytes // per_row))
    if parallel_bands and threads > 1:
        rows_per_band = max(1, min(rows_per_band, -(-th * batch // (2 * threads))))
    jobs = [(b, t0) for b in range(batch) for t0 in range(0, th, rows_per_band)]
    u = weight.u
    band = _Band(x, out, weight, u, bias, padding, rows_per_band, shuffle)
    if not parallel_bands or len(jobs) < 2 or threads < 2:
        for job in jobs:
            band(*job)
        return out
    workers = min(threads, len(jobs))
    queue = iter(jobs)
    lock = threading.Lock()
    inference_mode = torch.is_inference_mode_enabled()  # thread-local: pass it on

    def work() -> None:
        local = band.fork()  # own buffers
        with torch.inference_mode(inference_mode), torch.no_grad():
            while True:
                with lock:
                    job = next(queue, None)
                if job is None:
                    return
                local(*job)

    with single_threaded_ops():
        pool = _pool(workers)
        for f in [pool.submit(work) for _ in range(workers)]:
            f.result()
    return out


_POOL: ThreadPoolExecutor | None = None


def _pool(workers: int) -> ThreadPoolExecutor:
    global _POOL
    if _POOL is None or _POOL._max_workers < workers:
        _POOL = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="winograd")
    return _POOL


class _Band:
    """Computes the output rows of one band of tile rows, with its own reusable buffers."""

    def __init__(self, x, out, weight, u, bias, padding, rows_per_band, shuffle=False) -> None:
        self.x, self.out, self.weight, self.u, self.bias, self.p = x, out, weight, u, bias, padding
        self.rows_per_band, self.shuffle = rows_per_band, shuffle
        m, n = weight.m, weight.n
        self.ho, self.wo = x.shape[2] + 2 * padding - 2, x.shape[3] + 2 * padding - 2
        self.th, self.tw = -(-self.ho // m), -(-self.wo // m)
        self.xh, self.oh = x.permute(0, 2, 3, 1), out.permute(0, 2, 3, 1)  # (N, H, W, C) views
        if shuffle:  # (N, 2H, 2W, C) -> (N, H, W, 2, 2, C): indexed like an unshuffled output
            self.oh = self.oh.unflatten(1, (self.ho, 2)).unflatten(3, (self.wo, 2)).transpose(2, 3)
        cin, cout = weight.in_channels, weight.out_channels
        # A bias b adds b * e e^T to M for any e with A^T e = 1 (then A^T (e e^T) A = 1): with the
        # point 1, e is the unit vector of its column; otherwise the least-norm solution.
        ones = torch.ones(m, dtype=torch.float64)
        e = torch.linalg.lstsq(winograd_matrices(m, weight.points)[0], ones[:, None]).solution[:, 0]
        e[e.abs() < 1e-12] = 0
        self.bias_terms = [(a * n + b, float(e[a] * e[b])) for a in range(n) for b in range(n) if e[a] and e[b]]
        self.dtype = u.dtype  # the transforms' and GEMMs' (x and out may differ: converted in the copies)
        self.plan = _plan(weight, self.dtype, x.device, n * n * rows_per_band * self.tw * max(cin, cout))
        self.gemm_out = torch.empty(n * n * rows_per_band * self.tw * cout, dtype=self.dtype, device=x.device)
        # Input rows and columns a band reads: [m*t0 - p, m*t0 - p + m*r + 2) x [-p, m*tw + 2 - p).
        # Where that leaves the image (zero padding, overhanging tiles) or x is not channels_last,
        # the band is first copied into a zero-bordered buffer (reused from band to band; its
        # column margins are zeroed once, rows outside the image where a band needs them).
        self.wpad = m * self.tw + 2
        xh = self.xh
        self.direct_cols = (
            padding == 0
            and self.wpad == x.shape[3]
            and xh.stride(2) == cin
            and xh.stride(3) == 1
            and x.dtype == u.dtype
        )
        self.padded: torch.Tensor | None = None

    def fork(self) -> _Band:
        twin = copy.copy(self)
        n, cin, cout = self.weight.n, self.weight.in_channels, self.weight.out_channels
        twin.plan = _plan(self.weight, self.dtype, self.x.device, n * n * self.rows_per_band * self.tw * max(cin, cout))
        twin.gemm_out = torch.empty_like(self.gemm_out)
        twin.padded = None
        return twin

    def __call__(self, b: int, t0: int) -> None:
        m, n, p = self.weight.m, self.weight.n, self.p
        h, w, cin, cout, tw = (
            self.x.shape[2],
            self.x.shape[3],
            self.weight.in_channels,
            self.weight.out_channels,
            self.tw,
        )
        r = min(self.rows_per_band, self.th - t0)
        rows = m * r + 2
        a0 = m * t0 - p
        lo, hi = max(a0, 0), min(a0 + rows, h)
        if self.direct_cols and lo == a0 and hi == a0 + rows:
            src = self.xh[b, a0 : a0 + rows]
        else:
            padded = self.padded
            if padded is None:
                padded = self.padded = torch.empty(
                    (m * self.rows_per_band + 2, self.wpad, cin), dtype=self.dtype, device=self.x.device
                )
                padded[:, :p].zero_()
                padded[:, p + w :].zero_()
            if lo > a0:
                padded[: lo - a0].zero_()
            if hi < a0 + rows:
                padded[hi - a0 : rows].zero_()
            padded[lo - a0 : hi - a0, p : p + w].copy_(self.xh[b, lo:hi])
            src = padded[:rows]
        v = _input_transform(src, r, tw, m, self.plan)
        mm = self.gemm_out[: n * n * r * tw * cout].view(n * n, r * tw, cout)
        torch.bmm(v, self.u, out=mm)
        if self.bias is not None:
            for xi, coef in self.bias_terms:
                mm[xi].add_(self.bias.to(mm.dtype), alpha=coef)
        y = _output_transform(mm, r, tw, m, self.plan)
        if self.shuffle:
            y = y.unflatten(-1, (2, 2, cout // 4))
        _scatter(y, self.oh[b], m * t0, min(m * r, self.ho - m * t0), self.wo, m)


def _scatter(y: torch.Tensor, out: torch.Tensor, r0: int, nrows: int, ncols: int, m: int) -> None:
    """Write a band's tiles y (r, m, tw, m, *C) into out[r0 : r0 + nrows, :ncols] (H, W, *C view).

    Overhanging parts of the last tile row / column are dropped: whole tiles in one copy, the
    ragged right column and bottom row in up to three small ones.
    """
    full_r, rem_r = divmod(nrows, m)
    full_c, rem_c = divmod(ncols, m)
    body = out[r0 : r0 + full_r * m]
    tail = out[r0 + full_r * m : r0 + nrows]
    if full_r and full_c:
        body[:, : full_c * m].unflatten(0, (full_r, m)).unflatten(2, (full_c, m)).copy_(y[:full_r, :, :full_c])
    if full_r and rem_c:
        body[:, full_c * m :].unflatten(0, (full_r, m)).copy_(y[:full_r, :, full_c, :rem_c])
    if rem_r and full_c:
        tail[:, : full_c * m].unflatten(1, (full_c, m)).copy_(y[full_r, :rem_r, :full_c])
    if rem_r and rem_c:
        tail[:, full_c * m :].copy_(y[full_r, :rem_r, full_c, :rem_c])
