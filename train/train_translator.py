"""Stage 3 of Scenimefy: semi-supervised training of the photo -> anime translator (paper 3.3).

    accelerate launch train/train_translator.py --config train/configs/shinkai.yaml \
        --real_data data/lhq --anime_data data/shinkai --paired_data outputs/pairs

Unsupervised branch: unpaired real photos X and anime images Y (GAN + SRC + hDCE).
Supervised branch: the stage-2 pseudo pairs (x_p, y_p) (conditional GAN + StylePatchNCE),
weighted by lambda_sup(t) = cos(pi/(2T) (t-1)) at epoch t of T. One epoch covers the larger
unpaired domain once; the pseudo pairs are cycled alongside. Settings: the dataclass below, a
YAML file (``--config``), then ``--key value`` flags. See docs/training.md.

Outputs under ``output_dir``: ``checkpoint-<step>/`` (accelerate state + ``translator/``; resume
with ``--resume latest``), ``samples/step-<step>.png`` ([photo | translation] rows),
``logs/<project>/metrics.jsonl`` (+ any installed tracker named in ``report_to``) and, at the
end, ``translator/``: config.json + safetensors for ``ScenimefyPipeline.from_pretrained``, its
model card ``README.md`` and ``training_config.json`` (so ``scenimefy publish translator`` needs
nothing else).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from accelerate.logging import get_logger
from tqdm.auto import tqdm

import scenimefy  # noqa: F401  (first: makes torchvision importable on CPU-only torch)
from scenimefy.hub import cards, publish
from scenimefy.losses.perceptual import VGGPerceptualLoss
from scenimefy.models import ScenimefyTranslator
from scenimefy.training import checks
from scenimefy.training.checkpoints import save_checkpoint
from scenimefy.training.config import config_to_dict, format_value, parse_config
from scenimefy.training.loop import cycle, resume, run_script, start_accelerator, stopped
from scenimefy.training.translator import (
    LossSettings,
    build_networks,
    constant_then_linear_decay,
    encoder_layer_count,
    make_dataloaders,
    sample_grid,
    sample_images,
    train_step,
)

logger = get_logger(__name__)


@dataclass
class TrainTranslatorConfig(LossSettings):
    """Semi-supervised translator training (Scenimefy stage 3)."""

    # Data: an image folder, a `datasets` folder or a Hub dataset id.
    real_data: str = ""  # real photos X (the unsupervised branch)
    anime_data: str = ""  # anime images Y (the unsupervised branch)
    paired_data: str = ""  # stage-2 pseudo pairs, columns real, anime (the supervised branch)
    image_column: str = "image"  # image column of `datasets` sources of real_data / anime_data
    real_column: str = "real"  # column of paired_data with x_p
    anime_column: str = "anime"  # column of paired_data with y_p
    load_size: int = 256  # shorter side resized to this, then a random crop_size square
    crop_size: int = 256  # training crop side, a multiple of 4, at most load_size
    flip: bool = True  # random left-right flips (the same for both images of a pair)
    dataloader_num_workers: int = 0  # data-loading worker processes

    # Networks.
    pretrained_translator: str = ""  # continue from a translator folder (config.json + safetensors)
    ngf: int = 64  # G's base channels
    n_blocks: int = 9  # G's residual blocks
    ndf: int = 64  # D_U / D_P base channels
    n_layers_d: int = 3  # PatchGAN layers (3: 70x70 receptive field)
    embed_dim: int = 256  # output size of the patch heads F and F_s
    init_gain: float = 0.02  # Xavier-normal gain of the initial weights
    vgg_weights: str = "imagenet"  # for lambda_vgg > 0: imagenet, a local state dict file, or random (smoke runs)

    # Optimisation: Adam, constant lr for the first half of the epochs, then linear decay to 0.
    epochs: int = 20  # passes over the larger unpaired domain (paper: 20)
    decay_start_epoch: int | None = None  # epoch where the lr starts to decay (none: epochs // 2)
    max_train_steps: int | None = None  # stop early (smoke runs); the schedules still follow `epochs`
    train_batch_size: int = 1  # items per step and process (paper: 1)
    learning_rate: float = 2e-4  # Adam lr of all networks
    adam_beta1: float = 0.5  # Adam beta1
    adam_beta2: float = 0.999  # Adam beta2
    seed: int | None = 0  # random seed (none: unseeded)

    # Outputs.
    output_dir: str = "outputs/translator"  # checkpoints, samples, logs and the final translator/
    checkpointing_steps: int = 5000  # save an accelerate checkpoint every this many steps
    checkpoints_total_limit: int | None = 3  # keep at most this many checkpoints (none: all)
    resume: str | None = None  # "latest" or a checkpoint-<step> folder
    sample_steps: int = 1000  # save a sample grid every this many steps (0: only at the end)
    num_sample_images: int = 4  # photos in a sample grid
    report_to: str = "jsonl"  # comma list: jsonl, tensorboard, wandb, ..., all (installed ones), none
    tracker_project_name: str = "translator"  # run name in the trackers (logs/<name>/metrics.jsonl)
    push_to_hub: bool = False  # publish output_dir/translator at the end (token: `hf auth login` or HF_TOKEN)
    hub_model_id: str | None = None  # owner/name of the model repo for push_to_hub
    hub_license: str = "auto"  # card licence; auto: from the pairs / pretrained translator (S-Lab if derived)


def translator_config(config: TrainTranslatorConfig) -> dict:
    """The architecture G will have: the pretrained translator's, else ngf / n_blocks."""
    if config.pretrained_translator and Path(config.pretrained_translator, "config.json").is_file():
        return ScenimefyTranslator.load_config(config.pretrained_translator)
    return {"ngf": config.ngf, "n_blocks": config.n_blocks}


def check(config: TrainTranslatorConfig) -> None:
    """Every setting that cannot work, before anything loads or is written."""
    if config.unsupervised:
        checks.check_image_source("real_data", config.real_data)
        checks.check_image_source("anime_data", config.anime_data)
        checks.check_batch_fits("real_data", config.real_data, config.train_batch_size)
    if config.supervised:
        if not config.paired_data:
            raise checks.ConfigError("--paired_data is required by the supervised branch (or set --supervised false)")
        checks.check_image_source("paired_data", config.paired_data)
    if config.pretrained_translator:
        checks.check_model_source("pretrained_translator", config.pretrained_translator, "config.json", "translator")
    count = encoder_layer_count(translator_config(config))
    layers = list(config.nce_layers)
    if not layers or min(layers) < 0 or max(layers) >= count:
        fixed = sorted({min(max(0, layer), count - 1) for layer in layers or [0]})
        blocks = f"--n_blocks {config.n_blocks}" if not config.pretrained_translator else "--pretrained_translator"
        raise checks.ConfigError(
            f"--nce_layers {format_value(layers)} does not fit {blocks}: its encoder layers are 0..{count - 1}; "
            f"use --nce_layers {format_value(fixed)}"
            + (
                f" (or --n_blocks {max(layers) - 11})"
                if layers and max(layers) >= count and not config.pretrained_translator
                else ""
            )
        )
    checks.require(
        config.crop_size <= config.load_size,
        f"--crop_size {config.crop_size} is larger than --load_size {config.load_size}: use --crop_size "
        f"{config.load_size - config.load_size % 4} (or --load_size {config.crop_size})",
    )
    checks.require(
        config.crop_size >= 4 and config.crop_size % 4 == 0,
        f"--crop_size {config.crop_size}: G needs a multiple of 4; use --crop_size {max(4, config.crop_size // 4 * 4)}",
    )
    decay = config.decay_start_epoch
    checks.require(
        decay is None or 0 <= decay <= config.epochs,
        f"--decay_start_epoch {decay} is past --epochs {config.epochs}: use {config.epochs // 2} (or none)",
    )
    if config.unsupervised and config.lambda_vgg > 0 and config.vgg_weights not in ("imagenet", "random"):
        checks.check_model_source("vgg_weights", config.vgg_weights, "", "VGG19 state dict file")
    for name in ("epochs", "train_batch_size", "num_patches", "checkpointing_steps", "num_sample_images"):
        checks.require(getattr(config, name) >= 1, f"--{name} {getattr(config, name)}: must be at least 1")
    checks.check_push_to_hub(config.push_to_hub, config.hub_model_id)
    checks.check_resume(config.output_dir, config.resume)


def write_translator_folder(final_dir: Path, config: TrainTranslatorConfig, settings: LossSettings, steps: int) -> None:
    """README.md (model card) + training_config.json (training record) into translator/."""
    sources = {
        "paired_data": config.paired_data if settings.supervised else "",
        "pretrained_translator": config.pretrained_translator,
    }
    license, provenance, uses_authors_weights = cards.resolve_license(config.hub_license, sources)
    notes = []
    if settings.unsupervised and settings.lambda_vgg > 0 and config.vgg_weights == "random":
        notes.append("The VGG content loss used a randomly initialised VGG19 (`vgg_weights: random`): a smoke test.")
    if not (settings.supervised and settings.unsupervised):
        notes.append(f"Only the {'supervised' if settings.supervised else 'unsupervised'} branch was trained.")
    data = {k: getattr(config, k) for k in ("real_data", "anime_data") if settings.unsupervised}
    data.update({"paired_data": config.paired_data} if settings.supervised else {})
    record = cards.training_record(
        script="train/train_translator.py",
        steps=steps,
        config=config_to_dict(config),
        data=data,
        license=license,
        provenance=provenance if config.pretrained_translator or settings.supervised else "trained from scratch",
        uses_authors_weights=uses_authors_weights,
        notes=notes,
    )
    model_config = ScenimefyTranslator.load_config(final_dir)
    card = cards.translator_card(
        model_config, str(final_dir), license=license, record=record, config_file=cards.TRAINING_RECORD
    )
    cards.write_model_folder_card(final_dir, card, record)


def main(argv: list[str] | None = None) -> None:
    config = parse_config(TrainTranslatorConfig, argv, description=__doc__, prog="train_translator.py")
    settings = LossSettings.from_config(config)
    check(config)
    # Data first: a Hub dataset that cannot be read stops the run before anything is written.
    unpaired_loader, paired_loader = make_dataloaders(config, settings)
    fixed_samples = sample_images(config)
    output_dir = Path(config.output_dir)
    accelerator = start_accelerator(output_dir, config.report_to, config.tracker_project_name, config.seed)

    # Networks: G, D_U, D_P, F, F_s, built eagerly (a branch's networks only when the branch is on).
    generator = (
        ScenimefyTranslator.from_pretrained(config.pretrained_translator) if config.pretrained_translator else None
    )
    nets = build_networks(
        settings,
        translator_config={"ngf": config.ngf, "n_blocks": config.n_blocks},
        generator=generator,
        ndf=config.ndf,
        n_layers_d=config.n_layers_d,
        embed_dim=config.embed_dim,
        init_gain=config.init_gain,
    )
    vgg = None
    if settings.unsupervised and settings.lambda_vgg > 0:
        if config.vgg_weights == "random":
            logger.warning("vgg_weights=random: the VGG loss compares features of an untrained network (smoke runs)")
        weights = None if config.vgg_weights == "random" else config.vgg_weights
        vgg = VGGPerceptualLoss(weights=weights).to(accelerator.device)

    # Optimisers: one Adam for G + F + F_s, one for D_U + D_P (per-parameter Adam: the same as the
    # reference's separate optimisers per network).
    betas = (config.adam_beta1, config.adam_beta2)
    g_optimizer = torch.optim.Adam(
        [p for m in nets.generator_side() for p in m.parameters()], config.learning_rate, betas=betas
    )
    d_params = [p for m in nets.discriminators() for p in m.parameters()]
    d_optimizer = torch.optim.Adam(d_params, config.learning_rate, betas=betas) if d_params else None

    # accelerate wraps every network, optimiser and loader (DDP, device placement, sharding).
    names = ["generator", "disc_unpaired", "disc_paired", "patch_head", "style_patch_head"]
    present = [n for n in names if getattr(nets, n) is not None]
    loaders = [loader for loader in (unpaired_loader, paired_loader) if loader is not None]
    optimizers = [o for o in (g_optimizer, d_optimizer) if o is not None]
    prepared = accelerator.prepare(*[getattr(nets, n) for n in present], *optimizers, *loaders)
    for name, module in zip(present, prepared):
        setattr(nets, name, module)
    g_optimizer = prepared[len(present)]
    d_optimizer = prepared[len(present) + 1] if d_optimizer is not None else None
    loaders = list(prepared[len(present) + len(optimizers) :])
    unpaired_loader = loaders.pop(0) if unpaired_loader is not None else None
    paired_loader = loaders.pop(0) if paired_loader is not None else None

    # One epoch = one pass over the unpaired data (or the pairs, for a supervised-only run).
    main_loader = unpaired_loader if unpaired_loader is not None else paired_loader
    steps_per_epoch = len(main_loader)
    if steps_per_epoch == 0:
        raise checks.ConfigError(
            f"fewer items than --train_batch_size {config.train_batch_size} x {accelerator.num_processes} "
            "process(es): no full batch per epoch; lower --train_batch_size"
        )
    total_steps = config.epochs * steps_per_epoch
    stop_step = min(total_steps, config.max_train_steps or total_steps)
    decay_start = (
        config.decay_start_epoch if config.decay_start_epoch is not None else config.epochs // 2
    ) * steps_per_epoch
    # The lr schedule is stepped here once per step on every process (not prepared: accelerate would
    # step it once per process), and saved with the checkpoints.
    schedulers = [
        torch.optim.lr_scheduler.LambdaLR(o, constant_then_linear_decay(total_steps, decay_start)) for o in optimizers
    ]
    for scheduler in schedulers:
        accelerator.register_for_checkpointing(scheduler)

    def save_translator_in_checkpoint(models, weights, checkpoint_dir):
        if accelerator.is_main_process:
            accelerator.unwrap_model(nets.generator).save_pretrained(Path(checkpoint_dir) / "translator")

    accelerator.register_save_state_pre_hook(save_translator_in_checkpoint)

    if accelerator.is_main_process:
        accelerator.init_trackers(config.tracker_project_name, config=config_to_dict(config))

    # Resume: accelerate state (networks, optimisers, lr schedules, RNG) + the step counter.
    global_step = int(resume(accelerator, output_dir, config.resume)["step"])
    first_epoch = global_step // steps_per_epoch + 1
    skip_batches = global_step % steps_per_epoch

    logger.info(
        f"{len(main_loader.dataset)} training items, {steps_per_epoch} steps/epoch x {config.epochs} epochs "
        f"= {total_steps} steps (stopping at {stop_step}), {accelerator.num_processes} process(es)"
    )
    pairs = cycle(paired_loader) if paired_loader is not None and unpaired_loader is not None else None
    progress = tqdm(total=stop_step, initial=global_step, desc="steps", disable=not accelerator.is_local_main_process)
    samples_dir = output_dir / "samples"

    def save_samples(step: int) -> None:
        if accelerator.is_main_process:
            samples_dir.mkdir(parents=True, exist_ok=True)
            sample_grid(nets.generator, fixed_samples).save(samples_dir / f"step-{step:07d}.png")

    try:
        for epoch in range(first_epoch, config.epochs + 1):
            if global_step >= stop_step:
                break
            loader = main_loader
            if epoch == first_epoch and skip_batches:
                loader = accelerator.skip_first_batches(main_loader, skip_batches)
            for batch in loader:
                if unpaired_loader is None:  # supervised only: the main loader yields pairs
                    batch = {"pair_real": batch["real"], "pair_anime": batch["anime"]}
                elif pairs is not None:
                    pair = next(pairs)
                    batch = {**batch, "pair_real": pair["real"], "pair_anime": pair["anime"]}

                logs = train_step(
                    nets,
                    g_optimizer,
                    d_optimizer,
                    batch,
                    epoch,
                    config.epochs,
                    settings,
                    vgg=vgg,
                    backward=accelerator.backward,
                    autocast=accelerator.autocast,
                )
                for scheduler in schedulers:
                    scheduler.step()
                global_step += 1
                progress.update(1)
                logs.update(lr=schedulers[0].get_last_lr()[0], epoch=epoch)
                progress.set_postfix(g=f"{logs['g_total']:.3f}", epoch=epoch)
                accelerator.log(logs, step=global_step)

                if global_step % config.checkpointing_steps == 0:
                    path = save_checkpoint(
                        accelerator, output_dir, global_step, config.checkpoints_total_limit, epoch=epoch
                    )
                    logger.info(f"saved {path}")
                if config.sample_steps and global_step % config.sample_steps == 0:
                    save_samples(global_step)
                if global_step >= stop_step:
                    break
    except KeyboardInterrupt as interrupt:
        progress.close()
        raise stopped(global_step, output_dir, interrupt) from None
    progress.close()

    # Final translator: config.json + safetensors (ScenimefyPipeline.from_pretrained), its card and record.
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        save_samples(global_step)
        final_dir = output_dir / "translator"
        accelerator.unwrap_model(nets.generator).save_pretrained(final_dir)
        write_translator_folder(final_dir, config, settings, global_step)
        logger.info(f"saved the translator, README.md and training_config.json to {final_dir}")
        if config.push_to_hub:
            # create_repo + upload_folder with the card; the token is never printed.
            result = publish.publish_translator(
                final_dir,
                config.hub_model_id,
                commit_message=f"Scenimefy translator, {global_step} steps (train_translator.py)",
            )
            logger.info(f"uploaded to {result.url}")
    accelerator.end_training()


if __name__ == "__main__":
    run_script(main, "train_translator.py")
