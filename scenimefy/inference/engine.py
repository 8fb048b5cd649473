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
* Large images run in tiles with whole-image InstanceNorm statistics (``tiling``), so the
  result matches the untiled one while memory stays within ``memory_budget``.

Modules: ``runtime`` (device capabilities, dtype/layout choice, scoped process state), ``graph``
(the network as an op list), ``tiling`` (memory model and tiled execution).
"""

from __future__ import annotations

import torch

from scenimefy.inference.graph import ops_for
from scenimefy.inference.kernels import describe
from scenimefy.inference.ops import Context, NormStatsHook, Span, run_ops
from scenimefy.inference.runtime import choose_settings, inference_state
from scenimefy.inference.tiling import default_budget, run_tiled, runs_untiled
from scenimefy.models.translator import ScenimefyTranslator


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
            Default 3 GiB on CPU (env SCENIMEFY_MEMORY_BUDGET); on CUDA half the free memory,
            the allocator's cached free blocks included. On CUDA an image with a map past the
            kernels' 32-bit index limit (above ~16 MP) runs tiled whatever the budget.
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
    ops = ops_for(model, settings, device)
    budget = memory_budget if memory_budget is not None else default_budget(device)
    fmt = torch.channels_last if settings.channels_last else torch.contiguous_format
    out = torch.empty((x.shape[0], model.config.out_channels, h, w), dtype=torch.float32, device=x.device)
    # A kernel choice may run some of a bf16 path's convs in fp32 (Winograd): maps are sized for that.
    itemsize = 4 if settings.kernels != "direct" else torch.empty((), dtype=settings.dtype).element_size()
    untiled = tile_size is None and runs_untiled(ops, h, w, x.shape[1], itemsize, budget, device.type)
    # The fp32 fast path keeps the maps stored between tiling segments in fp16 (see run_tiled).
    store_dtype = torch.float16 if settings.dtype == torch.float32 and not exact else None
    with inference_state(device, exact=exact):
        for b in range(x.shape[0]):
            xb = x[b : b + 1].to(device=device, dtype=settings.dtype, memory_format=fmt)
            if untiled:
                rows, cols = Span(0, h, h), Span(0, w, w)
                yb = run_ops(ops, xb, rows, cols, Context(norm_stats=norm_stats))[0]
            else:
                yb = run_tiled(ops, xb, budget, tile_size, norm_stats, store_dtype, itemsize)
            out[b : b + 1].copy_(yb)
    return out


def kernel_report(model: ScenimefyTranslator, *, exact: bool = False, dtype: torch.dtype | None = None) -> list[str]:
    """What ``translate`` runs ``model`` with: the settings' reason, then one line per conv layer
    with the kernel chosen at each map size met so far (``scenimefy stylize --verbose``)."""
    device = next(model.parameters()).device
    settings = choose_settings(device, exact=exact, dtype=dtype)
    return [settings.reason, *describe(ops_for(model, settings, device))]
