"""Running the translator on image tensors: the one place that decides how inference executes.

``translate(model, x)`` takes a (B, 3, H, W) batch in [-1, 1] with H, W multiples of 4 and
returns the translated batch in [-1, 1], float32, on the input's device. It computes what
``model(x)`` computes, restructured for speed and memory (docs/inference.md has the numbers):

* dtype: bf16 on CPUs with native bf16 dot products (AVX512-BF16 / AMX), fp16 on CUDA, fp32
  elsewhere and in ``exact`` mode. Layout: channels_last wherever oneDNN / cuDNN run convs.
* No layout or dtype round trips. ``F.instance_norm`` reshapes to (1, B*C, H, W), which forces a
  channels_last tensor into a contiguous copy; on one sample ``F.batch_norm(training=True)``
  computes the same per-channel statistics directly in channels_last, so every image runs alone.
* The blur-pool and blur-upsample filters are separable ([1,2,1] and [1,3,3,1]): strided
  slices and adds replace the depthwise (transposed) convs, and their 1/16 normalisation is
  folded into the neighbouring norm or conv weight. Conv biases in front of an InstanceNorm
  cancel and are dropped.
* Large images run in tiles with whole-image InstanceNorm statistics (see ``_tiled``), so the
  result matches the untiled one while memory stays within ``memory_budget``.
"""

from __future__ import annotations

import ctypes
import os
import sys
import threading
import weakref
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Callable, Iterator

import torch
import torch.nn.functional as F

from .models.translator import BlurDownsample, BlurUpsample, ScenimefyTranslator

EPS = 1e-5  # InstanceNorm epsilon of the translator
#: ``norm_stats(layer, mean, var) -> (mean, var)``, the optional hook of :func:`translate`.
NormStatsHook = Callable[[int, torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]
#: Default activation budget per image on CPU; CUDA uses half of the free device memory.
DEFAULT_MEMORY_BUDGET = 3 * 1024**3
#: Tiles larger than this gain nothing measurable (halos are a few percent at 1k-pixel tiles).
MAX_TILE_WORKSPACE = 512 * 1024**2


# --------------------------------------------------------------------------- capabilities


def cpu_has_fast_bf16() -> bool:
    """Whether this CPU multiplies bf16 natively (AVX512-BF16 or AMX) and oneDNN can use it.

    Without it bf16 convs are emulated and slower than fp32, so the fast path stays in fp32.
    """
    if not torch.backends.mkldnn.is_available():
        return False
    probes = ("_is_amx_tile_supported", "_is_avx512_bf16_supported")  # torch >= 2.1
    for name in probes:
        probe = getattr(torch.cpu, name, None)
        try:
            if probe is not None and probe():
                return True
        except RuntimeError:
            pass
    return False


@dataclass(frozen=True)
class ExecutionSettings:
    """How ``translate`` runs on one device: compute dtype and memory layout."""

    dtype: torch.dtype
    channels_last: bool


def choose_settings(
    device: torch.device, *, exact: bool = False, dtype: torch.dtype | None = None
) -> ExecutionSettings:
    """The fastest settings for ``device`` (``exact``: fp32; ``dtype`` overrides the choice)."""
    if exact:
        dtype = torch.float32
    elif dtype is None:
        if device.type == "cuda":
            dtype = torch.float16
        elif device.type == "cpu":
            dtype = torch.bfloat16 if cpu_has_fast_bf16() else torch.float32
        else:
            dtype = torch.float32
    if device.type == "cpu":
        # oneDNN's channels_last kernels are the fast ones for both fp32 and bf16 here.
        channels_last = torch.backends.mkldnn.is_available()
    else:
        channels_last = device.type == "cuda" and dtype in (torch.float16, torch.bfloat16)
    return ExecutionSettings(dtype, channels_last)


# --------------------------------------------------------------------------- tile geometry


@dataclass(frozen=True)
class _Span:
    """Rows (or columns) [start, stop) of an image of extent ``size`` held by a tensor axis."""

    start: int
    stop: int
    size: int

    @property
    def head(self) -> bool:  # the image's first line is here: pad like the network does
        return self.start == 0

    @property
    def tail(self) -> bool:
        return self.stop == self.size


def _sl(x: torch.Tensor, dim: int, start: int | None, stop: int | None, step: int = 1) -> torch.Tensor:
    index = [slice(None)] * x.dim()
    index[dim] = slice(start, stop, step)
    return x[tuple(index)]


def _crop(x: torch.Tensor, rows: _Span, cols: _Span, to_rows: _Span, to_cols: _Span) -> torch.Tensor:
    """The part of ``x`` (covering rows x cols) that lies on to_rows x to_cols."""
    r, c = to_rows.start - rows.start, to_cols.start - cols.start
    if r < 0 or c < 0 or to_rows.stop > rows.stop or to_cols.stop > cols.stop:
        raise AssertionError("tile halo too small for the requested region")
    return x[:, :, r : r + to_rows.stop - to_rows.start, c : c + to_cols.stop - to_cols.start]


def _dense(x: torch.Tensor) -> torch.Tensor:
    """``x`` itself if dense, else a dense copy in the same layout.

    batch_norm falls back to a slow generic kernel on a cropped view (a tile's core or a conv
    output cut at a tile edge): 18x slower than copying first and running the dense kernel.
    """
    if x.is_contiguous() or x.is_contiguous(memory_format=torch.channels_last):
        return x
    return x.contiguous(memory_format=torch.channels_last if x.stride(1) == 1 else torch.contiguous_format)


@dataclass
class _Context:
    """Per-run state: InstanceNorm statistics known so far and saved residual inputs."""

    stats: dict[int, tuple[torch.Tensor, torch.Tensor]] = field(default_factory=dict)
    saved: dict[int, tuple[torch.Tensor, _Span, _Span]] = field(default_factory=dict)
    keep_saved: bool = False  # tiles of one segment all read the same saved map
    norm_stats: NormStatsHook | None = None  # see translate()

    def put_stats(self, index: int, mean: torch.Tensor, var: torch.Tensor) -> None:
        """Store norm ``index``'s whole-image statistics (C,), passed through the hook if any."""
        if self.norm_stats is not None:
            mean, var = self.norm_stats(index, mean[None].float(), var[None].float())
            mean, var = mean[0], var[0]
        self.stats[index] = (mean, var)


# --------------------------------------------------------------------------- operations
# Each op maps (x, rows, cols) -> (x, rows, cols) for one sample. On an image border it pads the
# way the network does; on a tile edge inside the image it pads nothing and its output shrinks
# by what it could not compute (the halo). ``factor`` is its change of resolution and
# ``halo(m)`` the input margin that leaves a margin ``m`` on its output.


class _Op:
    factor = 1.0

    def halo(self, m: int) -> int:
        return m


class _Conv(_Op):
    """Stride-1 'same' conv, reflect (stem, head, residual blocks) or zero padded (up/down convs)."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None, reflect: bool) -> None:
        self.weight, self.bias, self.reflect = weight, bias, reflect
        self.pad = weight.shape[-1] // 2
        self.out_channels = co = weight.shape[0]
        # The 3-channel head fills 3 of the 16 lanes oneDNN computes at once. Folding the kernel
        # columns into output channels -- a (k, 1) conv to k*3 maps, then a sum of k shifted
        # slices in fp32 -- halves its time (and rounds once less in bf16).
        self.folded = None
        if reflect and co < 8 and self.pad:
            k = weight.shape[-1]
            fmt = torch.channels_last if weight.is_contiguous(memory_format=torch.channels_last) else None
            folded = weight.permute(3, 0, 1, 2).reshape(k * co, weight.shape[1], k, 1)
            self.folded = folded.contiguous(memory_format=fmt or torch.contiguous_format)

    def halo(self, m: int) -> int:
        return m + self.pad

    def __call__(self, x, rows, cols, ctx):
        p = self.pad
        if self.reflect:
            # One reflect-pad copy, on image borders only. (Tried: zero-padded conv plus border
            # lines recomputed from small reflect-padded strips; it saves the copy but its dozen
            # small ops per conv cost more, on a shared machine much more.)
            pads = (p if cols.head else 0, p if cols.tail else 0, p if rows.head else 0, p if rows.tail else 0)
            x = F.pad(x, pads, mode="reflect") if any(pads) else x
            y = F.conv2d(x, self.weight, self.bias) if self.folded is None else self._folded_conv(x)
        else:
            # Zero padding is free inside the conv, but it is symmetric per axis: on a tile
            # edge inside the image the extra lines it computes are cropped.
            ph = p if rows.head or rows.tail else 0
            pw = p if cols.head or cols.tail else 0
            y = F.conv2d(x, self.weight, self.bias, padding=(ph, pw))
            top = p if ph and not rows.head else 0
            bottom = p if ph and not rows.tail else 0
            left = p if pw and not cols.head else 0
            right = p if pw and not cols.tail else 0
            if top or bottom or left or right:
                y = y[:, :, top : y.shape[2] - bottom, left : y.shape[3] - right]
        rows = _Span(rows.start + (0 if rows.head else p), rows.stop - (0 if rows.tail else p), rows.size)
        cols = _Span(cols.start + (0 if cols.head else p), cols.stop - (0 if cols.tail else p), cols.size)
        return y, rows, cols

    def _folded_conv(self, x: torch.Tensor) -> torch.Tensor:
        co, k = self.out_channels, 2 * self.pad + 1
        z = F.conv2d(x, self.folded).float()  # (1, k*co, h, w + k - 1): column tap j in group j
        w = z.shape[3] - (k - 1)
        y = z[:, :co, :, :w].clone()
        for j in range(1, k):
            y += z[:, j * co : (j + 1) * co, :, j : j + w]
        return y if self.bias is None else y.add_(self.bias.float().view(1, -1, 1, 1))


class _StridedConv(_Op):
    """Stride-2 3x3 conv with zero padding 1 (the non-anti-aliased down block)."""

    factor = 0.5

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None) -> None:
        self.weight, self.bias = weight, bias

    def halo(self, m: int) -> int:
        return 2 * m + 2

    def __call__(self, x, rows, cols, ctx):
        pads, spans = [], []
        for dim, span in ((2, rows), (3, cols)):
            j0, j1, a = _down_range(span)  # output j reads input 2j-1 .. 2j+1
            x = _sl(x, dim, max(a - 1, 0), a + 2 * (j1 - j0))
            pads.append((1 if span.head else 0, 1 if span.tail else 0))
            spans.append(_Span(j0, j1, span.size // 2))
        x = F.pad(x, (*pads[1], *pads[0]))
        y = F.conv2d(x, self.weight, self.bias, stride=2)
        return y[:, :, : spans[0].stop - spans[0].start, : spans[1].stop - spans[1].start], spans[0], spans[1]


class _TransposedConv(_Op):
    """3x3 transposed conv, stride 2, padding 1, output padding 1 (the non-anti-aliased up block)."""

    factor = 2.0

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None) -> None:
        self.weight, self.bias = weight, bias

    def halo(self, m: int) -> int:
        return (m + 1) // 2 + 1

    def __call__(self, x, rows, cols, ctx):
        # Output 2m reads x[m], output 2m+1 reads x[m], x[m+1]: only the last line of an interior
        # tail depends on a missing input.
        y = F.conv_transpose2d(x, self.weight, self.bias, stride=2, padding=1, output_padding=1)
        y = y[:, :, : y.shape[2] - (0 if rows.tail else 1), : y.shape[3] - (0 if cols.tail else 1)]
        rows = _Span(2 * rows.start, 2 * rows.stop - (0 if rows.tail else 1), 2 * rows.size)
        cols = _Span(2 * cols.start, 2 * cols.stop - (0 if cols.tail else 1), 2 * cols.size)
        return y, rows, cols


def _down_range(span: _Span) -> tuple[int, int, int]:
    """Outputs [j0, j1) a stride-2, radius-1 op can produce from ``span``; local index of row 2*j0."""
    j0 = 0 if span.head else (span.start + 2) // 2
    j1 = span.size // 2 if span.tail else span.stop // 2
    return j0, j1, 2 * j0 - span.start


class _BlurDown(_Op):
    """Blur-pool: reflect pad 1, [1,2,1] x [1,2,1], stride 2, as slices and adds per axis.

    The /16 normalisation is folded into the preceding norm (ReLU commutes with a positive scale).
    """

    factor = 0.5

    def halo(self, m: int) -> int:
        return 2 * m + 2

    def __call__(self, x, rows, cols, ctx):
        x, rows = self._axis(x, 2, rows)  # rows first: the column pass then runs on half the data
        x, cols = self._axis(x, 3, cols)
        return x, rows, cols

    @staticmethod
    def _axis(x: torch.Tensor, dim: int, span: _Span) -> tuple[torch.Tensor, _Span]:
        j0, j1, a = _down_range(span)
        n = j1 - j0
        even = _sl(x, dim, a, a + 2 * n - 1, 2)  # x[2j]
        odd = _sl(x, dim, a + 1, a + 2 * n, 2)  # x[2j+1]
        out = torch.add(odd, even, alpha=2)
        if a >= 1:
            out += _sl(x, dim, a - 1, a + 2 * n - 2, 2)  # x[2j-1]
        else:  # image border: x[-1] reflects to x[1]
            _sl(out, dim, 1, None).add_(_sl(odd, dim, 0, n - 1))
            _sl(out, dim, 0, 1).add_(_sl(odd, dim, 0, 1))
        return out, _Span(j0, j1, span.size // 2)


class _BlurUp(_Op):
    """Blur upsampling x2: replicate pad, [1,3,3,1] phases per axis, written interleaved.

    Per axis out[2m] = x[m-1] + 3 x[m] and out[2m+1] = 3 x[m] + x[m+1]; the /16 normalisation is
    folded into the following conv's weight.
    """

    factor = 2.0

    def halo(self, m: int) -> int:
        return (m + 1) // 2 + 1

    def __call__(self, x, rows, cols, ctx):
        x, rows = self._axis(x, 2, rows)
        x, cols = self._axis(x, 3, cols)
        return x, rows, cols

    @staticmethod
    def _axis(x: torch.Tensor, dim: int, span: _Span) -> tuple[torch.Tensor, _Span]:
        shape = list(x.shape)
        shape[dim] *= 2
        fmt = torch.channels_last if x.is_contiguous(memory_format=torch.channels_last) else torch.contiguous_format
        out = torch.empty(shape, dtype=x.dtype, device=x.device, memory_format=fmt)
        even, odd = _sl(out, dim, 0, None, 2), _sl(out, dim, 1, None, 2)
        first, last, prev, nxt = _sl(x, dim, 0, 1), _sl(x, dim, -1, None), _sl(x, dim, 0, -1), _sl(x, dim, 1, None)
        torch.add(prev, nxt, alpha=3, out=_sl(even, dim, 1, None))
        torch.add(nxt, prev, alpha=3, out=_sl(odd, dim, 0, -1))
        torch.mul(first, 4, out=_sl(even, dim, 0, 1))  # replicate padding: x[-1] = x[0]
        torch.mul(last, 4, out=_sl(odd, dim, -1, None))
        lo = 0 if span.head else 1  # on a tile edge the outermost line lacked its neighbour
        hi = out.shape[dim] - (0 if span.tail else 1)
        out = _sl(out, dim, lo, hi)
        return out, _Span(2 * span.start + lo, 2 * span.stop - (0 if span.tail else 1), 2 * span.size)


class _Norm(_Op):
    """InstanceNorm (no affine) times ``scale``, optionally followed by ReLU, on one sample."""

    def __init__(self, index: int, relu: bool, channels: int, scale: float, device: torch.device) -> None:
        self.index, self.relu, self.channels = index, relu, channels
        self.weight = None if scale == 1.0 else torch.full((channels,), scale, device=device)

    def __call__(self, x, rows, cols, ctx):
        x = _dense(x)
        stats = ctx.stats.get(self.index)
        if stats is None and ctx.norm_stats is not None:  # whole image, statistics for the hook
            moments = _Moments()
            moments.add(x)
            ctx.put_stats(self.index, *moments.result())
            stats = ctx.stats[self.index]
        if stats is None:  # the tensor is the whole image: its own statistics
            y = F.batch_norm(x, None, None, self.weight, None, True, 0.0, EPS)
        else:
            y = F.batch_norm(x, stats[0], stats[1], self.weight, None, False, 0.0, EPS)
        if self.relu:
            y.relu_()
        return y, rows, cols


class _Save(_Op):
    def __init__(self, slot: int) -> None:
        self.slot = slot

    def __call__(self, x, rows, cols, ctx):
        ctx.saved[self.slot] = (x, rows, cols)
        return x, rows, cols


class _AddSaved(_Op):
    def __init__(self, slot: int) -> None:
        self.slot = slot

    def __call__(self, x, rows, cols, ctx):
        saved, srows, scols = ctx.saved[self.slot] if ctx.keep_saved else ctx.saved.pop(self.slot)
        x.add_(_crop(saved, srows, scols, rows, cols))  # x is the norm's fresh output
        return x, rows, cols


class _Tanh(_Op):
    def __call__(self, x, rows, cols, ctx):
        # In fp32: a bf16 tanh rounds the result by up to 0.25 of an 8-bit level (3 channels: cheap).
        return x.float().tanh_(), rows, cols


def _run(ops: list[_Op], x: torch.Tensor, rows: _Span, cols: _Span, ctx: _Context):
    for op in ops:
        x, rows, cols = op(x, rows, cols, ctx)
    return x, rows, cols


# --------------------------------------------------------------------------- model -> ops


def _build_ops(model: ScenimefyTranslator, settings: ExecutionSettings, device: torch.device) -> list[_Op]:
    """The translator as a flat op list with weights in the compute dtype and layout."""
    fmt = torch.channels_last if settings.channels_last else torch.contiguous_format

    def weight(conv, scale: float = 1.0) -> torch.Tensor:
        w = conv.weight.detach().to(device=device, dtype=torch.float32) * scale
        return w.to(settings.dtype).contiguous(memory_format=fmt)

    def bias(conv) -> torch.Tensor | None:
        return None if conv.bias is None else conv.bias.detach().to(device=device, dtype=settings.dtype)

    norms = 0

    def norm(channels: int, relu: bool = True, scale: float = 1.0) -> _Norm:
        nonlocal norms
        norms += 1
        return _Norm(norms - 1, relu, channels, scale, device)

    # A conv bias in front of an InstanceNorm shifts every pixel of a channel equally and is
    # removed by the mean subtraction: those convs run without it.
    stem = model.stem
    ops: list[_Op] = [_Conv(weight(stem), None, reflect=True), norm(stem.out_channels)]
    for block in model.down:
        antialias = isinstance(block.blur, BlurDownsample)
        c = block.conv.out_channels
        if antialias:
            ops += [_Conv(weight(block.conv), None, reflect=False), norm(c, scale=1 / 16), _BlurDown()]
        else:
            ops += [_StridedConv(weight(block.conv), None), norm(c)]
    for i, block in enumerate(model.blocks):
        c = block.conv1.out_channels
        ops += [
            _Save(i),
            _Conv(weight(block.conv1), None, reflect=True),
            norm(c),
            _Conv(weight(block.conv2), None, reflect=True),
            norm(c, relu=False),
            _AddSaved(i),
        ]
    for block in model.up:
        c = block.conv.out_channels
        if isinstance(block.upsample, BlurUpsample):
            ops += [_BlurUp(), _Conv(weight(block.conv, 1 / 16), None, reflect=False), norm(c)]
        else:
            ops += [_TransposedConv(weight(block.conv), None), norm(c)]
    ops += [_Conv(weight(model.head), bias(model.head), reflect=True), _Tanh()]
    return ops


_CACHE: "weakref.WeakKeyDictionary[ScenimefyTranslator, dict]" = weakref.WeakKeyDictionary()


def _ops_for(model: ScenimefyTranslator, settings: ExecutionSettings, device: torch.device) -> list[_Op]:
    """Prepared ops, cached per model and settings until a parameter changes (e.g. training)."""
    version = tuple((p.data_ptr(), p._version) for p in model.parameters())
    per_model = _CACHE.setdefault(model, {})
    key = (settings, str(device))
    hit = per_model.get(key)
    if hit is None or hit[0] != version:
        hit = per_model[key] = (version, _build_ops(model, settings, device))
    return hit[1]


# --------------------------------------------------------------------------- public entry


@contextmanager
def _no_tf32(device: torch.device, exact: bool) -> Iterator[None]:
    """Exact mode on CUDA: cuDNN would otherwise run fp32 convs in TF32 (10-bit mantissa)."""
    if not (exact and device.type == "cuda"):
        yield
        return
    before = torch.backends.cudnn.allow_tf32
    torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32 = before


# glibc hands every block above 32 MB to the OS on free() and maps fresh pages for the next one;
# faulting them in costs ~0.7 ms per MB on this machine, more than an elementwise op's own work
# (F.batch_norm on a 64 MB map: 43 ms with fresh pages, 10 ms with reused ones; a conv output
# pays the same). During ``translate`` large blocks therefore come from the heap, where freed
# ones are reused, and afterwards the defaults are restored and the free memory is returned.
_M_TRIM_THRESHOLD, _M_MMAP_MAX = -1, -4  # mallopt parameters (malloc.h)
_GLIBC_DEFAULTS = {_M_MMAP_MAX: 65536, _M_TRIM_THRESHOLD: 128 * 1024}
_heap_lock = threading.Lock()
_heap_users = 0


def _glibc():
    if not sys.platform.startswith("linux") or os.environ.get("SCENIMEFY_MALLOC_TUNING", "1") == "0":
        return None
    try:
        libc = ctypes.CDLL(None)
        libc.gnu_get_libc_version  # only glibc has these knobs
        return libc if hasattr(libc, "mallopt") and hasattr(libc, "malloc_trim") else None
    except (OSError, AttributeError):
        return None


_LIBC = _glibc()


@contextmanager
def _reuse_freed_memory(device: torch.device, enable: bool = True) -> Iterator[None]:
    global _heap_users
    if _LIBC is None or device.type != "cpu" or not enable:
        yield
        return
    with _heap_lock:
        _heap_users += 1
        if _heap_users == 1:
            _LIBC.mallopt(_M_MMAP_MAX, 0)
            _LIBC.mallopt(_M_TRIM_THRESHOLD, 2**31 - 1)
    try:
        yield
    finally:
        with _heap_lock:
            _heap_users -= 1
            if _heap_users == 0:
                for param, value in _GLIBC_DEFAULTS.items():
                    _LIBC.mallopt(param, value)
                _LIBC.malloc_trim(0)


@torch.inference_mode()
def translate(
    model: ScenimefyTranslator,
    x: torch.Tensor,
    *,
    exact: bool = False,
    dtype: torch.dtype | None = None,
    memory_budget: int | None = None,
    tile_size: int | None = None,
    norm_stats: NormStatsHook | None = None,
) -> torch.Tensor:
    """Translate ``x`` (B, 3, H, W) in [-1, 1] -> float32 (B, 3, H, W) in [-1, 1] on x's device.

    Args:
        exact: fp32 throughout (the reference demo's numbers, to ~1e-5); else the device's
            fastest dtype (bf16 / fp16): ~1.4 8-bit levels of mean difference on photos.
        dtype: compute dtype override (ignored when ``exact``).
        memory_budget: bytes of activations one image may use; larger images run tiled.
            Default 3 GiB on CPU (env SCENIMEFY_MEMORY_BUDGET), half the free memory on CUDA.
        tile_size: force tiling with tiles of this many pixels a side (multiple of 16).
        norm_stats: a hook on the InstanceNorm statistics (default None: each image its own,
            unchanged behaviour). ``norm_stats(layer, mean, var)`` is called once per norm layer
            and sample, in network order (layer = 0, 1, ..., samples one after another), with
            that sample's whole-image per-channel mean and biased variance as (1, C) float32,
            and returns the (1, C) mean and variance to normalise with. Video stabilisation
            uses it to smooth the statistics across frames (scenimefy.video.NormStatsSmoother).
    """
    if not x.is_floating_point():
        raise TypeError(f"expected a floating point image in [-1, 1], got {x.dtype}")
    if x.dim() != 4 or x.shape[1] != model.config.in_channels:
        raise ValueError(f"expected a (B, {model.config.in_channels}, H, W) batch, got shape {tuple(x.shape)}")
    h, w = x.shape[-2:]
    if h % 4 or w % 4 or h < 16 or w < 16:
        raise ValueError(f"H and W must be multiples of 4 and at least 16, got {h}x{w}")
    if tile_size is not None and (tile_size < 16 or tile_size % 16):
        raise ValueError(f"tile_size must be a multiple of 16, got {tile_size}")
    device = next(model.parameters()).device
    settings = choose_settings(device, exact=exact, dtype=dtype)
    ops = _ops_for(model, settings, device)
    budget = memory_budget if memory_budget is not None else _default_budget(device)
    fmt = torch.channels_last if settings.channels_last else torch.contiguous_format
    out = torch.empty((x.shape[0], model.config.out_channels, h, w), dtype=torch.float32, device=x.device)
    itemsize = torch.empty((), dtype=settings.dtype).element_size()
    untiled = tile_size is None and _untiled_bytes(ops, h, w, x.shape[1], itemsize) <= budget
    with _no_tf32(device, exact), _reuse_freed_memory(device):
        for b in range(x.shape[0]):
            xb = x[b : b + 1].to(device=device, dtype=settings.dtype, memory_format=fmt)
            if untiled:
                rows, cols = _Span(0, h, h), _Span(0, w, w)
                yb = _run(ops, xb, rows, cols, _Context(norm_stats=norm_stats))[0]
            else:
                yb = _tiled(ops, xb, budget, tile_size, norm_stats)
            out[b : b + 1].copy_(yb)
    return out


# --------------------------------------------------------------------------- memory model


def _default_budget(device: torch.device) -> int:
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return free // 2
    return int(os.environ.get("SCENIMEFY_MEMORY_BUDGET", DEFAULT_MEMORY_BUDGET))


def _untiled_bytes(ops: list[_Op], h: int, w: int, in_channels: int, itemsize: int) -> int:
    """Peak activation bytes of the untiled run: the largest pair of consecutive maps, x1.5."""
    return int(1.5 * _peak_values(ops, in_channels) * h * w * itemsize)


def _peak_values(ops: list[_Op], in_channels: int, scale: float = 1.0) -> float:
    """Largest (input + output) values of one op, per pixel at the resolution ``ops`` start at."""
    channels, peak = in_channels, 0.0
    for op in ops:
        before = channels * scale * scale
        channels = getattr(op, "out_channels", channels)
        scale *= op.factor
        peak = max(peak, before + channels * scale * scale)
    return peak


# --------------------------------------------------------------------------- tiled execution
# Memory is dominated by the full-resolution maps (ngf and 2*ngf channels). The network is cut
# into segments at maps that are cheap to store whole (at most ngf/2 values per input pixel:
# the 2*ngf map at half size, the bottleneck at quarter size); each segment runs tile by tile
# with a halo, from a stored map to a stored map. InstanceNorm needs whole-image statistics:
# * a norm right after a cut gets them for free: the segment that stores its input accumulates
#   per-channel moments of every tile core it writes, and the next segment normalises on load;
# * a norm inside a segment (the full-size ones) gets a statistics pass: every tile runs the
#   segment up to that norm and contributes the moments of its core; the tiles are then rerun
#   to the end. This recomputes the stem and the full-size convs once or twice (~25% extra
#   work), which is what keeping ngf-channel full-size maps out of memory costs.
# Tile cores partition the image at every resolution, so the merged moments are exactly the
# whole-image ones, and each op pads only on real image borders, so every output pixel sees
# the same inputs as in the untiled run.


class _Moments:
    """Per-channel count / mean / M2 of tile cores, merged pairwise (Chan et al.)."""

    def __init__(self) -> None:
        self.n = 0
        self.mean = self.m2 = None

    def add(self, t: torch.Tensor) -> None:
        # batch_norm's own statistics kernel: one fast channels_last pass, fp32 accumulation
        # (generic reductions over a cropped channels_last view are several times slower).
        _, mean, invstd = torch.native_batch_norm(_dense(t), None, None, None, None, True, 0.0, EPS)
        n = t.shape[0] * t.shape[2] * t.shape[3]
        m2 = (invstd.float().pow(-2) - EPS).clamp_min_(0) * n
        mean = mean.float()
        if self.n == 0:
            self.n, self.mean, self.m2 = n, mean, m2
            return
        total = self.n + n
        delta = mean - self.mean
        self.mean = self.mean + delta * (n / total)
        self.m2 = self.m2 + m2 + delta.square() * (self.n * n / total)
        self.n = total

    def result(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.mean, self.m2 / self.n  # biased variance, as InstanceNorm uses


def _cuts(ops: list[_Op], in_channels: int) -> list[int]:
    """Indices i where the net is cut before ops[i] (see the comment above)."""
    ngf = next(op.out_channels for op in ops if isinstance(op, _Conv))
    limit = ngf / 2  # stored values per input pixel
    channels, scale, cuts = in_channels, 1.0, []
    for i, op in enumerate(ops[:-1]):
        channels = getattr(op, "out_channels", channels)
        scale *= op.factor
        cheap = channels * scale * scale <= limit
        nxt = ops[i + 1]
        # A residual block's input must be a stored map: its tiles read it again at the add.
        if op.factor < 1 or isinstance(nxt, _Save) or (cheap and (isinstance(nxt, _Norm) or isinstance(op, _AddSaved))):
            cuts.append(i + 1)
    return cuts


def _grid(n: int, step: int) -> list[tuple[int, int]]:
    """[start, stop) cores of about ``step`` covering range(n), boundaries multiples of 4."""
    k = max(1, -(-n // step))
    bounds = [round(i * n / k / 4) * 4 for i in range(k)] + [n]
    return [(a, b) for a, b in zip(bounds, bounds[1:]) if b > a]


def _tiled(
    ops: list[_Op], x: torch.Tensor, budget: int, tile: int | None, norm_stats: NormStatsHook | None = None
) -> torch.Tensor:
    """Run ``ops`` on one sample segment by segment, each segment tile by tile."""
    ctx = _Context(keep_saved=True, norm_stats=norm_stats)
    bounds = [0, *_cuts(ops, x.shape[1]), len(ops)]
    src, scale = x, 1.0  # scale: resolution of src relative to the input
    for a, b in zip(bounds, bounds[1:]):
        collect = ops[b] if b < len(ops) and isinstance(ops[b], _Norm) else None
        src = _run_segment(ops[a:b], src, scale, ctx, collect, budget, tile)
        if _LIBC is not None and x.device.type == "cpu":
            _LIBC.malloc_trim(0)  # the next segment's blocks have other sizes: drop the free ones
        for op in ops[a:b]:
            if isinstance(op, _AddSaved):
                del ctx.saved[op.slot]
        for op in ops[a:b]:
            scale *= op.factor
    return src


def _run_segment(
    ops: list[_Op],
    src: torch.Tensor,
    scale: float,
    ctx: _Context,
    collect: _Norm | None,
    budget: int,
    tile: int | None,
) -> torch.Tensor:
    """Run ``ops`` over the stored map ``src`` (at ``scale`` of the input) tile by tile.

    Norms inside the segment get statistics passes first; ``collect``, the norm right after the
    segment, gets the moments of what the segment writes.
    """
    h, w = src.shape[-2:]
    full_rows, full_cols = _Span(0, h, h), _Span(0, w, w)
    if isinstance(ops[0], _Save):  # the residual input is this stored map itself
        ctx.saved[ops[0].slot] = (src, full_rows, full_cols)
        ops = ops[1:]
    factor = 1.0
    for op in ops:
        factor *= op.factor
    ho, wo = int(h * factor), int(w * factor)
    halo = 0
    for op in reversed(ops):
        halo = op.halo(halo)
    if tile is None:
        # The stored maps live through the segment; tiles get the rest of the budget, at most
        # MAX_TILE_WORKSPACE or half of it, at least an eighth.
        out_channels = next((op.out_channels for op in reversed(ops) if hasattr(op, "out_channels")), src.shape[1])
        stored = src.numel() + ho * wo * out_channels + sum(t.numel() for t, _, _ in ctx.saved.values() if t is not src)
        work = max(budget // 8, min(budget // 2, MAX_TILE_WORKSPACE, budget - stored * src.element_size()))
        per_pixel = _peak_values(ops, src.shape[1]) * 1.5 * src.element_size()
        side = int((work / per_pixel) ** 0.5) - 2 * halo  # in src pixels
        step = max(16, int(side * factor) // 4 * 4)
    else:
        step = max(4, int(tile * scale * factor) // 4 * 4)

    def window(core, n_src):
        lo, hi = int(core[0] / factor), int(core[1] / factor)
        return max(0, lo - halo), min(n_src, hi + halo)

    def area(core_r, core_c):
        (r0, r1), (c0, c1) = window(core_r, h), window(core_c, w)
        return (r1 - r0) * (c1 - c0)

    # Largest windows (inner tiles, with a halo on every side) first: the heap blocks one tile
    # frees then fit every later tile's, so the heap does not grow tile after tile.
    cores = sorted(((r, c) for r in _grid(ho, step) for c in _grid(wo, step)), key=lambda rc: -area(*rc))

    def run_tile(core_r, core_c, upto):
        r0, r1 = window(core_r, h)
        c0, c1 = window(core_c, w)
        rows, cols = _Span(r0, r1, h), _Span(c0, c1, w)
        y, rows, cols = _run(upto, src[:, :, r0:r1, c0:c1], rows, cols, ctx)
        f = 1.0
        for op in upto:
            f *= op.factor
        want_r = _Span(int(core_r[0] / factor * f), int(core_r[1] / factor * f), int(h * f))
        want_c = _Span(int(core_c[0] / factor * f), int(core_c[1] / factor * f), int(w * f))
        return _crop(y, rows, cols, want_r, want_c)

    # Statistics passes for the norms inside the segment, in order (one tile: it is the whole
    # map, and each norm computes its own statistics on the way).
    for q, op in enumerate(ops):
        if isinstance(op, _Norm) and op.index not in ctx.stats and len(cores) > 1:
            moments = _Moments()
            for core_r, core_c in cores:
                moments.add(run_tile(core_r, core_c, ops[:q]))
            ctx.put_stats(op.index, *moments.result())

    in_place = halo == 0 and factor == 1.0 and not any(isinstance(op, _Conv) for op in ops)
    out = None
    moments = _Moments() if collect is not None else None
    for core_r, core_c in cores:
        y = run_tile(core_r, core_c, ops)
        if out is None:
            out = src if in_place else torch.empty(
                (1, y.shape[1], ho, wo), dtype=y.dtype, device=y.device, memory_format=_format_of(src)
            )
        out[:, :, core_r[0] : core_r[1], core_c[0] : core_c[1]].copy_(y)
        if moments is not None:
            moments.add(y)
    if moments is not None:
        ctx.put_stats(collect.index, *moments.result())
    return out


def _format_of(x: torch.Tensor) -> torch.memory_format:
    channels_last = x.is_contiguous(memory_format=torch.channels_last) and x.shape[1] > 1
    return torch.channels_last if channels_last else torch.contiguous_format
