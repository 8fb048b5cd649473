"""Stage 1b of Scenimefy: semantic-constrained fine-tuning of G_s into the anime generator G_t (paper 3.1, 4.1).

    accelerate launch train/finetune_stylegan.py --config train/configs/finetune_shinkai.yaml \
        --source_model outputs/stylegan-lhq --train_data data/anime/shinkai

G_t starts as a copy of G_s. The mapping network, the early (low-resolution) synthesis blocks and
the style affines of those blocks are frozen; only the last ``trainable_blocks`` synthesis blocks
(the paper: "the last three layers") are trained, so x_p = G_s(w) and y_p = G_t(w) keep the same
layout. Both generators see the same latents and the same noise. G_t minimises (Eq. 3)

    L_GAN(G_t, D) + lambda_global (D_CLIP(x_p, y_p) + lambda_lpips LPIPS(x_p, y_p)) + lambda_patch L_patch

with L_patch a PatchNCE over CLIP embeddings of random crops of y_p and x_p at the same / other
positions. D (initialised from the source discriminator when there is one) is trained with the
logistic loss and lazy R1 on the anime images. Paper settings: lambda_lpips 0.01, lambda_global
1.0, lambda_patch 0.05, 1,000 iterations. CLIP comes from open_clip, LPIPS from lpips; with
``--random_priors true`` both are randomly initialised stand-ins (offline smoke runs only).

Outputs under ``output_dir``: ``checkpoint-<step>/`` (accelerate state + ``generator/``; resume
with ``--resume latest``), ``samples/step-<step>.png`` (fixed truncated latents: G_s | G_t pairs
side by side), ``logs/<project>/metrics.jsonl`` and, at the end, ``generator/`` (the EMA of G_t)
and ``discriminator/``. Stage 2 then reads the source and this generator (train/generate_pairs.py).
"""

from __future__ import annotations

import copy
import logging
from dataclasses import dataclass
from pathlib import Path

import torch
from accelerate import Accelerator
from accelerate.logging import get_logger
from accelerate.utils import ProjectConfiguration, set_seed
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

import scenimefy  # noqa: F401  (first: makes torchvision importable for lpips / open_clip)
from scenimefy.data import ImageDataset
from scenimefy.hub.convert import CheckpointError
from scenimefy.hub.convert_stylegan2 import load_rosinality_checkpoint, stylegan2_from_rosinality
from scenimefy.losses.clip import PriorWeightsError, load_clip_image_encoder
from scenimefy.losses.finetune import finetune_generator_loss, load_lpips
from scenimefy.models import StyleGAN2Discriminator, StyleGAN2Generator
from scenimefy.training.checkpoints import resume_state, save_checkpoint
from scenimefy.training.config import ConfigError, config_to_dict, parse_config
from scenimefy.training.stylegan import (
    cycle,
    discriminator_step,
    ema_update,
    image_grid,
    make_trackers,
    push_folder_to_hub,
    sample_latents,
    set_requires_grad,
)

logger = get_logger(__name__)


@dataclass
class FinetuneStyleGANConfig:
    """Fine-tune a source StyleGAN2 on anime scenes with CLIP / LPIPS constraints (Scenimefy stage 1)."""

    # Source G_s (and D): a folder with generator/ (+ discriminator/), e.g. train_stylegan.py's
    # output or `scenimefy convert`'s, or the authors' rosinality .pt (lhq-220000.pt).
    source_model: str = ""
    # Anime scenes: an image folder (recursive), a `datasets` folder or a Hub dataset id.
    train_data: str = ""
    image_column: str = "image"
    flip: bool = True
    dataloader_num_workers: int = 0

    # What is trained: the last `trainable_blocks` synthesis blocks (one block per resolution).
    trainable_blocks: int = 3

    # Loss (Eq. 1-3).
    lambda_global: float = 1.0
    lambda_lpips: float = 0.01
    lambda_patch: float = 0.05
    num_patches: int = 8  # random crops per image for L_patch
    patch_size: int = 64  # crop side in pixels (resized to CLIP's input)
    nce_temperature: float = 0.07
    clip_model: str = "ViT-B-32"  # open_clip name, or a model-config .json
    clip_pretrained: str = "openai"  # open_clip pretrained tag
    lpips_net: str = "vgg"  # vgg (the paper's VGG perceptual loss), alex, squeeze
    random_priors: bool = False  # randomly initialised CLIP and LPIPS (offline smoke runs only)

    # Optimisation.
    max_train_steps: int = 1000
    train_batch_size: int = 8  # per process
    learning_rate: float = 0.002
    r1_gamma: float = 10.0
    d_reg_every: int = 16
    mixing_prob: float = 0.9
    ema_decay: float = 0.5 ** (32 / 10_000)
    seed: int | None = 0

    # Outputs.
    output_dir: str = "outputs/stylegan-shinkai"
    checkpointing_steps: int = 500
    checkpoints_total_limit: int | None = 3
    resume: str | None = None  # "latest" or a checkpoint-<step> folder
    sample_steps: int = 100  # 0: only at the end
    num_sample_images: int = 8
    sample_truncation: float = 0.7  # psi of the sample grids (the pairs of stage 2 use 0.7)
    report_to: str = "jsonl"
    tracker_project_name: str = "stylegan-finetune"
    push_to_hub: bool = False
    hub_model_id: str | None = None


def load_source(path: str) -> tuple[StyleGAN2Generator, StyleGAN2Discriminator | None]:
    """G_s and (if present) D from a converted folder or a rosinality .pt."""
    source = Path(path)
    if source.is_file():
        states = load_rosinality_checkpoint(source)
        discriminator = stylegan2_from_rosinality(states, "d") if "d" in states else None
        return stylegan2_from_rosinality(states, "g_ema"), discriminator
    if not (source / "generator" / "config.json").is_file():
        raise ConfigError(
            f"--source_model {source}: expected a folder with generator/ (and discriminator/) or a .pt file"
        )
    generator = StyleGAN2Generator.from_pretrained(source / "generator")
    has_d = (source / "discriminator" / "config.json").is_file()
    return generator, StyleGAN2Discriminator.from_pretrained(source / "discriminator") if has_d else None


def freeze_all_but_last_blocks(generator: StyleGAN2Generator, trainable_blocks: int) -> set[int]:
    """Freeze G except its last ``trainable_blocks`` synthesis blocks; returns the trained params' ids."""
    blocks = generator.synthesis_blocks()
    if not 1 <= trainable_blocks <= len(blocks):
        raise ConfigError(f"trainable_blocks must lie in [1, {len(blocks)}] for a {generator.size} px generator")
    generator.requires_grad_(False)
    for block in blocks[-trainable_blocks:]:
        block.requires_grad_(True)
    return {id(p) for p in generator.parameters() if p.requires_grad}


def write_model_card(folder: Path, config: FinetuneStyleGANConfig, global_step: int) -> None:
    (folder / "README.md").write_text(
        "---\nlibrary_name: scenimefy\ntags: [stylegan2, anime, scenimefy]\n---\n\n"
        "# StyleGAN2 anime-scene generator G_t (Scenimefy stage 1)\n\n"
        "Fine-tuned from a real-scene StyleGAN2 with the semantic-constrained strategy of *Scenimefy* "
        "(Jiang et al., ICCV 2023), `train/finetune_stylegan.py` of the Scenimefy toolkit: last "
        f"{config.trainable_blocks} synthesis blocks trained, lambda_global {config.lambda_global}, lambda_lpips "
        f"{config.lambda_lpips}, lambda_patch {config.lambda_patch}, {global_step} steps, CLIP {config.clip_model}/"
        f"{config.clip_pretrained}, LPIPS {config.lpips_net}. Pairs: the same w through the source and this "
        "generator.\n\nWeights derived from the authors' release are under the S-Lab License 1.0 (non-commercial).\n"
    )


def main(argv: list[str] | None = None) -> None:
    config = parse_config(FinetuneStyleGANConfig, argv, description=__doc__)
    if not config.source_model or not config.train_data:
        raise ConfigError("--source_model (the source StyleGAN2) and --train_data (anime images) are required")
    output_dir = Path(config.output_dir)
    accelerator = Accelerator(
        log_with=make_trackers(config.report_to, output_dir / "logs", config.tracker_project_name) or None,
        project_config=ProjectConfiguration(project_dir=str(output_dir), logging_dir=str(output_dir / "logs")),
    )
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.INFO)
    logger.info(accelerator.state, main_process_only=False)
    if config.seed is not None:
        set_seed(config.seed, device_specific=True)
    if accelerator.is_main_process:
        output_dir.mkdir(parents=True, exist_ok=True)

    # Networks: frozen G_s, G_t = a copy with only its last blocks trainable, D, and the EMA of G_t.
    source, discriminator = load_source(config.source_model)
    source.eval().requires_grad_(False).to(accelerator.device)
    if discriminator is None:
        logger.info("no source discriminator: D starts from random weights")
        discriminator = StyleGAN2Discriminator(
            size=source.size, channel_multiplier=source.config.channel_multiplier, channel_max=source.config.channel_max
        )
    discriminator.train()
    target = copy.deepcopy(source).train()
    trainable = freeze_all_but_last_blocks(target, config.trainable_blocks)
    target_ema = copy.deepcopy(target).eval().requires_grad_(False)

    # Frozen priors of Eq. 1-2.
    clip_pretrained = None if config.random_priors else config.clip_pretrained
    clip_encoder = load_clip_image_encoder(config.clip_model, clip_pretrained).to(accelerator.device)
    lpips_model = load_lpips(config.lpips_net, pretrained=not config.random_priors).to(accelerator.device)
    if config.random_priors:
        logger.warning("random_priors: CLIP and LPIPS are randomly initialised; the constraints are meaningless")

    dataset = ImageDataset(
        config.train_data,
        load_size=source.size,
        crop_size=source.size,
        flip=config.flip,
        image_column=config.image_column,
    )
    loader = DataLoader(
        dataset,
        batch_size=config.train_batch_size,
        shuffle=True,
        drop_last=True,
        num_workers=config.dataloader_num_workers,
    )

    # G_t's optimiser sees only the trained blocks; D has the lazy-R1 Adam correction.
    g_optimizer = torch.optim.Adam(
        [p for p in target.parameters() if p.requires_grad], lr=config.learning_rate, betas=(0.0, 0.99)
    )
    d_ratio = config.d_reg_every / (config.d_reg_every + 1)
    d_optimizer = torch.optim.Adam(
        discriminator.parameters(), lr=config.learning_rate * d_ratio, betas=(0.0**d_ratio, 0.99**d_ratio)
    )
    target, discriminator, g_optimizer, d_optimizer, loader = accelerator.prepare(
        target, discriminator, g_optimizer, d_optimizer, loader
    )
    if len(loader) == 0:
        raise ConfigError(f"{len(dataset)} images are fewer than one batch ({config.train_batch_size} per process)")
    target_ema.to(accelerator.device)
    accelerator.register_for_checkpointing(target_ema)

    def save_generator_in_checkpoint(models, weights, checkpoint_dir):
        if accelerator.is_main_process:
            target_ema.save_pretrained(Path(checkpoint_dir) / "generator")

    accelerator.register_save_state_pre_hook(save_generator_in_checkpoint)
    if accelerator.is_main_process:
        accelerator.init_trackers(config.tracker_project_name, config=config_to_dict(config))

    global_step = int(resume_state(accelerator, output_dir, config.resume)["step"])

    # Sample grids: fixed z, truncated around G_s's mean latent like the stage-2 pairs.
    fixed = torch.Generator().manual_seed(1234)
    mean_w = source.mean_latent(4096, generator=fixed)
    sample_w = source.truncate(
        source.mapping(torch.randn(config.num_sample_images, source.style_dim, generator=fixed).to(accelerator.device)),
        mean_w,
        config.sample_truncation,
    )
    samples_dir = output_dir / "samples"

    def save_samples(step: int) -> None:
        if accelerator.is_main_process:
            samples_dir.mkdir(parents=True, exist_ok=True)
            with torch.no_grad():
                pairs = torch.stack([source(sample_w), target_ema(sample_w)], dim=1).flatten(0, 1)  # (2N, 3, H, W)
            grid = image_grid(pairs, ncols=2 * max(1, int(config.num_sample_images**0.5)))
            grid.save(samples_dir / f"step-{step:07d}.png")

    unwrapped = accelerator.unwrap_model(target)
    batches = cycle(loader)
    batch_size = config.train_batch_size
    logger.info(
        f"{len(dataset)} anime images, {len(trainable)} trained tensors in the last {config.trainable_blocks} "
        f"blocks, steps {global_step} -> {config.max_train_steps}"
    )
    progress = tqdm(
        total=config.max_train_steps, initial=global_step, desc="steps", disable=not accelerator.is_local_main_process
    )

    while global_step < config.max_train_steps:
        real = next(batches)  # (B, 3, size, size) anime images in [-1, 1]
        # The frozen mapping is shared: w does not depend on what is trained.
        with torch.no_grad():
            latents = sample_latents(source, batch_size, config.mixing_prob, accelerator.device)  # (B, n_latent, D)
            noise = source.make_noise(batch_size)  # the same noise through G_s and G_t
            source_images = source(latents, noise=noise)  # x_p

        # Discriminator on anime images vs y_p.
        set_requires_grad(discriminator, True)
        with torch.no_grad():
            fake = target(latents, noise=noise)
        logs = discriminator_step(
            discriminator,
            d_optimizer,
            real,
            fake,
            accelerator.backward,
            config.r1_gamma,
            regularize=global_step % config.d_reg_every == 0,
            reg_interval=config.d_reg_every,
        )

        # G_t: Eq. 3.
        set_requires_grad(discriminator, False)
        target_images = target(latents, noise=noise)  # y_p
        terms = finetune_generator_loss(
            discriminator(target_images),
            source_images,
            target_images,
            clip_encoder,
            lpips_model,
            lambda_global=config.lambda_global,
            lambda_lpips=config.lambda_lpips,
            lambda_patch=config.lambda_patch,
            num_patches=config.num_patches,
            patch_size=config.patch_size,
            temperature=config.nce_temperature,
        )
        g_optimizer.zero_grad(set_to_none=True)
        accelerator.backward(terms["loss"])
        g_optimizer.step()
        logs.update({f"g_{name}": value.item() for name, value in terms.items()})

        ema_update(target_ema, unwrapped, config.ema_decay)
        global_step += 1
        progress.update(1)
        progress.set_postfix(d=f"{logs['d_loss']:.3f}", g=f"{logs['g_loss']:.3f}")
        accelerator.log(logs, step=global_step)

        if global_step % config.checkpointing_steps == 0:
            path = save_checkpoint(accelerator, output_dir, global_step, config.checkpoints_total_limit)
            logger.info(f"saved {path}")
        if config.sample_steps and global_step % config.sample_steps == 0:
            save_samples(global_step)

    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        save_samples(global_step)
        target_ema.save_pretrained(output_dir / "generator")
        accelerator.unwrap_model(discriminator).save_pretrained(output_dir / "discriminator")
        write_model_card(output_dir, config, global_step)
        logger.info(f"saved generator/ (EMA of G_t) and discriminator/ to {output_dir}")
        if config.push_to_hub:
            repo_id = push_folder_to_hub(
                output_dir,
                config.hub_model_id or output_dir.resolve().name,
                "StyleGAN2 anime generator G_t and discriminator (finetune_stylegan.py)",
            )
            logger.info(f"uploaded generator/ and discriminator/ to https://huggingface.co/{repo_id}")
    progress.close()
    accelerator.end_training()


if __name__ == "__main__":
    try:
        main()
    except (ConfigError, CheckpointError, PriorWeightsError) as err:
        raise SystemExit(f"finetune_stylegan.py: {err}") from None
