"""One optimisation step of Scenimefy's semi-supervised translator (paper 3.3), shared by
``train/train_translator.py`` and ``benchmarks/bench_learning.py``.

The step, for a batch of real photos x, anime images y and pseudo pairs (x_p, y_p):

1. one generator pass on the concatenation [x, y, x_p] -> G(x), G(y) (identity), G(x_p);
2. discriminators: D_U separates y from G(x); D_P separates (x_p, y_p) from (x_p, G(x_p));
3. generator, Eq. 8: L = L_unsup + lambda_sup(t) * L_sup with
   L_unsup = L_GAN(G, D_U) + lambda_SRC L_SRC + lambda_hDCE L_hDCE      (Eq. 7)
   L_sup   = L_cGAN(G, D_P) + lambda_style L_StylePatchNCE               (Eq. 6)
   (+ lambda_vgg * VGG content loss between x and G(x) in the Hosoda setting).

Batching x, y and x_p into one call is exact (instance norm is per sample) and lets DDP see one
forward per step. Encoder taps are read with ``encode`` on the bare module (the patch heads and
losses only need features), and the discriminators are called bare while frozen in the generator
step, so DistributedDataParallel's gradient hooks only see the calls they synchronise.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any

import torch
from accelerate.utils import extract_model_from_parallel
from PIL import Image
from torch import nn
from torch.utils.data import DataLoader

from scenimefy.data import ImageDataset, PairedDataset, UnpairedDataset
from scenimefy.data.transforms import to_pil
from scenimefy.losses.adversarial import discriminator_loss, generator_adversarial_loss
from scenimefy.losses.contrastive import (
    hard_negative_contrastive_loss,
    hdce_gamma,
    relation_weights,
    semantic_relation_consistency,
    style_patch_nce_loss,
)
from scenimefy.models.discriminator import PatchDiscriminator
from scenimefy.models.patch_sampler import PatchSampler, encoder_tap_channels
from scenimefy.models.translator import NCE_LAYERS, ScenimefyTranslator


def supervised_weight(epoch: int, total_epochs: int, decay: bool = True) -> float:
    """lambda_sup(t) = cos(pi / (2T) * (t - 1)) for epoch t = 1..T (paper: cos(pi/40 (t-1)), T = 20).

    Falls from 1 at the first epoch to cos(pi (T-1) / 2T) at the last, so the coarse pseudo pairs
    guide early training and the real anime distribution dominates late. (The reference writes
    ``cos(pi/2*N*(t-1))``, which is 1.0 at every epoch for N = 20; ``decay=False`` gives that
    constant 1.0, the paper's "w/o lambda_sup decay" ablation.)
    """
    if not 1 <= epoch <= total_epochs:
        raise ValueError(f"epoch must lie in [1, {total_epochs}], got {epoch}")
    if not decay:
        return 1.0
    # Eq. 8 weight: lambda_sup(t) = cos(pi / (2T) * (t - 1))
    return math.cos(math.pi / (2 * total_epochs) * (epoch - 1))


@dataclass
class LossSettings:
    """Weights and hyperparameters of the translator losses (paper defaults)."""

    # Losses (Eq. 6-8; paper weights).
    lambda_gan: float = 1.0  # weight of L_GAN(G, D_U), unsupervised branch
    lambda_gan_pair: float = 1.0  # weight of L_cGAN(G, D_P), supervised branch
    lambda_src: float = 0.05  # weight of L_SRC (semantic relation consistency)
    lambda_hdce: float = 0.1  # weight of L_hDCE (hard-negative contrastive)
    lambda_style: float = 0.05  # weight of StylePatchNCE, applied once (the reference squares it by accident)
    lambda_vgg: float = 0.0  # weight of the VGG content loss (0.2 for the Hosoda setting)
    nce_layers: tuple[int, ...] = NCE_LAYERS  # encoder taps of the contrastive losses (at most 11 + n_blocks)
    num_patches: int = 256  # patches sampled per tap
    nce_temperature: float = 0.07  # temperature of the contrastive losses
    hdce_gamma_start: float = 50.0  # hDCE relation temperature gamma at the first epoch ...
    hdce_gamma_end: float = 10.0  # ... falling linearly to this at the last
    hdce_identity: bool = True  # also hDCE on (y, G(y)), averaged with (x, G(x)) (reference --dce_idt)
    hard_negatives: bool = True  # weight hDCE negatives by the SRC relations (reference: not --no_Hneg)
    decay_supervised: bool = True  # lambda_sup(t) cosine decay (false: constant 1, like the reference)
    supervised: bool = True  # the pseudo-pair branch
    unsupervised: bool = True  # the real/anime branch

    def __post_init__(self) -> None:
        if not (self.supervised or self.unsupervised):
            raise ValueError("--supervised false and --unsupervised false leave nothing to train: turn one branch on")

    @classmethod
    def from_config(cls, config: Any) -> LossSettings:
        """The loss settings among the attributes of a larger config (e.g. a training script's)."""
        return cls(**{f.name: getattr(config, f.name) for f in dataclasses.fields(cls)})

    @property
    def uses_patch_head(self) -> bool:
        return self.unsupervised and (self.lambda_src > 0 or self.lambda_hdce > 0)

    @property
    def uses_style_head(self) -> bool:
        return self.supervised and self.lambda_style > 0

    @property
    def uses_paired_discriminator(self) -> bool:
        return self.supervised and self.lambda_gan_pair > 0

    @property
    def uses_unpaired_discriminator(self) -> bool:
        return self.unsupervised and self.lambda_gan > 0


@dataclass
class TranslatorNetworks:
    """G and everything trained with it; a network no enabled loss uses is None."""

    generator: nn.Module  # G, ScenimefyTranslator
    disc_unpaired: nn.Module | None  # D_U on images
    disc_paired: nn.Module | None  # D_P on (input, output) channel concatenations
    patch_head: nn.Module | None  # F, for SRC and hDCE
    style_patch_head: nn.Module | None  # F_s, for StylePatchNCE

    def discriminators(self) -> list[nn.Module]:
        return [d for d in (self.disc_unpaired, self.disc_paired) if d is not None]

    def generator_side(self) -> list[nn.Module]:
        return [m for m in (self.generator, self.patch_head, self.style_patch_head) if m is not None]


def init_weights(module: nn.Module, gain: float = 0.02) -> nn.Module:
    """Xavier-normal weights with ``gain``, zero biases, on every conv and linear layer (reference init)."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            nn.init.xavier_normal_(m.weight, gain=gain)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
    return module


def build_networks(
    settings: LossSettings,
    translator_config: Mapping[str, Any] | None = None,
    generator: ScenimefyTranslator | None = None,
    ndf: int = 64,
    n_layers_d: int = 3,
    embed_dim: int = 256,
    init_gain: float = 0.02,
) -> TranslatorNetworks:
    """Build (eagerly) and initialise G, D_U, D_P, F and F_s for ``settings``.

    ``generator`` continues from given weights (e.g. a converted released checkpoint); otherwise a
    new translator is built from ``translator_config`` and initialised like the reference.
    """
    if generator is None:
        generator = init_weights(ScenimefyTranslator.from_config(dict(translator_config or {})), init_gain)
    channels = encoder_tap_channels(generator.config, settings.nce_layers)
    in_ch, out_ch = generator.config.in_channels, generator.config.out_channels

    def head() -> PatchSampler:
        return init_weights(PatchSampler(in_channels=channels, embed_dim=embed_dim), init_gain)

    def disc(channels_in: int) -> PatchDiscriminator:
        return init_weights(PatchDiscriminator(in_channels=channels_in, ndf=ndf, n_layers=n_layers_d), init_gain)

    return TranslatorNetworks(
        generator=generator,
        disc_unpaired=disc(out_ch) if settings.uses_unpaired_discriminator else None,
        disc_paired=disc(in_ch + out_ch) if settings.uses_paired_discriminator else None,
        patch_head=head() if settings.uses_patch_head else None,
        style_patch_head=head() if settings.uses_style_head else None,
    )


def _bare(module: nn.Module) -> nn.Module:
    return extract_model_from_parallel(module)


def _embed(head: nn.Module, queries: Sequence[torch.Tensor], keys: Sequence[torch.Tensor], num_patches: int):
    """Embed the same sampled positions of the query and key feature maps with one head call."""
    ids = PatchSampler.sample_patch_ids(queries, num_patches)
    both = head([torch.cat([q, k]) for q, k in zip(queries, keys)], ids)
    n = queries[0].shape[0]
    return [e[:n] for e in both], [e[n:] for e in both]


def _generator_losses(
    nets: TranslatorNetworks,
    batch: Mapping[str, torch.Tensor],
    fakes: Mapping[str, torch.Tensor],
    settings: LossSettings,
    lambda_sup: float,
    gamma: float,
    vgg: nn.Module | None,
) -> dict[str, torch.Tensor]:
    s = settings
    G = _bare(nets.generator)
    losses: dict[str, torch.Tensor] = {}
    if s.unsupervised:
        x, fake = batch["real"], fakes["real"]
        if nets.disc_unpaired is not None:
            losses["g_gan"] = s.lambda_gan * generator_adversarial_loss(_bare(nets.disc_unpaired)(fake))
        if nets.patch_head is not None:
            identity = s.hdce_identity and s.lambda_hdce > 0
            sources = torch.cat([x, batch["anime"]]) if identity else x
            outputs = torch.cat([fake, fakes["anime"]]) if identity else fake
            q_all, k_all = _embed(
                nets.patch_head, G.encode(outputs, s.nce_layers), G.encode(sources, s.nce_layers), s.num_patches
            )
            n = x.shape[0]
            q, k = [e[:n] for e in q_all], [e[:n] for e in k_all]
            src_and_weights = [semantic_relation_consistency(ql, kl, gamma) for ql, kl in zip(q, k)]
            if s.lambda_src > 0:
                losses["src"] = s.lambda_src * torch.stack([loss for loss, _ in src_and_weights]).mean()
            if s.lambda_hdce > 0:
                weights = [w if s.hard_negatives else None for _, w in src_and_weights]
                hdce = torch.stack(
                    [hard_negative_contrastive_loss(ql, kl, w, s.nce_temperature) for ql, kl, w in zip(q, k, weights)]
                ).mean()
                if identity:
                    q_y, k_y = [e[n:] for e in q_all], [e[n:] for e in k_all]
                    w_y = [relation_weights(kl, gamma) if s.hard_negatives else None for kl in k_y]
                    hdce_y = torch.stack(
                        [
                            hard_negative_contrastive_loss(ql, kl, w, s.nce_temperature)
                            for ql, kl, w in zip(q_y, k_y, w_y)
                        ]
                    ).mean()
                    losses["hdce_identity"] = s.lambda_hdce * hdce_y
                    hdce = 0.5 * (hdce + hdce_y)
                losses["hdce"] = s.lambda_hdce * hdce
        if vgg is not None and s.lambda_vgg > 0:
            losses["vgg"] = s.lambda_vgg * vgg(fake, x)
    if s.supervised:
        x_p, y_p, fake_p = batch["pair_real"], batch["pair_anime"], fakes["pair_real"]
        if nets.disc_paired is not None:
            pred = _bare(nets.disc_paired)(torch.cat([x_p, fake_p], dim=1))
            losses["g_gan_pair"] = lambda_sup * s.lambda_gan_pair * generator_adversarial_loss(pred)
        if nets.style_patch_head is not None:
            q, k = _embed(
                nets.style_patch_head, G.encode(fake_p, s.nce_layers), G.encode(y_p, s.nce_layers), s.num_patches
            )
            losses["style"] = lambda_sup * s.lambda_style * style_patch_nce_loss(q, k, s.nce_temperature)
    return losses


def train_step(
    nets: TranslatorNetworks,
    generator_optimizer: torch.optim.Optimizer,
    discriminator_optimizer: torch.optim.Optimizer | None,
    batch: Mapping[str, torch.Tensor],
    epoch: int,
    total_epochs: int,
    settings: LossSettings,
    vgg: nn.Module | None = None,
    backward: Callable[[torch.Tensor], None] = torch.Tensor.backward,
    autocast: Callable[[], AbstractContextManager] = contextlib.nullcontext,
) -> dict[str, float]:
    """One discriminator update then one generator update; returns the loss values for logging.

    ``batch`` holds ``real`` and ``anime`` (unsupervised branch) and ``pair_real`` and
    ``pair_anime`` (supervised branch), each (B, 3, H, W) in [-1, 1]. ``epoch`` (1-based) sets
    lambda_sup and the hDCE gamma. ``backward`` is ``accelerator.backward`` under accelerate.
    """
    s = settings
    lambda_sup = supervised_weight(epoch, total_epochs, s.decay_supervised)
    gamma = hdce_gamma(epoch, total_epochs, s.hdce_gamma_start, s.hdce_gamma_end)
    names = []  # the inputs G translates this step
    if s.unsupervised:
        names.append("real")
        if s.hdce_identity and s.lambda_hdce > 0 and nets.patch_head is not None:
            names.append("anime")  # G(y), for the identity hDCE term
    if s.supervised:
        names.append("pair_real")

    with autocast():
        inputs = torch.cat([batch[name] for name in names])
        outputs = nets.generator(inputs).chunk(len(names))
    fakes = dict(zip(names, outputs))
    logs: dict[str, float] = {"lambda_sup": lambda_sup, "hdce_gamma": gamma}

    # Discriminators: real -> 1, fake -> 0, on detached fakes.
    discriminators = nets.discriminators()
    if discriminators:
        for d in discriminators:
            d.requires_grad_(True)
        discriminator_optimizer.zero_grad(set_to_none=True)
        d_losses = {}
        with autocast():
            if nets.disc_unpaired is not None:
                fake = fakes["real"].detach()
                pred = nets.disc_unpaired(torch.cat([batch["anime"], fake]))
                d_losses["d_unpaired"] = discriminator_loss(*pred.chunk(2))
            if nets.disc_paired is not None:
                x_p = batch["pair_real"]
                real_pair = torch.cat([x_p, batch["pair_anime"]], dim=1)
                fake_pair = torch.cat([x_p, fakes["pair_real"].detach()], dim=1)
                pred = nets.disc_paired(torch.cat([real_pair, fake_pair]))
                d_losses["d_paired"] = discriminator_loss(*pred.chunk(2))
        backward(sum(d_losses.values()))
        discriminator_optimizer.step()
        logs.update({k: v.item() for k, v in d_losses.items()})
        for d in discriminators:
            d.requires_grad_(False)  # frozen while the generator learns to fool them

    # Generator (and patch heads).
    generator_optimizer.zero_grad(set_to_none=True)
    with autocast():
        g_losses = _generator_losses(nets, batch, fakes, s, lambda_sup, gamma, vgg)
    if not g_losses:
        raise ValueError("every generator loss weight is 0: nothing to train")
    total = sum(v for k, v in g_losses.items() if k != "hdce_identity")  # already averaged into "hdce"
    backward(total)
    generator_optimizer.step()
    logs.update({k: v.item() for k, v in g_losses.items()})
    logs["g_total"] = total.item()
    return logs


def encoder_layer_count(translator_config: Mapping[str, Any]) -> int:
    """How many encoder layers ``nce_layers`` can tap (indices 0 .. count - 1), from the config alone."""
    with torch.device("meta"):
        probe = ScenimefyTranslator.from_config(dict(translator_config))
    return len(probe._encoder_steps())


def constant_then_linear_decay(total_steps: int, decay_start: int) -> Callable[[int], float]:
    """LR factor: 1 until ``decay_start``, then linearly down to 0 at ``total_steps`` (LambdaLR form)."""
    span = max(1, total_steps - decay_start)

    def factor(step: int) -> float:
        return 1.0 if step < decay_start else max(0.0, 1.0 - (step - decay_start) / span)

    return factor


def make_dataloaders(config: Any, settings: LossSettings) -> tuple[DataLoader | None, DataLoader | None]:
    """(unpaired loader or None, paired loader or None), for the enabled branches."""
    crop = {"load_size": config.load_size, "crop_size": config.crop_size, "flip": config.flip}
    loader = {
        "batch_size": config.train_batch_size,
        "shuffle": True,
        "drop_last": True,
        "num_workers": config.dataloader_num_workers,
    }
    unpaired = paired = None
    if settings.unsupervised:
        real = ImageDataset(config.real_data, image_column=config.image_column, **crop)
        anime = ImageDataset(config.anime_data, image_column=config.image_column, **crop)
        unpaired = DataLoader(UnpairedDataset(real, anime), **loader)
    if settings.supervised:
        pairs = PairedDataset(
            config.paired_data, real_column=config.real_column, anime_column=config.anime_column, **crop
        )
        paired = DataLoader(pairs, **loader)
    return unpaired, paired


def sample_images(config: Any) -> torch.Tensor:
    """Fixed centre crops of the first real photos (or pseudo-pair inputs), for the sample grids."""
    if config.real_data:
        source = ImageDataset(
            config.real_data, config.load_size, config.crop_size, random_crop=False, image_column=config.image_column
        )
        items = [source[i] for i in range(min(config.num_sample_images, len(source)))]
    else:
        source = PairedDataset(
            config.paired_data,
            config.load_size,
            config.crop_size,
            random_crop=False,
            real_column=config.real_column,
            anime_column=config.anime_column,
        )
        items = [source[i]["real"] for i in range(min(config.num_sample_images, len(source)))]
    return torch.stack(items)


@torch.no_grad()
def sample_grid(generator: nn.Module, images: torch.Tensor) -> Image.Image:
    """Rows of [input | translation] for a (N, 3, H, W) batch in [-1, 1]."""
    G = _bare(generator)
    was_training = G.training
    G.eval()
    param = next(G.parameters())
    outputs = torch.cat([G(x[None].to(param.device, param.dtype)) for x in images]).float().cpu()
    G.train(was_training)
    n, _, h, w = images.shape
    grid = Image.new("RGB", (2 * w, n * h))
    for row, (x, y) in enumerate(zip(images, outputs)):
        grid.paste(to_pil(x), (0, row * h))
        grid.paste(to_pil(y), (w, row * h))
    return grid
