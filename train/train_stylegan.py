"""Stage 1a of Scenimefy: train the source StyleGAN2 G_s on real scene photos (paper 4.1: LHQ, 256 px).

    accelerate launch train/train_stylegan.py --config train/configs/stylegan_lhq.yaml --train_data data/lhq

The StyleGAN2 recipe of the rosinality code the authors trained with: non-saturating logistic
loss, lazy R1 on reals every ``d_reg_every`` steps, lazy path-length regularisation every
``g_reg_every`` steps (on a ``path_batch_shrink``-times smaller batch), style mixing with
probability ``mixing_prob``, an EMA copy of the generator (the one that is saved and sampled), and
Adam with the lazy-regularisation correction of lr and betas. Settings: the dataclass below, a
YAML file (``--config``), then ``--key value`` flags. See docs/stylegan.md.

Outputs under ``output_dir``: ``checkpoint-<step>/`` (accelerate state + ``generator/``; resume
with ``--resume latest``), ``samples/step-<step>.png`` (fixed latents through the EMA generator),
``logs/<project>/metrics.jsonl`` (+ any installed tracker named in ``report_to``) and, at the end,
``generator/`` (EMA) and ``discriminator/`` (config.json + safetensors each) with ``README.md`` (the
model card: trained from scratch, the data used, the licence) and ``training_config.json``.
``--config train/configs/stylegan-tiny.yaml`` is a 32 px smoke preset (docs/quickstart-training.md).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path

import torch
from accelerate.logging import get_logger
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

import scenimefy  # noqa: F401  (first: makes torchvision importable on CPU-only torch)
from scenimefy.data import ImageDataset
from scenimefy.losses.stylegan2 import generator_nonsaturating_loss, path_length_penalty
from scenimefy.models import StyleGAN2Discriminator, StyleGAN2Generator
from scenimefy.training import checks
from scenimefy.training.checkpoints import save_checkpoint
from scenimefy.training.config import config_to_dict, parse_config
from scenimefy.training.loop import cycle, resume, run_script, start_accelerator, stopped
from scenimefy.training.stylegan import (
    adam_for_lazy_regularization,
    current_scale,
    discriminator_step,
    ema_update,
    image_grid,
    push_stylegan_folder,
    sample_latents,
    set_requires_grad,
    write_stylegan_folder,
)

logger = get_logger(__name__)


@dataclass
class TrainStyleGANConfig:
    """Train a StyleGAN2 on a folder of photos (Scenimefy's source generator G_s)."""

    # Data: an image folder (recursive), a `datasets` folder or a Hub dataset id.
    train_data: str = ""  # the real scene photos (required)
    image_column: str = "image"  # image column of a `datasets` source
    flip: bool = True  # random left-right flips
    dataloader_num_workers: int = 0  # data-loading worker processes

    # Networks (the paper: 256 px, style_dim 512, 8-layer mapping, channel multiplier 2).
    size: int = 256  # resolution in pixels, a power of two (images: shorter side resized, square crop)
    style_dim: int = 512  # dimension of z and w
    n_mlp: int = 8  # layers of the mapping network
    channel_multiplier: int = 2  # the reference channel table's multiplier
    channel_max: int | None = None  # cap on every layer's channels (none: the reference table; tiny runs: 32)
    lr_mlp: float = 0.01  # learning-rate multiplier of the mapping network

    # Optimisation (rosinality defaults).
    max_train_steps: int = 800_000  # steps to train (the authors' G_s: 220,000)
    train_batch_size: int = 16  # images per step and process
    learning_rate: float = 0.002  # Adam lr (corrected for the lazy regularisation intervals)
    r1_gamma: float = 10.0  # weight of the R1 penalty on D
    d_reg_every: int = 16  # lazy R1: every this many D steps
    path_regularize: float = 2.0  # weight of the path-length penalty on G (0: off)
    path_batch_shrink: int = 2  # the path-length batch is train_batch_size / this
    g_reg_every: int = 4  # lazy path-length regularisation: every this many G steps
    mixing_prob: float = 0.9  # probability of style mixing per batch
    ema_decay: float = 0.5 ** (32 / 10_000)  # EMA of G per step (half-life of 10k images at batch 32)
    seed: int | None = 0  # random seed (none: unseeded)

    # Outputs.
    output_dir: str = "outputs/stylegan-lhq"  # checkpoints, samples, logs and the final networks
    checkpointing_steps: int = 5000  # save an accelerate checkpoint every this many steps
    checkpoints_total_limit: int | None = 3  # keep at most this many checkpoints (none: all)
    resume: str | None = None  # "latest" or a checkpoint-<step> folder
    sample_steps: int = 1000  # save a sample grid every this many steps (0: only at the end)
    num_sample_images: int = 16  # images in a sample grid
    report_to: str = "jsonl"  # comma list: jsonl, tensorboard, wandb, ... (installed ones), all, none
    tracker_project_name: str = "stylegan"  # run name in the trackers (logs/<name>/metrics.jsonl)
    push_to_hub: bool = False  # upload generator/ + discriminator/ + card at the end (token: HF_TOKEN)
    hub_model_id: str | None = None  # owner/name of the model repo for push_to_hub
    hub_license: str = "auto"  # card licence; auto: trained from scratch, so not S-Lab (or an SPDX id)


def check(config: TrainStyleGANConfig) -> None:
    """Every setting that cannot work, before anything loads or is written."""
    checks.check_image_source("train_data", config.train_data)
    size = config.size
    checks.require(
        size >= 8 and size & (size - 1) == 0,
        f"--size {size}: must be a power of two of at least 8 (e.g. {max(8, 1 << max(3, size.bit_length() - 1))})",
    )
    for name in ("train_batch_size", "d_reg_every", "g_reg_every", "path_batch_shrink", "checkpointing_steps"):
        checks.require(getattr(config, name) >= 1, f"--{name} {getattr(config, name)}: must be at least 1")
    checks.require(0 <= config.mixing_prob <= 1, f"--mixing_prob {config.mixing_prob}: must lie in [0, 1]")
    checks.require(config.num_sample_images >= 1, "--num_sample_images: must be at least 1")
    checks.check_batch_fits("train_data", config.train_data, config.train_batch_size)
    checks.check_push_to_hub(config.push_to_hub, config.hub_model_id)
    checks.check_resume(config.output_dir, config.resume)


def main(argv: list[str] | None = None) -> None:
    config = parse_config(TrainStyleGANConfig, argv, description=__doc__, prog="train_stylegan.py")
    check(config)
    # Data first (a Hub dataset that cannot be read stops the run before anything is written): the
    # shorter side resized to `size`, a random square crop and flip, in [-1, 1].
    dataset = ImageDataset(
        config.train_data,
        load_size=config.size,
        crop_size=config.size,
        flip=config.flip,
        image_column=config.image_column,
    )
    output_dir = Path(config.output_dir)
    accelerator = start_accelerator(output_dir, config.report_to, config.tracker_project_name, config.seed)

    # Networks: G, D, and the EMA of G that is sampled and saved.
    generator = StyleGAN2Generator(
        size=config.size,
        style_dim=config.style_dim,
        n_mlp=config.n_mlp,
        channel_multiplier=config.channel_multiplier,
        channel_max=config.channel_max,
        lr_mlp=config.lr_mlp,
    )
    discriminator = StyleGAN2Discriminator(
        size=config.size, channel_multiplier=config.channel_multiplier, channel_max=config.channel_max
    )
    generator_ema = copy.deepcopy(generator).eval().requires_grad_(False)

    loader = DataLoader(
        dataset,
        batch_size=config.train_batch_size,
        shuffle=True,
        drop_last=True,
        num_workers=config.dataloader_num_workers,
    )

    g_optimizer = adam_for_lazy_regularization(generator.parameters(), config.learning_rate, config.g_reg_every)
    d_optimizer = adam_for_lazy_regularization(discriminator.parameters(), config.learning_rate, config.d_reg_every)
    generator, discriminator, g_optimizer, d_optimizer, loader = accelerator.prepare(
        generator, discriminator, g_optimizer, d_optimizer, loader
    )
    generator_ema.to(accelerator.device)
    accelerator.register_for_checkpointing(generator_ema)

    def save_generator_in_checkpoint(models, weights, checkpoint_dir):
        if accelerator.is_main_process:
            generator_ema.save_pretrained(Path(checkpoint_dir) / "generator")

    accelerator.register_save_state_pre_hook(save_generator_in_checkpoint)
    if accelerator.is_main_process:
        accelerator.init_trackers(config.tracker_project_name, config=config_to_dict(config))

    # Resume: networks, optimisers, EMA, RNG states, then the step and the path-length mean.
    state = resume(accelerator, output_dir, config.resume)
    global_step, mean_path_length = int(state["step"]), float(state.get("mean_path_length", 0.0))

    # Fixed latents for the sample grids: the same z at every step (and after a resume).
    sample_z = torch.randn(config.num_sample_images, config.style_dim, generator=torch.Generator().manual_seed(1234))
    samples_dir = output_dir / "samples"

    def save_samples(step: int) -> None:
        if accelerator.is_main_process:
            samples_dir.mkdir(parents=True, exist_ok=True)
            with torch.no_grad():
                images = generator_ema(generator_ema.mapping(sample_z.to(accelerator.device)))
            grid = image_grid(images, ncols=int(config.num_sample_images**0.5 + 0.5))
            grid.save(samples_dir / f"step-{step:07d}.png")

    unwrapped = accelerator.unwrap_model(generator)
    batches = cycle(loader)
    batch_size = config.train_batch_size
    logger.info(
        f"{len(dataset)} images, batch {batch_size} x {accelerator.num_processes} process(es), "
        f"steps {global_step} -> {config.max_train_steps}"
    )
    progress = tqdm(
        total=config.max_train_steps, initial=global_step, desc="steps", disable=not accelerator.is_local_main_process
    )
    try:
        while global_step < config.max_train_steps:
            real = next(batches)  # (B, 3, size, size) in [-1, 1]

            # Discriminator: logistic loss on reals vs fakes, lazy R1.
            set_requires_grad(discriminator, True)
            with torch.no_grad():
                latents = sample_latents(unwrapped, batch_size, config.mixing_prob, accelerator.device)
                fake = generator(latents, noise_mode="random")
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

            # Generator: non-saturating loss, lazy path-length regularisation.
            set_requires_grad(discriminator, False)
            latents = sample_latents(unwrapped, batch_size, config.mixing_prob, accelerator.device)
            g_loss = generator_nonsaturating_loss(discriminator(generator(latents, noise_mode="random")))
            g_optimizer.zero_grad(set_to_none=True)
            accelerator.backward(g_loss)
            g_optimizer.step()
            logs["g_loss"] = g_loss.item()

            if config.path_regularize > 0 and global_step % config.g_reg_every == 0:
                path_batch = max(1, batch_size // config.path_batch_shrink)
                latents = sample_latents(unwrapped, path_batch, config.mixing_prob, accelerator.device)
                fake = generator(latents, noise_mode="random")
                penalty, mean_path_length, path_length = path_length_penalty(
                    fake, latents, mean_path_length, grad_scale=current_scale(accelerator.scaler)
                )
                g_optimizer.zero_grad(set_to_none=True)
                # 0 * fake keeps every G output in the graph, as DDP wants.
                accelerator.backward(config.path_regularize * config.g_reg_every * penalty + 0 * fake[0, 0, 0, 0])
                g_optimizer.step()
                mean_path_length = accelerator.reduce(mean_path_length.reshape(1), reduction="mean").item()
                logs.update(
                    path_penalty=penalty.item(), path_length=path_length.item(), mean_path_length=mean_path_length
                )

            ema_update(generator_ema, unwrapped, config.ema_decay)
            global_step += 1
            progress.update(1)
            progress.set_postfix(d=f"{logs['d_loss']:.3f}", g=f"{logs['g_loss']:.3f}")
            accelerator.log(logs, step=global_step)

            if global_step % config.checkpointing_steps == 0:
                path = save_checkpoint(
                    accelerator,
                    output_dir,
                    global_step,
                    config.checkpoints_total_limit,
                    mean_path_length=mean_path_length,
                )
                logger.info(f"saved {path}")
            if config.sample_steps and global_step % config.sample_steps == 0:
                save_samples(global_step)
    except KeyboardInterrupt as interrupt:
        progress.close()
        raise stopped(global_step, output_dir, interrupt) from None
    progress.close()

    # Final networks: config.json + safetensors, loadable with from_pretrained, and their card.
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        save_samples(global_step)
        generator_ema.save_pretrained(output_dir / "generator")
        accelerator.unwrap_model(discriminator).save_pretrained(output_dir / "discriminator")
        write_stylegan_folder(
            output_dir,
            script="train/train_stylegan.py",
            title="StyleGAN2 source generator G_s (Scenimefy stage 1)",
            description=(
                f"Trained from scratch: {config.size} px, style_dim {config.style_dim}, {config.n_mlp}-layer mapping, "
                f"channel multiplier {config.channel_multiplier}"
                + (f", channels capped at {config.channel_max}" if config.channel_max else "")
                + f", {global_step} steps at batch {config.train_batch_size} per process."
            ),
            config=config,
            steps=global_step,
            data={"train_data": config.train_data},
            sources={},
            notes=[],
        )
        logger.info(f"saved generator/ (EMA), discriminator/, README.md and training_config.json to {output_dir}")
        if config.push_to_hub:
            url = push_stylegan_folder(output_dir, config.hub_model_id, "StyleGAN2 G_s (train_stylegan.py)")
            logger.info(f"uploaded to {url}")
    accelerator.end_training()


if __name__ == "__main__":
    run_script(main, "train_stylegan.py")
