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
``--random_priors true`` both are randomly initialised stand-ins (offline smoke runs only;
``--clip_model tiny`` makes CLIP a tiny one, as ``train/configs/finetune-tiny.yaml`` does).

Outputs under ``output_dir``: ``checkpoint-<step>/`` (accelerate state + ``generator/``; resume
with ``--resume latest``), ``samples/step-<step>.png`` (fixed truncated latents: G_s | G_t pairs
side by side), ``logs/<project>/metrics.jsonl`` and, at the end, ``generator/`` (the EMA of G_t)
and ``discriminator/`` with ``README.md`` (model card: priors, data, licence) and
``training_config.json``. Stage 2 then reads the source and this generator (train/generate_pairs.py).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path

import torch
from accelerate.logging import get_logger
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

import scenimefy  # noqa: F401  (first: makes torchvision importable for lpips / open_clip)
from scenimefy.data import ImageDataset
from scenimefy.losses.clip import load_clip_image_encoder
from scenimefy.losses.finetune import finetune_generator_loss, load_lpips
from scenimefy.models import StyleGAN2Discriminator
from scenimefy.training import checks
from scenimefy.training.checkpoints import save_checkpoint
from scenimefy.training.config import config_to_dict, parse_config
from scenimefy.training.loop import cycle, resume, run_script, start_accelerator, stopped
from scenimefy.training.stylegan import (
    adam_for_lazy_regularization,
    discriminator_step,
    ema_update,
    freeze_all_but_last_blocks,
    image_grid,
    load_source,
    push_stylegan_folder,
    sample_latents,
    set_requires_grad,
    source_size,
    write_stylegan_folder,
)
from scenimefy.training.tiny import TINY, clip_model_name

logger = get_logger(__name__)


@dataclass
class FinetuneStyleGANConfig:
    """Fine-tune a source StyleGAN2 on anime scenes with CLIP / LPIPS constraints (Scenimefy stage 1)."""

    # Inputs: G_s is train_stylegan.py's output_dir or `scenimefy convert`'s (generator/ + discriminator/),
    # or the authors' rosinality .pt (lhq-220000.pt); anime scenes are an image folder (recursive),
    # a `datasets` folder or a Hub dataset id.
    source_model: str = ""  # the source StyleGAN2 G_s: a folder with generator/ (+ discriminator/) or a .pt (required)
    train_data: str = ""  # the anime scene images (required)
    image_column: str = "image"  # image column of a `datasets` source
    flip: bool = True  # random left-right flips
    dataloader_num_workers: int = 0  # data-loading worker processes

    # What is trained: the last `trainable_blocks` synthesis blocks (one block per resolution).
    trainable_blocks: int = 3  # synthesis blocks trained, counted from the last (the paper: 3)

    # Loss (Eq. 1-3).
    lambda_global: float = 1.0  # weight of L_global = D_CLIP + lambda_lpips LPIPS (Eq. 1)
    lambda_lpips: float = 0.01  # weight of LPIPS inside L_global
    lambda_patch: float = 0.05  # weight of the CLIP PatchNCE L_patch (Eq. 2)
    num_patches: int = 8  # random crops per image for L_patch
    patch_size: int = 64  # crop side in pixels (resized to CLIP's input); at most the generator's size
    nce_temperature: float = 0.07  # temperature of L_patch
    clip_model: str = "ViT-B-32"  # open_clip name, a model-config .json, or tiny (with random_priors)
    clip_pretrained: str = "openai"  # open_clip pretrained tag (ignored with random_priors)
    lpips_net: str = "vgg"  # LPIPS trunk: vgg (the paper's VGG perceptual loss), alex, squeeze
    random_priors: bool = False  # randomly initialised CLIP and LPIPS (offline smoke runs only)

    # Optimisation.
    max_train_steps: int = 1000  # steps to train (the paper: 1,000)
    train_batch_size: int = 8  # images per step and process
    learning_rate: float = 0.002  # Adam lr of G_t (D's corrected for lazy R1)
    r1_gamma: float = 10.0  # weight of the R1 penalty on D
    d_reg_every: int = 16  # lazy R1: every this many D steps
    mixing_prob: float = 0.9  # probability of style mixing per batch
    ema_decay: float = 0.5 ** (32 / 10_000)  # EMA of G_t per step
    seed: int | None = 0  # random seed (none: unseeded)

    # Outputs.
    output_dir: str = "outputs/stylegan-shinkai"  # checkpoints, samples, logs and the final networks
    checkpointing_steps: int = 500  # save an accelerate checkpoint every this many steps
    checkpoints_total_limit: int | None = 3  # keep at most this many checkpoints (none: all)
    resume: str | None = None  # "latest" or a checkpoint-<step> folder
    sample_steps: int = 100  # save a sample grid every this many steps (0: only at the end)
    num_sample_images: int = 8  # G_s | G_t pairs in a sample grid
    sample_truncation: float = 0.7  # psi of the sample grids (the pairs of stage 2 use 0.7)
    report_to: str = "jsonl"  # comma list: jsonl, tensorboard, wandb, ... (installed ones), all, none
    tracker_project_name: str = "stylegan-finetune"  # run name in the trackers (logs/<name>/metrics.jsonl)
    push_to_hub: bool = False  # upload generator/ + discriminator/ + card at the end (token: HF_TOKEN)
    hub_model_id: str | None = None  # owner/name of the model repo for push_to_hub
    hub_license: str = "auto"  # card licence; auto: the source's (S-Lab for the authors' G_s), or an SPDX id


def check(config: FinetuneStyleGANConfig) -> None:
    """Every setting that cannot work, before anything loads or is written."""
    checks.check_model_source("source_model", config.source_model, "", "StyleGAN2 folder (generator/) or .pt file")
    if Path(config.source_model).is_dir():
        checks.check_model_source("source_model", config.source_model, "generator/config.json", "StyleGAN2 folder")
    checks.check_image_source("train_data", config.train_data)
    checks.check_batch_fits("train_data", config.train_data, config.train_batch_size)
    size = source_size(config.source_model) if Path(config.source_model).is_dir() else None
    if size is not None:
        blocks = size.bit_length() - 2  # 4 px, 8 px, ..., size
        checks.require(
            1 <= config.trainable_blocks <= blocks,
            f"--trainable_blocks {config.trainable_blocks} does not fit the {size} px --source_model "
            f"({blocks} synthesis blocks): use 1 to {blocks} (the paper: 3)",
        )
        checks.require(
            1 <= config.patch_size <= size,
            f"--patch_size {config.patch_size} is larger than the {size} px images of --source_model: "
            f"use --patch_size {max(1, size // 4)}",
        )
    checks.require(
        config.clip_model != TINY or config.random_priors,
        "--clip_model tiny has no pretrained weights: add --random_priors true (or use --clip_model ViT-B-32)",
    )
    checks.require(config.num_patches >= 2, f"--num_patches {config.num_patches}: PatchNCE needs at least 2")
    for name in ("train_batch_size", "d_reg_every", "checkpointing_steps", "num_sample_images"):
        checks.require(getattr(config, name) >= 1, f"--{name} {getattr(config, name)}: must be at least 1")
    checks.check_push_to_hub(config.push_to_hub, config.hub_model_id)
    checks.check_resume(config.output_dir, config.resume)


def card_notes(config: FinetuneStyleGANConfig) -> list[str]:
    """What the card must say about the priors that shaped G_t."""
    if config.random_priors:
        return [
            f"CLIP (`{config.clip_model}`) and LPIPS (`{config.lpips_net}`) were randomly initialised "
            "(`random_priors: true`): the semantic constraints of Eq. 1-2 carried no meaning. A smoke-test model, "
            "not an anime generator."
        ]
    return [f"Priors: CLIP `{config.clip_model}` / `{config.clip_pretrained}`, LPIPS `{config.lpips_net}`."]


def main(argv: list[str] | None = None) -> None:
    config = parse_config(FinetuneStyleGANConfig, argv, description=__doc__, prog="finetune_stylegan.py")
    check(config)
    # The source and the data first: a Hub dataset that cannot be read stops the run before anything
    # is written; then the accelerator, the output folder and the priors.
    source, discriminator = load_source(config.source_model)
    dataset = ImageDataset(
        config.train_data,
        load_size=source.size,
        crop_size=source.size,
        flip=config.flip,
        image_column=config.image_column,
    )
    output_dir = Path(config.output_dir)
    accelerator = start_accelerator(output_dir, config.report_to, config.tracker_project_name, config.seed)

    # Networks: frozen G_s, G_t = a copy with only its last blocks trainable, D, and the EMA of G_t.
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

    loader = DataLoader(
        dataset,
        batch_size=config.train_batch_size,
        shuffle=True,
        drop_last=True,
        num_workers=config.dataloader_num_workers,
    )

    # Frozen priors of Eq. 1-2.
    clip_pretrained = None if config.random_priors else config.clip_pretrained
    clip_encoder = load_clip_image_encoder(clip_model_name(config.clip_model), clip_pretrained).to(accelerator.device)
    lpips_model = load_lpips(config.lpips_net, pretrained=not config.random_priors).to(accelerator.device)
    if config.random_priors:
        logger.warning("random_priors: CLIP and LPIPS are randomly initialised; the constraints are meaningless")

    # G_t's optimiser sees only the trained blocks; D has the lazy-R1 Adam correction.
    g_optimizer = torch.optim.Adam(
        [p for p in target.parameters() if p.requires_grad], lr=config.learning_rate, betas=(0.0, 0.99)
    )
    d_optimizer = adam_for_lazy_regularization(discriminator.parameters(), config.learning_rate, config.d_reg_every)
    target, discriminator, g_optimizer, d_optimizer, loader = accelerator.prepare(
        target, discriminator, g_optimizer, d_optimizer, loader
    )
    target_ema.to(accelerator.device)
    accelerator.register_for_checkpointing(target_ema)

    def save_generator_in_checkpoint(models, weights, checkpoint_dir):
        if accelerator.is_main_process:
            target_ema.save_pretrained(Path(checkpoint_dir) / "generator")

    accelerator.register_save_state_pre_hook(save_generator_in_checkpoint)
    if accelerator.is_main_process:
        accelerator.init_trackers(config.tracker_project_name, config=config_to_dict(config))

    global_step = int(resume(accelerator, output_dir, config.resume)["step"])

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
    try:
        while global_step < config.max_train_steps:
            real = next(batches)  # (B, 3, size, size) anime images in [-1, 1]
            # The frozen mapping is shared: w does not depend on what is trained.
            with torch.no_grad():
                latents = sample_latents(source, batch_size, config.mixing_prob, accelerator.device)  # (B, L, D)
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
                grad_scaler=accelerator.scaler,
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
    except KeyboardInterrupt as interrupt:
        progress.close()
        raise stopped(global_step, output_dir, interrupt) from None
    progress.close()

    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        save_samples(global_step)
        target_ema.save_pretrained(output_dir / "generator")
        accelerator.unwrap_model(discriminator).save_pretrained(output_dir / "discriminator")
        clip = f"{config.clip_model} ({'random weights' if config.random_priors else config.clip_pretrained})"
        lpips = f"{config.lpips_net} ({'random weights' if config.random_priors else 'ImageNet trunk'})"
        write_stylegan_folder(
            output_dir,
            script="train/finetune_stylegan.py",
            title="StyleGAN2 anime-scene generator G_t (Scenimefy stage 1)",
            description=(
                "Fine-tuned from a real-scene StyleGAN2 with the semantic-constrained strategy of *Scenimefy*: last "
                f"{config.trainable_blocks} synthesis blocks trained, lambda_global {config.lambda_global}, "
                f"lambda_lpips {config.lambda_lpips}, lambda_patch {config.lambda_patch}, {global_step} steps, "
                f"CLIP {clip}, LPIPS {lpips}. Pairs: the same w through the source and this generator."
            ),
            config=config,
            steps=global_step,
            data={"source_model": config.source_model, "train_data": config.train_data},
            sources={"source_model": config.source_model},
            notes=card_notes(config),
        )
        logger.info(
            f"saved generator/ (EMA of G_t), discriminator/, README.md and training_config.json to {output_dir}"
        )
        if config.push_to_hub:
            url = push_stylegan_folder(output_dir, config.hub_model_id, "StyleGAN2 G_t (finetune_stylegan.py)")
            logger.info(f"uploaded to {url}")
    accelerator.end_training()


if __name__ == "__main__":
    run_script(main, "finetune_stylegan.py")
