"""Memory model and tiled execution of the op list (``graph``) for images above the budget."""

from __future__ import annotations

import os

import torch

from scenimefy.inference.kernels import ConvChoice, Seq
from scenimefy.inference.moments import Moments
from scenimefy.inference.ops import (
    AddSaved,
    Context,
    Norm,
    NormStatsHook,
    Op,
    Save,
    Span,
    crop,
    run_ops,
)
from scenimefy.inference.runtime import release_free_memory

#: Default activation budget per image on CPU; CUDA uses half of the memory it can get (cuda_budget).
DEFAULT_MEMORY_BUDGET = 3 * 1024**3
#: Tiles larger than this gain nothing measurable (halos are a few percent at 1k-pixel tiles).
MAX_TILE_WORKSPACE = 512 * 1024**2
#: CUDA's reflection / replication pad kernels (and others) index with 32 bits: a map of more
#: elements raises there ("input tensor must fit into 32-bit index math"), so images that would
#: hold one run tiled on CUDA whatever the budget (the full-size 128-channel map passes it at ~16.7 MP).
CUDA_INDEX_LIMIT = 2**31 - 1
#: Margin for the padding around a map (the 7x7 reflect-padded stem and head: 3 a side).
_PAD_MARGIN = 6

# --------------------------------------------------------------------------- memory model


def default_budget(device: torch.device) -> int:
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return cuda_budget(free, torch.cuda.memory_reserved(device), torch.cuda.memory_allocated(device))
    return int(os.environ.get("SCENIMEFY_MEMORY_BUDGET", DEFAULT_MEMORY_BUDGET))


def cuda_budget(free: int, reserved: int, allocated: int) -> int:
    """Half of what one image can get on CUDA: the device's free memory (``mem_get_info``) plus the
    blocks PyTorch's caching allocator holds free (reserved - allocated), which ``mem_get_info``
    counts as used: without them the same large image runs tiled after its first run."""
    return (free + max(0, reserved - allocated)) // 2


def runs_untiled(ops: list[Op], h: int, w: int, in_channels: int, itemsize: int, budget: int, device_type: str) -> bool:
    """Whether one (in_channels, h, w) image runs whole: within ``budget``, and on CUDA with no map
    past the 32-bit index limit of its kernels (the tiles of a tiled run are far smaller)."""
    if untiled_bytes(ops, h, w, in_channels, itemsize) > budget:
        return False
    return device_type != "cuda" or largest_map(ops, h, w, in_channels) <= CUDA_INDEX_LIMIT


def largest_map(ops: list[Op], h: int, w: int, in_channels: int) -> int:
    """Elements of the largest map (input or output of an op, with its padding) of an untiled run."""
    channels, scale = in_channels, 1.0
    largest = channels * (h + _PAD_MARGIN) * (w + _PAD_MARGIN)
    for op in (part for whole in ops for part in _parts(whole)):
        channels = getattr(op, "out_channels", channels)
        scale *= op.factor
        largest = max(largest, channels * (int(h * scale) + _PAD_MARGIN) * (int(w * scale) + _PAD_MARGIN))
    return largest


def untiled_bytes(ops: list[Op], h: int, w: int, in_channels: int, itemsize: int) -> int:
    """Peak activation bytes of the untiled run: the largest pair of consecutive maps, x1.5."""
    return int(1.5 * peak_values(ops, in_channels) * h * w * itemsize)


def _parts(op: Op) -> list[Op]:
    """The ops whose maps exist one after another inside ``op``: a choice counts as its direct
    kernel (BlurUp then conv: the upsampled map is the largest of any kernel's)."""
    if isinstance(op, ConvChoice):
        op = op.op(next(iter(op.factories)))
    if isinstance(op, Seq):
        return [part for inner in op.ops for part in _parts(inner)]
    return [op]


def peak_values(ops: list[Op], in_channels: int, scale: float = 1.0) -> float:
    """Largest (input + output) values of one op, per pixel at the resolution ``ops`` start at."""
    channels, peak = in_channels, 0.0
    for op in (part for whole in ops for part in _parts(whole)):
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


def cuts(ops: list[Op], in_channels: int, itemsize: int = 2) -> list[int]:
    """Indices i where the net is cut before ops[i] (see the comment above).

    A map is cheap to store when it holds at most ``ngf`` bytes per input pixel: ngf/2 values in
    bf16 / fp16 (the 2*ngf map at half size qualifies), ngf/4 in fp32 (only the bottleneck).
    """
    ngf = next(op.out_channels for op in ops if hasattr(op, "out_channels"))
    limit = ngf / itemsize  # stored values per input pixel
    channels, scale, cuts = in_channels, 1.0, []
    for i, op in enumerate(ops[:-1]):
        channels = getattr(op, "out_channels", channels)
        scale *= op.factor
        cheap = channels * scale * scale <= limit
        nxt = ops[i + 1]
        # A residual block's input must be a stored map: its tiles read it again at the add.
        stored = cheap and (op.factor < 1 or isinstance(nxt, Norm) or isinstance(op, AddSaved))
        if isinstance(nxt, Save) or stored:
            cuts.append(i + 1)
    return cuts


def grid(n: int, step: int) -> list[tuple[int, int]]:
    """[start, stop) cores of about ``step`` covering range(n), boundaries multiples of 4."""
    k = max(1, -(-n // step))
    bounds = [round(i * n / k / 4) * 4 for i in range(k)] + [n]
    return [(a, b) for a, b in zip(bounds, bounds[1:]) if b > a]


def run_tiled(
    ops: list[Op],
    x: torch.Tensor,
    budget: int,
    tile: int | None,
    norm_stats: NormStatsHook | None = None,
    store_dtype: torch.dtype | None = None,
    work_itemsize: int | None = None,
) -> torch.Tensor:
    """Run ``ops`` on one sample segment by segment, each segment tile by tile.

    ``work_itemsize`` (default: x's) sizes the tiles' maps: a kernel choice can run a bf16 path's
    convs in fp32 (Winograd), whose maps take twice the bytes.

    ``store_dtype`` (default: x's dtype) holds the maps stored between segments: the fp32 fast
    path stores them in fp16 (one rounding to 11 significant bits of maps that are computed in
    fp32 from there on), so it cuts where bf16 does instead of recomputing more; exact mode keeps
    fp32.
    """
    ctx = Context(keep_saved=True, norm_stats=norm_stats)
    store_dtype = store_dtype or x.dtype
    itemsize = torch.empty((), dtype=store_dtype).element_size()
    bounds = [0, *cuts(ops, x.shape[1], itemsize), len(ops)]
    src, scale = x, 1.0  # scale: resolution of src relative to the input
    for a, b in zip(bounds, bounds[1:]):
        collect = ops[b] if b < len(ops) and isinstance(ops[b], Norm) else None
        stored = store_dtype if b < len(ops) else x.dtype  # the last segment writes the result
        src = run_segment(ops[a:b], src, scale, ctx, collect, budget, tile, x.dtype, stored, work_itemsize)
        release_free_memory(x.device)  # the next segment's blocks have other sizes: drop the free ones
        for op in ops[a:b]:
            if isinstance(op, AddSaved):
                del ctx.saved[op.slot]
        for op in ops[a:b]:
            scale *= op.factor
    return src


def run_segment(
    ops: list[Op],
    src: torch.Tensor,
    scale: float,
    ctx: Context,
    collect: Norm | None,
    budget: int,
    tile: int | None,
    compute_dtype: torch.dtype,
    store_dtype: torch.dtype,
    work_itemsize: int | None = None,
) -> torch.Tensor:
    """Run ``ops`` over the stored map ``src`` (at ``scale`` of the input) tile by tile.

    Tiles are computed in ``compute_dtype``; the segment's output is stored in ``store_dtype``.

    Norms inside the segment get statistics passes first; ``collect``, the norm right after the
    segment, gets the moments of what the segment writes.
    """
    h, w = src.shape[-2:]
    full_rows, full_cols = Span(0, h, h), Span(0, w, w)
    if isinstance(ops[0], Save):  # the residual input is this stored map itself
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
        store_size = torch.empty((), dtype=store_dtype).element_size()
        stored = src.numel() * src.element_size() + ho * wo * out_channels * store_size
        stored += sum(t.numel() * t.element_size() for t, _, _ in ctx.saved.values() if t is not src)
        work = max(budget // 8, min(budget // 2, MAX_TILE_WORKSPACE, budget - stored))
        itemsize = work_itemsize or torch.empty((), dtype=compute_dtype).element_size()
        per_pixel = peak_values(ops, src.shape[1]) * 1.5 * itemsize
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
    cores = sorted(((r, c) for r in grid(ho, step) for c in grid(wo, step)), key=lambda rc: -area(*rc))

    def run_tile(core_r, core_c, upto):
        r0, r1 = window(core_r, h)
        c0, c1 = window(core_c, w)
        rows, cols = Span(r0, r1, h), Span(c0, c1, w)
        y, rows, cols = run_ops(upto, src[:, :, r0:r1, c0:c1].to(compute_dtype), rows, cols, ctx)
        f = 1.0
        for op in upto:
            f *= op.factor
        want_r = Span(int(core_r[0] / factor * f), int(core_r[1] / factor * f), int(h * f))
        want_c = Span(int(core_c[0] / factor * f), int(core_c[1] / factor * f), int(w * f))
        return crop(y, rows, cols, want_r, want_c)

    # Statistics passes for the norms inside the segment, in order (one tile: it is the whole
    # map, and each norm computes its own statistics on the way).
    for q, op in enumerate(ops):
        if isinstance(op, Norm) and op.index not in ctx.stats and len(cores) > 1:
            moments = Moments(stable=op.stable)
            for core_r, core_c in cores:
                moments.add(run_tile(core_r, core_c, ops[:q]))
            ctx.put_stats(op.index, *moments.result())

    in_place = halo == 0 and factor == 1.0 and not any(hasattr(op, "out_channels") for op in ops)
    out = None
    moments = Moments(stable=collect.stable) if collect is not None else None
    for core_r, core_c in cores:
        y = run_tile(core_r, core_c, ops)
        if out is None:
            out = (
                src
                if in_place
                else torch.empty(
                    (1, y.shape[1], ho, wo), dtype=store_dtype, device=y.device, memory_format=format_of(src)
                )
            )
        out[:, :, core_r[0] : core_r[1], core_c[0] : core_c[1]].copy_(y)
        if moments is not None:
            moments.add(y)
    if moments is not None:
        ctx.put_stats(collect.index, *moments.result())
    return out


def format_of(x: torch.Tensor) -> torch.memory_format:
    channels_last = x.is_contiguous(memory_format=torch.channels_last) and x.shape[1] > 1
    return torch.channels_last if channels_last else torch.contiguous_format
