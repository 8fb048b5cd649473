"""The ops of the translator's op list, each running on one sample, whole or as a tile.

Each op maps ``(x, rows, cols, ctx) -> (x, rows, cols)``: on an image border it pads the way the
network does; on a tile edge inside the image it pads nothing and its output shrinks by what it
could not compute (the halo). ``factor`` is its change of resolution and ``halo(m)`` the input
margin that leaves a margin ``m`` on its output. ``graph`` builds the list from a model.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from scenimefy.inference import winograd
from scenimefy.inference.moments import EPS, Moments, dense
from scenimefy.inference.padding import reflect_pad
from scenimefy.inference.winograd import WinogradWeight

#: ``norm_stats(layer, mean, var) -> (mean, var)``, the optional hook of :func:`translate`.
NormStatsHook = Callable[[int, torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]

# --------------------------------------------------------------------------- tile geometry


@dataclass(frozen=True)
class Span:
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


def sl(x: torch.Tensor, dim: int, start: int | None, stop: int | None, step: int = 1) -> torch.Tensor:
    index = [slice(None)] * x.dim()
    index[dim] = slice(start, stop, step)
    return x[tuple(index)]


def crop(x: torch.Tensor, rows: Span, cols: Span, to_rows: Span, to_cols: Span) -> torch.Tensor:
    """The part of ``x`` (covering rows x cols) that lies on to_rows x to_cols."""
    r, c = to_rows.start - rows.start, to_cols.start - cols.start
    if r < 0 or c < 0 or to_rows.stop > rows.stop or to_cols.stop > cols.stop:
        raise AssertionError("tile halo too small for the requested region")
    return x[:, :, r : r + to_rows.stop - to_rows.start, c : c + to_cols.stop - to_cols.start]


@dataclass
class Context:
    """Per-run state: InstanceNorm statistics known so far and saved residual inputs."""

    stats: dict[int, tuple[torch.Tensor, torch.Tensor]] = field(default_factory=dict)
    saved: dict[int, tuple[torch.Tensor, Span, Span]] = field(default_factory=dict)
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


class Op:
    factor = 1.0

    def halo(self, m: int) -> int:
        return m


class Conv(Op):
    """Stride-1 'same' conv, reflect (stem, head, residual blocks) or zero padded (up/down convs).

    With ``winograd`` (a 3x3 weight in the Winograd domain) it runs ``inference.winograd.conv2d``
    instead of oneDNN's direct conv; the direct weight is then not kept.
    """

    def __init__(
        self,
        weight: torch.Tensor,
        bias: torch.Tensor | None,
        reflect: bool,
        winograd: WinogradWeight | None = None,
        *,
        head: bool = False,
    ) -> None:
        self.weight = None if winograd is not None else weight
        self.bias, self.reflect, self.winograd = bias, reflect, winograd
        self.pad = weight.shape[-1] // 2
        self.out_channels = co = weight.shape[0]
        # The 3-channel head fills 3 of the 16 lanes oneDNN computes at once. Folding the kernel
        # columns into output channels -- a (k, 1) conv to k*3 maps, then a sum of k shifted
        # slices in fp32 -- halves its time (and rounds once less in bf16). Only the head: its
        # fp32 result goes to the final tanh, where a conv would expect the compute dtype.
        self.folded = None
        if head and reflect and co < 8 and self.pad:
            k = weight.shape[-1]
            fmt = torch.channels_last if weight.is_contiguous(memory_format=torch.channels_last) else None
            folded = weight.permute(3, 0, 1, 2).reshape(k * co, weight.shape[1], k, 1)
            self.folded = folded.contiguous(memory_format=fmt or torch.contiguous_format)

    def halo(self, m: int) -> int:
        return m + self.pad

    def __call__(self, x, rows, cols, ctx):
        p = self.pad
        if self.winograd is not None:
            # Padding only on image borders, so the same call serves whole images and tiles. The
            # transforms run in the weight's dtype (fp32): a bf16 map is widened as the bands copy
            # it and rounded once as they place their tiles, as a bf16 direct conv rounds its output.
            bias = None if self.bias is None else self.bias.to(self.winograd.u.dtype)
            pads = (p if cols.head else 0, p if cols.tail else 0, p if rows.head else 0, p if rows.tail else 0)
            if not self.reflect and all(pads):
                y = winograd.conv2d(x, self.winograd, bias, padding=p)
            else:
                x = F.pad(x, pads, mode="reflect" if self.reflect else "constant") if any(pads) else x
                y = winograd.conv2d(x, self.winograd, bias)
        elif self.reflect:
            # One reflect-pad copy, on image borders only. (Tried: zero-padded conv plus border
            # lines recomputed from small reflect-padded strips; it saves the copy but its dozen
            # small ops per conv cost more, on a shared machine much more.)
            pads = (p if cols.head else 0, p if cols.tail else 0, p if rows.head else 0, p if rows.tail else 0)
            x = reflect_pad(x, pads) if any(pads) else x
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
        rows = Span(rows.start + (0 if rows.head else p), rows.stop - (0 if rows.tail else p), rows.size)
        cols = Span(cols.start + (0 if cols.head else p), cols.stop - (0 if cols.tail else p), cols.size)
        return y, rows, cols

    def _folded_conv(self, x: torch.Tensor) -> torch.Tensor:
        co, k = self.out_channels, 2 * self.pad + 1
        z = F.conv2d(x, self.folded).float()  # (1, k*co, h, w + k - 1): column tap j in group j
        w = z.shape[3] - (k - 1)
        y = z[:, :co, :, :w].clone()
        for j in range(1, k):
            y += z[:, j * co : (j + 1) * co, :, j : j + w]
        return y if self.bias is None else y.add_(self.bias.float().view(1, -1, 1, 1))


class StridedConv(Op):
    """Stride-2 3x3 conv with zero padding 1 (the non-anti-aliased down block)."""

    factor = 0.5

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None) -> None:
        self.weight, self.bias = weight, bias

    def halo(self, m: int) -> int:
        return 2 * m + 2

    def __call__(self, x, rows, cols, ctx):
        pads, spans = [], []
        for dim, span in ((2, rows), (3, cols)):
            j0, j1, a = down_range(span)  # output j reads input 2j-1 .. 2j+1
            x = sl(x, dim, max(a - 1, 0), a + 2 * (j1 - j0))
            pads.append((1 if span.head else 0, 1 if span.tail else 0))
            spans.append(Span(j0, j1, span.size // 2))
        x = F.pad(x, (*pads[1], *pads[0]))
        y = F.conv2d(x, self.weight, self.bias, stride=2)
        return y[:, :, : spans[0].stop - spans[0].start, : spans[1].stop - spans[1].start], spans[0], spans[1]


class TransposedConv(Op):
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
        rows = Span(2 * rows.start, 2 * rows.stop - (0 if rows.tail else 1), 2 * rows.size)
        cols = Span(2 * cols.start, 2 * cols.stop - (0 if cols.tail else 1), 2 * cols.size)
        return y, rows, cols


def down_range(span: Span) -> tuple[int, int, int]:
    """Outputs [j0, j1) a stride-2, radius-1 op can produce from ``span``; local index of row 2*j0."""
    j0 = 0 if span.head else (span.start + 2) // 2
    j1 = span.size // 2 if span.tail else span.stop // 2
    return j0, j1, 2 * j0 - span.start


class BlurDown(Op):
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
    def _axis(x: torch.Tensor, dim: int, span: Span) -> tuple[torch.Tensor, Span]:
        j0, j1, a = down_range(span)
        n = j1 - j0
        even = sl(x, dim, a, a + 2 * n - 1, 2)  # x[2j]
        odd = sl(x, dim, a + 1, a + 2 * n, 2)  # x[2j+1]
        out = torch.add(odd, even, alpha=2)
        if a >= 1:
            out += sl(x, dim, a - 1, a + 2 * n - 2, 2)  # x[2j-1]
        else:  # image border: x[-1] reflects to x[1]
            sl(out, dim, 1, None).add_(sl(odd, dim, 0, n - 1))
            sl(out, dim, 0, 1).add_(sl(odd, dim, 0, 1))
        return out, Span(j0, j1, span.size // 2)


class BlurUp(Op):
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
    def _axis(x: torch.Tensor, dim: int, span: Span) -> tuple[torch.Tensor, Span]:
        shape = list(x.shape)
        shape[dim] *= 2
        fmt = torch.channels_last if x.is_contiguous(memory_format=torch.channels_last) else torch.contiguous_format
        out = torch.empty(shape, dtype=x.dtype, device=x.device, memory_format=fmt)
        even, odd = sl(out, dim, 0, None, 2), sl(out, dim, 1, None, 2)
        first, last, prev, nxt = sl(x, dim, 0, 1), sl(x, dim, -1, None), sl(x, dim, 0, -1), sl(x, dim, 1, None)
        torch.add(prev, nxt, alpha=3, out=sl(even, dim, 1, None))
        torch.add(nxt, prev, alpha=3, out=sl(odd, dim, 0, -1))
        torch.mul(first, 4, out=sl(even, dim, 0, 1))  # replicate padding: x[-1] = x[0]
        torch.mul(last, 4, out=sl(odd, dim, -1, None))
        lo = 0 if span.head else 1  # on a tile edge the outermost line lacked its neighbour
        hi = out.shape[dim] - (0 if span.tail else 1)
        out = sl(out, dim, lo, hi)
        return out, Span(2 * span.start + lo, 2 * span.stop - (0 if span.tail else 1), 2 * span.size)


#: Per axis, BlurUp then a 3-tap conv (taps w0, w1, w2 at offsets -1, 0, +1 of the upsampled
#: line) is a 3-tap conv of the input line per output phase: phase 0 (out[2m]) reads
#: x[m-1], x[m], x[m+1] with taps (3 w0 + w1, w0 + 3 w1 + 3 w2, w2), phase 1 (out[2m+1]) with
#: (w0, 3 w0 + 3 w1 + w2, w1 + 3 w2). Rows: the input taps; columns: the conv taps.
_UP_PHASES = (((3, 1, 0), (1, 3, 3), (0, 0, 1)), ((1, 0, 0), (3, 3, 1), (0, 1, 3)))


def blur_up_conv_weight(weight: torch.Tensor) -> torch.Tensor:
    """The (4 C_out, C_in, 3, 3) weight of :class:`BlurUpConv`, phases (py, px) outermost, in float64."""
    w = weight.double()
    p = [torch.tensor(phase, dtype=torch.float64, device=w.device) for phase in _UP_PHASES]
    return torch.cat([p[py] @ w @ p[px].T for py in (0, 1) for px in (0, 1)])


class BlurUpConv(Op):
    """:class:`BlurUp` then a zero-padded 3x3 :class:`Conv`, as one Winograd conv at the input resolution.

    Each of the four output phases is a 3x3 conv of the replicate-padded input
    (:func:`blur_up_conv_weight`): the same multiply-adds, but the conv transforms a map a quarter
    of the size of the upsampled one, which is never built, its GEMMs are four times wider, and
    ``winograd.conv2d(shuffle=True)`` interleaves the phases in the copy it makes anyway.
    (Measured at 1024 px on the fp32 path: the two up blocks 1.31 s -> 0.95 s, the network -4.5%.)
    Where the image border meets the conv's zero padding -- its first and last output row and
    column -- the phases would read the upsampled map's replicate padding instead of zeros: those
    lines are recomputed from two-line strips by the unfused ops.
    """

    factor = 2.0

    def __init__(self, weight: torch.Tensor, fused: WinogradWeight) -> None:
        """weight: the conv's own (C_out, C_in, 3, 3) weight, for the border lines; fused: the
        :func:`blur_up_conv_weight`, Winograd-transformed. Both compute in ``fused``'s dtype (fp32);
        the map and the result keep theirs (``winograd.conv2d`` converts in its copies)."""
        self.out_channels = weight.shape[0]
        self.fused = fused
        self.blur, self.border = BlurUp(), Conv(weight.to(fused.u.dtype), None, reflect=False)

    def halo(self, m: int) -> int:
        return (m + 1) // 2 + 1

    def __call__(self, x, rows, cols, ctx):
        pads = (int(cols.head), int(cols.tail), int(rows.head), int(rows.tail))
        xp = F.pad(x, pads, mode="replicate") if any(pads) else x
        y = winograd.conv2d(xp, self.fused, shuffle=True)
        if rows.head:
            y[:, :, :1] = self._unfused(x[:, :, :2], Span(rows.start, rows.start + 2, rows.size), cols, ctx)[:, :, :1]
        if rows.tail:
            y[:, :, -1:] = self._unfused(x[:, :, -2:], Span(rows.stop - 2, rows.stop, rows.size), cols, ctx)[:, :, -1:]
        if cols.head:
            head = Span(cols.start, cols.start + 2, cols.size)
            y[:, :, :, :1] = self._unfused(x[:, :, :, :2], rows, head, ctx)[:, :, :, :1]
        if cols.tail:
            tail = Span(cols.stop - 2, cols.stop, cols.size)
            y[:, :, :, -1:] = self._unfused(x[:, :, :, -2:], rows, tail, ctx)[:, :, :, -1:]
        # On a tile edge inside the image the outermost input line lacked a neighbour: one line less.
        lo_r, hi_r = rows.start + (0 if rows.head else 1), rows.stop - (0 if rows.tail else 1)
        lo_c, hi_c = cols.start + (0 if cols.head else 1), cols.stop - (0 if cols.tail else 1)
        return y, Span(2 * lo_r, 2 * hi_r, 2 * rows.size), Span(2 * lo_c, 2 * hi_c, 2 * cols.size)

    def _unfused(self, x, rows, cols, ctx) -> torch.Tensor:
        # In the fused weight's dtype (fp32) also on a bf16 path: the strips are two lines wide.
        x, rows, cols = self.blur(x.to(self.fused.u.dtype), rows, cols, ctx)
        return self.border(x, rows, cols, ctx)[0]


class Norm(Op):
    """InstanceNorm (no affine) times ``scale``, optionally followed by ReLU, on one sample
    (``stable``: statistics by :func:`channel_moments`' stable way, exact mode)."""

    def __init__(
        self, index: int, relu: bool, channels: int, scale: float, device: torch.device, *, stable: bool = False
    ) -> None:
        self.index, self.relu, self.channels, self.stable = index, relu, channels, stable
        self.weight = None if scale == 1.0 else torch.full((channels,), scale, device=device)

    def __call__(self, x, rows, cols, ctx):
        x = dense(x)
        stats = ctx.stats.get(self.index)
        if stats is None and (ctx.norm_stats is not None or self.stable):  # whole image: its statistics
            moments = Moments(stable=self.stable)
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


class Save(Op):
    def __init__(self, slot: int) -> None:
        self.slot = slot

    def __call__(self, x, rows, cols, ctx):
        ctx.saved[self.slot] = (x, rows, cols)
        return x, rows, cols


class AddSaved(Op):
    def __init__(self, slot: int) -> None:
        self.slot = slot

    def __call__(self, x, rows, cols, ctx):
        saved, srows, scols = ctx.saved[self.slot] if ctx.keep_saved else ctx.saved.pop(self.slot)
        x.add_(crop(saved, srows, scols, rows, cols))  # x is the norm's fresh output
        return x, rows, cols


class Tanh(Op):
    def __call__(self, x, rows, cols, ctx):
        # In fp32: a bf16 tanh rounds the result by up to 0.25 of an 8-bit level (3 channels: cheap).
        return x.float().tanh_(), rows, cols


def run_ops(ops: list[Op], x: torch.Tensor, rows: Span, cols: Span, ctx: Context):
    for op in ops:
        x, rows, cols = op(x, rows, cols, ctx)
    return x, rows, cols
