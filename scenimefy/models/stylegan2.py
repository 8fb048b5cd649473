"""StyleGAN2 (Karras et al., CVPR 2020) generator and discriminator in pure PyTorch.

Scenimefy's stage 1 (paper 3.1) trains a source StyleGAN2 G_s on real scenes and fine-tunes a copy
G_t on anime scenes; the same latent w through both gives a pseudo pair (x_p, y_p).

Parameter names follow the rosinality/stylegan2-pytorch layout the authors' checkpoints use
(``style.<i>``, ``conv1``, ``convs.<i>``, ``to_rgbs.<i>``, ``noises.noise_<i>``; D's ``convs``,
``final_conv``, ``final_linear``), so their state dicts load after dropping the blur-kernel
buffers (see ``scenimefy.convert.stylegan2_from_rosinality``). Weights use the equalised learning
rate (stored as N(0, 1), scaled at run time), as in every StyleGAN2 implementation.

Channels per resolution follow the reference table (512 up to 32 px, then 16384 * cm / res:
at 256 px and cm 2 that is 512, 512, 512, 512, 512, 256, 128); ``channel_max`` caps every entry,
which makes tiny test models trivial.

Latents: ``mapping(z)`` gives w (B, style_dim); the synthesis network reads one w per layer,
``n_latent`` of them (``2 * log2(size) - 2``), as (B, n_latent, style_dim). ``truncate`` and
``mix_styles`` build those per-layer latents; ``forward`` only synthesises.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from diffusers import ModelMixin
from diffusers.configuration_utils import ConfigMixin, register_to_config
from torch import nn

from scenimefy.models.ops import Blur, FusedLeakyReLU, Upsample, fused_leaky_relu

NOISE_MODES = ("const", "random", "none")


def channel_table(size: int, channel_multiplier: int = 2, channel_max: int | None = None) -> dict[int, int]:
    """Channels at each resolution 4 .. ``size`` of the reference StyleGAN2, capped at ``channel_max``."""
    log_size = _log2_size(size)
    table = {}
    for log_res in range(2, log_size + 1):
        res = 2**log_res
        channels = 512 if res <= 32 else 16384 * channel_multiplier // res
        table[res] = min(channels, channel_max) if channel_max else channels
    return table


def _log2_size(size: int) -> int:
    log_size = int(math.log2(size)) if size > 0 else 0
    if size < 4 or 2**log_size != size:
        raise ValueError(f"size must be a power of two >= 4, got {size}")
    return log_size


class PixelNorm(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.rsqrt(x.square().mean(dim=1, keepdim=True) + 1e-8)


class EqualLinear(nn.Module):
    """Linear layer with the equalised learning rate; ``lr_mul`` slows the mapping network down."""

    def __init__(
        self, in_dim: int, out_dim: int, bias_init: float = 0.0, lr_mul: float = 1.0, activation: bool = False
    ) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_dim, in_dim).div_(lr_mul))
        self.bias = nn.Parameter(torch.full((out_dim,), float(bias_init)))
        self.scale = lr_mul / math.sqrt(in_dim)
        self.lr_mul = lr_mul
        self.activation = activation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.activation:
            return fused_leaky_relu(F.linear(x, self.weight * self.scale), self.bias * self.lr_mul)
        return F.linear(x, self.weight * self.scale, self.bias * self.lr_mul)


class EqualConv2d(nn.Module):
    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int = 1,
        padding: int = 0,
        bias: bool = True,
    ) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None
        self.scale = 1 / math.sqrt(in_channels * kernel_size**2)
        self.stride, self.padding = stride, padding

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.weight * self.scale, self.bias, stride=self.stride, padding=self.padding)


class ModulatedConv2d(nn.Module):
    """Conv whose input channels are scaled by a per-sample style, then demodulated (StyleGAN2 Eq. 1-3).

    Runs as one shared-weight conv on the modulated input with a per-sample output rescale,
    which equals the per-sample weight formulation and avoids a grouped conv over the batch.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        style_dim: int,
        demodulate: bool = True,
        upsample: bool = False,
        blur_kernel: Sequence[float] = (1, 3, 3, 1),
    ) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(1, out_channels, in_channels, kernel_size, kernel_size))
        self.modulation = EqualLinear(style_dim, in_channels, bias_init=1.0)
        self.scale = 1 / math.sqrt(in_channels * kernel_size**2)
        self.padding = kernel_size // 2
        self.demodulate = demodulate
        self.upsample = upsample
        if upsample:
            # Transposed conv (stride 2) then blur; pads so the output is exactly 2H x 2W.
            p = (len(blur_kernel) - 2) - (kernel_size - 1)
            self.blur = Blur(blur_kernel, pad=((p + 1) // 2 + 1, p // 2 + 1), upsample_factor=2)

    def forward(self, x: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
        batch = x.shape[0]
        styles = self.modulation(style)  # (B, C_in)
        weight = self.weight[0] * self.scale  # (C_out, C_in, k, k)
        if self.demodulate and runs_in_fp16(x):
            # As StyleGAN2-ADA, "to avoid FP16 overflow": styles scaled to a max of 1 per sample,
            # weights to a max of 1/sqrt(fan_in) per output channel, before the fp16 conv;
            # demodulation divides the same factors out again (result unchanged up to its 1e-8).
            weight = weight * (self.scale / weight.abs().amax(dim=(1, 2, 3), keepdim=True))
            styles = styles / styles.abs().amax(dim=1, keepdim=True)
        x = x * styles.view(batch, -1, 1, 1)
        if self.upsample:
            out = self.blur(F.conv_transpose2d(x, weight.transpose(0, 1), stride=2))  # (B, C_out, 2H, 2W)
        else:
            out = F.conv2d(x, weight, padding=self.padding)  # (B, C_out, H, W)
        if self.demodulate:
            # 1 / ||w * s||_2 per (sample, output channel), without materialising (B, C_out, C_in, k, k).
            demod = torch.rsqrt(styles.square() @ weight.square().sum(dim=(2, 3)).t() + 1e-8)  # (B, C_out)
            out = out * demod.view(batch, -1, 1, 1)
        return out


def runs_in_fp16(x: torch.Tensor) -> bool:
    """Whether the convs on ``x`` compute in fp16: an fp16 tensor, or fp16 autocast on its device."""
    if x.dtype == torch.float16:
        return True
    device = x.device.type
    return torch.is_autocast_enabled(device) and torch.get_autocast_dtype(device) == torch.float16


class NoiseInjection(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor, noise: torch.Tensor | None = None) -> torch.Tensor:
        if noise is None:
            noise = torch.randn(x.shape[0], 1, x.shape[2], x.shape[3], device=x.device, dtype=x.dtype)
        return x + self.weight * noise


class ConstantInput(nn.Module):
    def __init__(self, channels: int, size: int = 4) -> None:
        super().__init__()
        self.input = nn.Parameter(torch.randn(1, channels, size, size))

    def forward(self, batch: int) -> torch.Tensor:
        return self.input.expand(batch, -1, -1, -1)


class StyledConv(nn.Module):
    """Modulated conv -> noise -> bias + leaky ReLU."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        style_dim: int,
        upsample: bool = False,
        blur_kernel: Sequence[float] = (1, 3, 3, 1),
    ) -> None:
        super().__init__()
        self.conv = ModulatedConv2d(
            in_channels, out_channels, kernel_size, style_dim, upsample=upsample, blur_kernel=blur_kernel
        )
        self.noise = NoiseInjection()
        self.activate = FusedLeakyReLU(out_channels)

    def forward(self, x: torch.Tensor, style: torch.Tensor, noise: torch.Tensor | None = None) -> torch.Tensor:
        return self.activate(self.noise(self.conv(x, style), noise))


class ToRGB(nn.Module):
    """1x1 modulated conv (no demodulation) to RGB, added to the upsampled RGB of the previous block."""

    def __init__(
        self, in_channels: int, style_dim: int, upsample: bool = True, blur_kernel: Sequence[float] = (1, 3, 3, 1)
    ) -> None:
        super().__init__()
        self.upsample = Upsample(blur_kernel) if upsample else None
        self.conv = ModulatedConv2d(in_channels, 3, 1, style_dim, demodulate=False)
        self.bias = nn.Parameter(torch.zeros(1, 3, 1, 1))

    def forward(self, x: torch.Tensor, style: torch.Tensor, skip: torch.Tensor | None = None) -> torch.Tensor:
        out = self.conv(x, style) + self.bias
        if skip is not None:
            out = out + self.upsample(skip)
        return out


class StyleGAN2Generator(ModelMixin, ConfigMixin):
    """StyleGAN2 generator: z -> ``mapping`` -> w -> ``forward`` -> (B, 3, size, size) image in ~[-1, 1].

    Args:
        size: output resolution (a power of two).
        style_dim: dimension of z and w.
        n_mlp: layers of the mapping network.
        channel_multiplier: widens the layers above 32 px (the reference table).
        channel_max: caps every layer's channels (None: the uncapped reference table).
        lr_mlp: learning-rate multiplier of the mapping network.
        blur_kernel: the 1-D FIR filter of every resampling step.
    """

    config_name = "config.json"

    @register_to_config
    def __init__(
        self,
        size: int = 256,
        style_dim: int = 512,
        n_mlp: int = 8,
        channel_multiplier: int = 2,
        channel_max: int | None = None,
        lr_mlp: float = 0.01,
        blur_kernel: Sequence[float] = (1, 3, 3, 1),
    ) -> None:
        super().__init__()
        self.size, self.style_dim = size, style_dim
        self.log_size = _log2_size(size)
        self.channels = channel_table(size, channel_multiplier, channel_max)
        blur_kernel = list(blur_kernel)

        self.style = nn.Sequential(
            PixelNorm(), *[EqualLinear(style_dim, style_dim, lr_mul=lr_mlp, activation=True) for _ in range(n_mlp)]
        )
        self.input = ConstantInput(self.channels[4])
        self.conv1 = StyledConv(self.channels[4], self.channels[4], 3, style_dim, blur_kernel=blur_kernel)
        self.to_rgb1 = ToRGB(self.channels[4], style_dim, upsample=False)

        self.convs, self.to_rgbs = nn.ModuleList(), nn.ModuleList()
        in_channels = self.channels[4]
        for log_res in range(3, self.log_size + 1):
            out_channels = self.channels[2**log_res]
            self.convs.append(
                StyledConv(in_channels, out_channels, 3, style_dim, upsample=True, blur_kernel=blur_kernel)
            )
            self.convs.append(StyledConv(out_channels, out_channels, 3, style_dim, blur_kernel=blur_kernel))
            self.to_rgbs.append(ToRGB(out_channels, style_dim, blur_kernel=blur_kernel))
            in_channels = out_channels

        # The fixed per-layer noise images of noise_mode="const" (saved with the weights).
        self.noises = nn.Module()
        for i, shape in enumerate(self.noise_shapes):
            self.noises.register_buffer(f"noise_{i}", torch.randn(1, 1, *shape))

    @property
    def num_layers(self) -> int:
        """Synthesis convs, each with its own noise input."""
        return (self.log_size - 2) * 2 + 1

    @property
    def n_latent(self) -> int:
        """Per-layer latents the synthesis network reads (convs and ToRGBs)."""
        return self.log_size * 2 - 2

    @property
    def noise_shapes(self) -> list[tuple[int, int]]:
        return [(2 ** ((i + 5) // 2),) * 2 for i in range(self.num_layers)]

    def mapping(self, z: torch.Tensor) -> torch.Tensor:
        """z (B, style_dim) -> w (B, style_dim)."""
        if z.ndim != 2 or z.shape[1] != self.style_dim:
            raise ValueError(f"z must be (batch, {self.style_dim}), got {tuple(z.shape)}")
        return self.style(z)

    @torch.no_grad()
    def mean_latent(self, n_samples: int = 4096, generator: torch.Generator | None = None) -> torch.Tensor:
        """The mean w of ``n_samples`` random z (the truncation centre): (1, style_dim)."""
        sample_device = generator.device if generator is not None else self.device
        z = torch.randn(n_samples, self.style_dim, generator=generator, device=sample_device)
        return self.mapping(z.to(device=self.device, dtype=self.dtype)).mean(dim=0, keepdim=True)

    @staticmethod
    def truncate(w: torch.Tensor, mean_w: torch.Tensor, psi: float) -> torch.Tensor:
        """Truncation trick: w' = mean + psi * (w - mean); w (B, D) or (B, n_latent, D), mean_w (1, D)."""
        return mean_w + psi * (w - mean_w)

    def mix_styles(self, w1: torch.Tensor, w2: torch.Tensor, inject_index: int) -> torch.Tensor:
        """Style mixing: layers [0, inject_index) read w1, the rest w2; (B, D) x 2 -> (B, n_latent, D)."""
        if not 0 <= inject_index <= self.n_latent:
            raise ValueError(f"inject_index must lie in [0, {self.n_latent}], got {inject_index}")
        return torch.cat(
            [
                w1.unsqueeze(1).expand(-1, inject_index, -1),
                w2.unsqueeze(1).expand(-1, self.n_latent - inject_index, -1),
            ],
            dim=1,
        )

    def make_noise(self, batch: int = 1, generator: torch.Generator | None = None) -> list[torch.Tensor]:
        """Fresh noise images for every layer, (batch, 1, r, r) each: pass the same list to two
        generators (G_s and G_t) to make them see the same noise."""
        sample_device = generator.device if generator is not None else self.device
        return [
            torch.randn(batch, 1, *shape, generator=generator, device=sample_device).to(self.device, self.dtype)
            for shape in self.noise_shapes
        ]

    def synthesis_blocks(self) -> list[nn.ModuleList]:
        """The synthesis network by resolution: block i works at 4 * 2**i px (block 0: conv1 + to_rgb1;
        block i > 0: its upsampling conv, its conv and its ToRGB). Stage 1 freezes the first ones."""
        blocks = [nn.ModuleList([self.conv1, self.to_rgb1])]
        for i, to_rgb in enumerate(self.to_rgbs):
            blocks.append(nn.ModuleList([self.convs[2 * i], self.convs[2 * i + 1], to_rgb]))
        return blocks

    def _per_layer_latents(self, w: torch.Tensor) -> torch.Tensor:
        if w.ndim == 2 and w.shape[1] == self.style_dim:
            return w.unsqueeze(1).expand(-1, self.n_latent, -1)
        if w.ndim == 3 and w.shape[1:] == (self.n_latent, self.style_dim):
            return w
        raise ValueError(
            f"w must be (batch, {self.style_dim}) or (batch, {self.n_latent}, {self.style_dim}), got {tuple(w.shape)}"
        )

    def _noise_inputs(self, noise_mode: str, noise: Sequence[torch.Tensor] | None) -> list[torch.Tensor | None]:
        if noise is not None:
            if len(noise) != self.num_layers:
                raise ValueError(f"noise must hold {self.num_layers} tensors (one per layer), got {len(noise)}")
            return list(noise)
        if noise_mode == "const":
            return [getattr(self.noises, f"noise_{i}") for i in range(self.num_layers)]
        if noise_mode == "random":
            return [None] * self.num_layers
        if noise_mode == "none":
            return [torch.zeros((), device=self.device, dtype=self.dtype)] * self.num_layers
        raise ValueError(f"noise_mode must be one of {NOISE_MODES}, got {noise_mode!r}")

    def forward(
        self, w: torch.Tensor, noise_mode: str = "const", noise: Sequence[torch.Tensor] | None = None
    ) -> torch.Tensor:
        """Synthesis: w (B, style_dim) or per-layer (B, n_latent, style_dim) -> (B, 3, size, size).

        noise_mode: "const" (the stored noise images), "random" (fresh each call) or "none";
        ``noise`` (a list of ``num_layers`` tensors, see ``make_noise``) overrides it.
        """
        latent = self._per_layer_latents(w)  # (B, n_latent, D)
        noises = self._noise_inputs(noise_mode, noise)
        out = self.input(latent.shape[0])  # (B, C_4, 4, 4)
        out = self.conv1(out, latent[:, 0], noises[0])
        skip = self.to_rgb1(out, latent[:, 1])  # (B, 3, 4, 4)
        for i, to_rgb in enumerate(self.to_rgbs):
            out = self.convs[2 * i](out, latent[:, 2 * i + 1], noises[2 * i + 1])  # (B, C_r, r, r)
            out = self.convs[2 * i + 1](out, latent[:, 2 * i + 2], noises[2 * i + 2])
            skip = to_rgb(out, latent[:, 2 * i + 3], skip)  # (B, 3, r, r)
        return skip


class ConvLayer(nn.Sequential):
    """[blur ->] equalised conv (stride 2 when downsampling) [-> bias + leaky ReLU]."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        downsample: bool = False,
        blur_kernel: Sequence[float] = (1, 3, 3, 1),
        bias: bool = True,
        activate: bool = True,
    ) -> None:
        layers: list[nn.Module] = []
        if downsample:
            p = (len(blur_kernel) - 2) + (kernel_size - 1)
            layers.append(Blur(blur_kernel, pad=((p + 1) // 2, p // 2)))
            stride, padding = 2, 0
        else:
            stride, padding = 1, kernel_size // 2
        layers.append(EqualConv2d(in_channels, out_channels, kernel_size, stride, padding, bias=bias and not activate))
        if activate:
            layers.append(FusedLeakyReLU(out_channels, bias=bias))
        super().__init__(*layers)


class ResBlock(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, blur_kernel: Sequence[float] = (1, 3, 3, 1)) -> None:
        super().__init__()
        self.conv1 = ConvLayer(in_channels, in_channels, 3, blur_kernel=blur_kernel)
        self.conv2 = ConvLayer(in_channels, out_channels, 3, downsample=True, blur_kernel=blur_kernel)
        self.skip = ConvLayer(
            in_channels, out_channels, 1, downsample=True, blur_kernel=blur_kernel, bias=False, activate=False
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (self.conv2(self.conv1(x)) + self.skip(x)) / math.sqrt(2)  # (B, C_out, H/2, W/2)


class StyleGAN2Discriminator(ModelMixin, ConfigMixin):
    """StyleGAN2 residual discriminator: (B, 3, size, size) image -> (B, 1) logits.

    Args:
        size / channel_multiplier / channel_max / blur_kernel: as for the generator.
        stddev_group: samples per minibatch-stddev group (reduced to a divisor of the batch).
        stddev_feat: channel groups of the minibatch-stddev feature.
    """

    config_name = "config.json"

    @register_to_config
    def __init__(
        self,
        size: int = 256,
        channel_multiplier: int = 2,
        channel_max: int | None = None,
        blur_kernel: Sequence[float] = (1, 3, 3, 1),
        stddev_group: int = 4,
        stddev_feat: int = 1,
    ) -> None:
        super().__init__()
        self.size = size
        log_size = _log2_size(size)
        channels = channel_table(size, channel_multiplier, channel_max)
        blur_kernel = list(blur_kernel)
        layers: list[nn.Module] = [ConvLayer(3, channels[size], 1)]
        for log_res in range(log_size, 2, -1):
            layers.append(ResBlock(channels[2**log_res], channels[2 ** (log_res - 1)], blur_kernel))
        self.convs = nn.Sequential(*layers)
        self.stddev_group, self.stddev_feat = stddev_group, stddev_feat
        self.final_conv = ConvLayer(channels[4] + stddev_feat, channels[4], 3)
        self.final_linear = nn.Sequential(
            EqualLinear(channels[4] * 4 * 4, channels[4], activation=True), EqualLinear(channels[4], 1)
        )

    def minibatch_stddev(self, x: torch.Tensor) -> torch.Tensor:
        """Append the std over groups of samples as extra channels: (B, C, H, W) -> (B, C + F, H, W).

        Groups take every (B / G)-th sample, as the reference does; G = stddev_group, lowered to
        the largest divisor of B (the reference fails when G does not divide B).
        """
        batch, channels, height, width = x.shape
        group = min(batch, self.stddev_group)
        while batch % group:
            group -= 1
        feat = self.stddev_feat
        y = x.view(group, -1, feat, channels // feat, height, width)
        y = torch.sqrt(y.var(dim=0, unbiased=False) + 1e-8)  # (B/G, F, C/F, H, W)
        y = y.mean(dim=(2, 3, 4), keepdim=True).squeeze(2)  # (B/G, F, 1, 1)
        y = y.repeat(group, 1, height, width)  # (B, F, H, W)
        return torch.cat([x, y], dim=1)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        """(B, 3, size, size) in [-1, 1] -> (B, 1) realness logits."""
        if image.ndim != 4 or image.shape[1:] != (3, self.size, self.size):
            raise ValueError(f"image must be (batch, 3, {self.size}, {self.size}), got {tuple(image.shape)}")
        out = self.convs(image)  # (B, C_4, 4, 4)
        out = self.final_conv(self.minibatch_stddev(out))
        return self.final_linear(out.flatten(1))
