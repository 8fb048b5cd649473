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
``generator/`` (EMA) and ``discriminator/`` (config.json + safetensors each).
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

import scenimefy  # noqa: F401  (first: makes torchvision importable on CPU-only torch)
from scenimefy.data import ImageDataset
from scenimefy.losses.stylegan2 import generator_nonsaturating_loss, path_length_penalty
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
class TrainStyleGANConfig:
    """Train a StyleGAN2 on a folder of photos (Scenimefy's source generator G_s)."""

    # Data: an image folder (recursive), a `datasets` folder or a Hub dataset id.
    train_data: str = ""
    image_column: str = "image"
    flip: bool = True  # random left-right flips
    dataloader_num_workers: int = 0

    # Networks (the paper: 256 px, style_dim 512, 8-layer mapping, channel multiplier 2).
    size: int = 256
    style_dim: int = 512
    n_mlp: int = 8
    channel_multiplier: int = 2
    channel_max: int | None = None  # cap on every layer's channels (None: the reference table)
    lr_mlp: float = 0.01

    # Optimisation (rosinality defaults).
    max_train_steps: int = 800_000
    train_batch_size: int = 16  # per process
    learning_rate: float = 0.002
    r1_gamma: float = 10.0
    d_reg_every: int = 16
    path_regularize: float = 2.0
    path_batch_shrink: int = 2
    g_reg_every: int = 4
    mixing_prob: float = 0.9
    ema_decay: float = 0.5 ** (32 / 10_000)  # half-life of 10k images at batch 32
    seed: int | None = 0

    # Outputs.
    output_dir: str = "outputs/stylegan-lhq"
    checkpointing_steps: int = 5000
    checkpoints_total_limit: int | None = 3
    resume: str | None = None  # "latest" or a checkpoint-<step> folder
    sample_steps: int = 1000  # 0: only at the end
    num_sample_images: int = 16
    report_to: str = "jsonl"  # comma list: jsonl, tensorboard, wandb, ... (installed ones), none
    tracker_project_name: str = "stylegan"
    push_to_hub: bool = False  # upload generator/ and discriminator/; token from `hf auth login` or HF_TOKEN
    hub_model_id: str | None = None


def adam_for_lazy_regularization(params, lr: float, reg_every: int) -> torch.optim.Adam:
    """Adam with lr and betas rescaled for a regulariser applied every ``reg_every`` steps (StyleGAN2 App. B)."""
    ratio = reg_every / (reg_every + 1)
    return torch.optim.Adam(params, lr=lr * ratio, betas=(0.0**ratio, 0.99**ratio))


def write_model_card(folder: Path, config: TrainStyleGANConfig, global_step: int) -> None:
    (folder / "README.md").write_text(
        "---\nlibrary_name: scenimefy\ntags: [stylegan2, unconditional-image-generation, scenimefy]\n---\n\n"
        "# StyleGAN2 source generator (Scenimefy stage 1)\n\n"
        "StyleGAN2 trained with `train/train_stylegan.py` of the Scenimefy toolkit (Jiang et al., ICCV 2023): "
        f"{config.size} px, style_dim {config.style_dim}, {config.n_mlp}-layer mapping, channel multiplier "
        f"{config.channel_multiplier}, {global_step} steps at batch {config.train_batch_size} per process.\n\n"
        "```python\nfrom scenimefy.models import StyleGAN2Generator\n"
        'G = StyleGAN2Generator.from_pretrained("<this repo>", subfolder="generator")\n'
        "w = G.mapping(torch.randn(4, G.style_dim))\nimages = G(w)  # (4, 3, H, W) in [-1, 1]\n```\n"
    )


def main(argv: list[str] | None = None) -> None:
    config = parse_config(TrainStyleGANConfig, argv, description=__doc__)
    if not config.train_data:
        raise ConfigError("--train_data (a folder of photos or a dataset) is required")
    output_dir = Path(config.output_dir)
    accelerator = Accelerator(
        log_with=make_trackers(config.report_to, output_dir / "logs", config.tracker_project_name) or None,
        project_config=ProjectConfiguration(project_dir=str(output_dir), logging_dir=str(output_dir / "logs")),
    )
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.INFO)
    logger.info(accelerator.state, main_process_only=False)
    if config.seed is not None:
        set_seed(config.seed, device_specific=True)  # different latents and crops on each process
    if accelerator.is_main_process:
        output_dir.mkdir(parents=True, exist_ok=True)

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

    # Data: resize the shorter side to `size`, random square crop and flip, [-1, 1].
    dataset = ImageDataset(
        config.train_data,
        load_size=config.size,
        crop_size=config.size,
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

    g_optimizer = adam_for_lazy_regularization(generator.parameters(), config.learning_rate, config.g_reg_every)
    d_optimizer = adam_for_lazy_regularization(discriminator.parameters(), config.learning_rate, config.d_reg_every)
    generator, discriminator, g_optimizer, d_optimizer, loader = accelerator.prepare(
        generator, discriminator, g_optimizer, d_optimizer, loader
    )
    if len(loader) == 0:
        raise ConfigError(f"{len(dataset)} images are fewer than one batch ({config.train_batch_size} per process)")
    generator_ema.to(accelerator.device)
    accelerator.register_for_checkpointing(generator_ema)

    def save_generator_in_checkpoint(models, weights, checkpoint_dir):
        if accelerator.is_main_process:
            generator_ema.save_pretrained(Path(checkpoint_dir) / "generator")

    accelerator.register_save_state_pre_hook(save_generator_in_checkpoint)
    if accelerator.is_main_process:
        accelerator.init_trackers(config.tracker_project_name, config=config_to_dict(config))

    # Resume: networks, optimisers, EMA, RNG states, then the step and the path-length mean.
    mean_path_length = 0.0
    state = resume_state(accelerator, output_dir, config.resume)
    global_step, mean_path_length = int(state["step"]), float(state.get("mean_path_length", mean_path_length))

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
            penalty, mean_path_length, path_length = path_length_penalty(fake, latents, mean_path_length)
            g_optimizer.zero_grad(set_to_none=True)
            # 0 * fake keeps every G output in the graph, as DDP wants.
            accelerator.backward(config.path_regularize * config.g_reg_every * penalty + 0 * fake[0, 0, 0, 0])
            g_optimizer.step()
            mean_path_length = accelerator.reduce(mean_path_length.reshape(1), reduction="mean").item()
            logs.update(path_penalty=penalty.item(), path_length=path_length.item(), mean_path_length=mean_path_length)

        ema_update(generator_ema, unwrapped, config.ema_decay)
        global_step += 1
        progress.update(1)
        progress.set_postfix(d=f"{logs['d_loss']:.3f}", g=f"{logs['g_loss']:.3f}")
        accelerator.log(logs, step=global_step)

        if global_step % config.checkpointing_steps == 0:
            path = save_checkpoint(
                accelerator, output_dir, global_step, config.checkpoints_total_limit, mean_path_length=mean_path_length
            )
            logger.info(f"saved {path}")
        if config.sample_steps and global_step % config.sample_steps == 0:
            save_samples(global_step)

    # Final networks: config.json + safetensors, loadable with from_pretrained.
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        save_samples(global_step)
        generator_ema.save_pretrained(output_dir / "generator")
        accelerator.unwrap_model(discriminator).save_pretrained(output_dir / "discriminator")
        logger.info(f"saved generator/ (EMA) and discriminator/ to {output_dir}")
        write_model_card(output_dir, config, global_step)
        if config.push_to_hub:
            repo_id = push_folder_to_hub(
                output_dir,
                config.hub_model_id or output_dir.resolve().name,
                "StyleGAN2 generator (EMA) and discriminator (train_stylegan.py)",
            )
            logger.info(f"uploaded generator/ and discriminator/ to https://huggingface.co/{repo_id}")
    progress.close()
    accelerator.end_training()


if __name__ == "__main__":
    try:
        main()
    except ConfigError as err:
        raise SystemExit(f"train_stylegan.py: {err}") from None
