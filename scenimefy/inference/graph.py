"""The translator compiled into a flat list of ops (``ops``) that run on one sample, whole or as a tile.

:func:`build_ops` is the one place that knows the translator's layers. The op list is written
from the architecture, not traced from ``forward``, so a model holding a layer it does not know
is refused (:class:`UnsupportedLayerError`) instead of being approximated.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable

import torch
from torch import nn

from scenimefy.inference.kernels import ConvChoice, Seq
from scenimefy.inference.ops import (
    AddSaved,
    BlurDown,
    BlurUp,
    BlurUpConv,
    Conv,
    Norm,
    Op,
    Save,
    StridedConv,
    Tanh,
    TransposedConv,
    blur_up_conv_weight,
)
from scenimefy.inference.runtime import WINOGRAD_TILE, ExecutionSettings
from scenimefy.inference.winograd import transform_weight
from scenimefy.models.lite import ScenimefyLiteTranslator
from scenimefy.models.translator import (
    BlurDownsample,
    BlurUpsample,
    DownBlock,
    ResnetBlock,
    ScenimefyTranslator,
    UpBlock,
)


class UnsupportedLayerError(TypeError):
    """A translator holding a layer the op list cannot express; the message names the layer."""


#: Every module type :func:`build_ops` knows, matched exactly: a subclass may compute something else.
_KNOWN_LAYERS = (
    ScenimefyTranslator,
    ScenimefyLiteTranslator,
    DownBlock,
    UpBlock,
    ResnetBlock,
    BlurDownsample,
    BlurUpsample,
    nn.ModuleList,
    nn.Conv2d,
    nn.ConvTranspose2d,
    nn.Identity,
)
#: Per block type, the children build_ops reads; anything else would be silently skipped.
_CHILDREN = {
    ScenimefyTranslator: {"stem", "down", "blocks", "up", "head"},
    ScenimefyLiteTranslator: {"stem", "down", "blocks", "up", "head"},
    DownBlock: {"conv", "blur"},
    UpBlock: {"upsample", "conv"},
    ResnetBlock: {"conv1", "conv2"},
}


def check_supported(model: nn.Module) -> None:
    """Refuse a model the op list would not compute exactly (raises :class:`UnsupportedLayerError`).

    The op list is written from the translator's architecture, not traced from its forward, so
    every module must be one of the known types with the known children and conv geometry, and
    the network must resample by 4 (two down and two up blocks), as the tiling assumes.
    """
    if type(model) in _CHILDREN and (len(model.down), len(model.up)) != (2, 2):
        raise UnsupportedLayerError(
            f"{type(model).__name__} has {len(model.down)} down and {len(model.up)} up blocks; "
            "the fast path runs networks with two of each (images a multiple of 4)"
        )
    for name, module in model.named_modules():
        where = f"{type(model).__name__}.{name}" if name else type(model).__name__
        if type(module) not in _KNOWN_LAYERS:
            raise UnsupportedLayerError(
                f"{where} is a {type(module).__name__}, a layer the fast inference path does not know; "
                "run such a model eagerly (model(x)) or teach scenimefy.inference.graph.build_ops its op"
            )
        expected = _CHILDREN.get(type(module))
        if expected is not None and {child for child, _ in module.named_children()} != expected:
            found = sorted(child for child, _ in module.named_children())
            raise UnsupportedLayerError(f"{where} has the children {found}; the fast path expects {sorted(expected)}")
        if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)):
            geometry = (module.dilation, module.groups, module.padding_mode)
            if geometry != ((1, 1), 1, "zeros") or module.kernel_size[0] != module.kernel_size[1]:
                raise UnsupportedLayerError(
                    f"{where}: a {module.kernel_size} conv with dilation {module.dilation}, groups {module.groups}, "
                    f"padding mode {module.padding_mode!r}; the fast path runs square, dense, zero-padded convs"
                )


def _expect_conv(conv: nn.Module, kind: type, stride: int, padding: int, where: str) -> None:
    """The conv geometry an op assumes; anything else would be computed wrongly, so it is refused."""
    if type(conv) is not kind or conv.stride != (stride, stride) or conv.padding != (padding, padding):
        got = f"{type(conv).__name__}(stride={getattr(conv, 'stride', None)}, padding={getattr(conv, 'padding', None)})"
        raise UnsupportedLayerError(
            f"{where}: {got}, the fast path expects {kind.__name__}(stride={stride}, padding={padding})"
        )


def build_ops(model: ScenimefyTranslator, settings: ExecutionSettings, device: torch.device) -> list[Op]:
    """The translator as a flat op list with weights in the compute dtype and layout."""
    check_supported(model)
    fmt = torch.channels_last if settings.channels_last else torch.contiguous_format

    def weight(conv, scale: float = 1.0, *, kind=nn.Conv2d, stride=1, padding=0, where="") -> torch.Tensor:
        _expect_conv(conv, kind, stride, padding, where)
        w = conv.weight.detach().to(device=device, dtype=torch.float32) * scale
        return w.to(settings.dtype).contiguous(memory_format=fmt)

    def bias(conv) -> torch.Tensor | None:
        return None if conv.bias is None else conv.bias.detach().to(device=device, dtype=settings.dtype)

    def fp32_weight(module, scale: float = 1.0) -> torch.Tensor:
        return module.weight.detach().to(device=device, dtype=torch.float32) * scale

    def winograd_conv(module, m: int, *, reflect: bool, scale: float) -> Callable[[], Conv]:
        # Transformed from the fp32 weight (times the folded scale), rounded once; always fp32
        # (kernels module doc). Built when first used.
        return lambda: Conv(
            fp32_weight(module, scale), None, reflect=reflect, winograd=transform_weight(fp32_weight(module, scale), m)
        )

    def conv(module, *, reflect: bool, scale: float = 1.0, padding: int = 0, where: str, with_bias=False) -> Op:
        """A stride-1 conv op; a 3x3 one takes the kernel the settings choose (direct or Winograd)."""
        w = weight(module, scale, padding=padding, where=where)
        b = bias(module) if with_bias else None
        direct = Conv(w, b, reflect=reflect, head=where == "head")
        # The head (3 output channels, bias, folded) always runs direct: Winograd's GEMMs would be 3 wide.
        if settings.kernels == "direct" or tuple(module.kernel_size) != (3, 3) or where == "head":
            return direct
        if settings.kernels == "winograd":
            return winograd_conv(module, WINOGRAD_TILE, reflect=reflect, scale=scale)()
        pad = "reflect" if reflect else "zero-pad"
        return ConvChoice(
            where,
            f"conv3x3 {pad} {module.in_channels}->{module.out_channels}",
            {
                "direct": lambda: direct,
                "winograd4": winograd_conv(module, 4, reflect=reflect, scale=scale),
                "winograd6": winograd_conv(module, 6, reflect=reflect, scale=scale),
            },
            mode=settings.kernels,
            compute_dtype=settings.dtype,
        )

    def blur_up_conv(module, m: int, *, where: str) -> Callable[[], BlurUpConv]:
        """BlurUp (its /16 folded into the weight) and the conv as one fp32 Winograd op, from the fp32 weight."""
        _expect_conv(module, nn.Conv2d, 1, 1, where)
        return lambda: BlurUpConv(
            fp32_weight(module, 1 / 16),
            transform_weight(blur_up_conv_weight(fp32_weight(module, 1 / 16)), m, dtype=torch.float32),
        )

    def up_conv(module, *, where: str) -> Op:
        """An up block's blur-upsample + 3x3 conv: unfused direct, or fused (ops.BlurUpConv) in Winograd."""
        direct = Seq(BlurUp(), Conv(weight(module, 1 / 16, padding=1, where=where), None, reflect=False))
        if settings.kernels == "direct":
            return direct
        if settings.kernels == "winograd":
            return blur_up_conv(module, WINOGRAD_TILE, where=where)()
        return ConvChoice(
            where,
            f"blur-up+conv3x3 {module.in_channels}->{module.out_channels}",
            {
                "direct": lambda: direct,
                "fused-winograd4": blur_up_conv(module, 4, where=where),
                "fused-winograd6": blur_up_conv(module, 6, where=where),
            },
            mode=settings.kernels,
            compute_dtype=settings.dtype,
        )

    norms = 0

    def norm(channels: int, relu: bool = True, scale: float = 1.0) -> Norm:
        nonlocal norms
        norms += 1
        return Norm(norms - 1, relu, channels, scale, device, stable=settings.stable_norms)

    # A conv bias in front of an InstanceNorm shifts every pixel of a channel equally and is
    # removed by the mean subtraction: those convs run without it.
    stem = model.stem
    ops: list[Op] = [conv(stem, reflect=True, where="stem"), norm(stem.out_channels)]
    for i, block in enumerate(model.down):
        c, where = block.conv.out_channels, f"down.{i}.conv"
        if isinstance(block.blur, BlurDownsample):
            ops += [conv(block.conv, reflect=False, padding=1, where=where), norm(c, scale=1 / 16), BlurDown()]
        else:
            ops += [StridedConv(weight(block.conv, stride=2, padding=1, where=where), None), norm(c)]
    for i, block in enumerate(model.blocks):
        c = block.conv1.out_channels
        ops += [
            Save(i),
            conv(block.conv1, reflect=True, where=f"blocks.{i}.conv1"),
            norm(c),
            conv(block.conv2, reflect=True, where=f"blocks.{i}.conv2"),
            norm(c, relu=False),
            AddSaved(i),
        ]
    for i, block in enumerate(model.up):
        c, where = block.conv.out_channels, f"up.{i}.conv"
        if isinstance(block.upsample, BlurUpsample):
            ops += [up_conv(block.conv, where=where), norm(c)]
        else:
            if block.conv.output_padding != (1, 1):
                raise UnsupportedLayerError(f"{where}: output_padding {block.conv.output_padding}, expected (1, 1)")
            w = weight(block.conv, kind=nn.ConvTranspose2d, stride=2, padding=1, where=where)
            ops += [TransposedConv(w, None), norm(c)]
    ops += [conv(model.head, reflect=True, where="head", with_bias=True), Tanh()]
    return ops


_CACHE: weakref.WeakKeyDictionary[ScenimefyTranslator, dict] = weakref.WeakKeyDictionary()


def ops_for(model: ScenimefyTranslator, settings: ExecutionSettings, device: torch.device) -> list[Op]:
    """Prepared ops, cached per model and settings until a parameter changes (e.g. training)."""
    version = tuple((p.data_ptr(), p._version) for p in model.parameters())
    per_model = _CACHE.setdefault(model, {})
    key = (settings, str(device))
    hit = per_model.get(key)
    if hit is None or hit[0] != version:
        hit = per_model[key] = (version, build_ops(model, settings, device))
    return hit[1]
