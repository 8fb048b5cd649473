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
end, ``translator/`` (config.json + safetensors) for ``ScenimefyTranslator.from_pretrained``.
"""

from __future__ import annotations

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
from scenimefy import hub
from scenimefy.data import DataSourceError, ImageDataset, PairedDataset, UnpairedDataset
from scenimefy.hub import publish
from scenimefy.losses.perceptual import PerceptualWeightsError, VGGPerceptualLoss
from scenimefy.models import ScenimefyTranslator
from scenimefy.training.checkpoints import resume_state, save_checkpoint
from scenimefy.training.config import ConfigError, config_to_dict, parse_config
from scenimefy.training.tracking import JSONLTracker
from scenimefy.training.translator import (
    LossSettings,
    build_networks,
    constant_then_linear_decay,
    sample_grid,
    train_step,
)

logger = get_logger(__name__)


@dataclass
class TrainTranslatorConfig(LossSettings):
    """Semi-supervised translator training (Scenimefy stage 3). Loss weights: see LossSettings."""

    # Data: an image folder, a `datasets` folder or a Hub dataset id.
    real_data: str = ""  # real photos X
    anime_data: str = ""  # anime images Y
    paired_data: str = ""  # stage-2 pseudo pairs: columns real, anime (+ seed, lbce, classes)
    image_column: str = "image"  # image column of `datasets` sources of real_data / anime_data
    real_column: str = "real"
    anime_column: str = "anime"
    load_size: int = 256  # shorter side resized to this, then a random crop_size square
    crop_size: int = 256
    flip: bool = True
    dataloader_num_workers: int = 0

    # Networks.
    pretrained_translator: str = ""  # continue from a translator folder (config.json + safetensors)
    ngf: int = 64
    n_blocks: int = 9
    ndf: int = 64
    n_layers_d: int = 3
    embed_dim: int = 256
    init_gain: float = 0.02
    vgg_weights: str = "imagenet"  # for lambda_vgg > 0: "imagenet", a local state dict file, or "random" (smoke tests)

    # Optimisation: Adam, constant lr for the first half of the epochs, then linear decay to 0.
    epochs: int = 20
    decay_start_epoch: int | None = None  # default: epochs // 2
    max_train_steps: int | None = None  # stop early (smoke runs); the schedules still follow `epochs`
    train_batch_size: int = 1
    learning_rate: float = 2e-4
    adam_beta1: float = 0.5
    adam_beta2: float = 0.999
    seed: int | None = 0

    # Outputs.
    output_dir: str = "outputs/translator"
    checkpointing_steps: int = 5000
    checkpoints_total_limit: int | None = 3
    resume: str | None = None  # "latest" or a checkpoint-<step> folder
    sample_steps: int = 1000  # 0: only at the end
    num_sample_images: int = 4
    report_to: str = "jsonl"  # comma list: jsonl, tensorboard, wandb, ..., all (installed ones), none
    tracker_project_name: str = "translator"
    push_to_hub: bool = False  # publish output_dir/translator at the end; token: `hf auth login` or HF_TOKEN
    hub_model_id: str | None = None  # owner/name
    hub_license: str = "s-lab"  # model card licence: "s-lab" (derived from the authors' weights) or an SPDX id


def make_trackers(report_to: str, logging_dir: Path, project: str) -> list:
    trackers = []
    for name in [n.strip() for n in report_to.split(",") if n.strip()]:
        if name == "none":
            continue
        trackers.append(JSONLTracker(project, logging_dir) if name == "jsonl" else name)
    return trackers


def make_dataloaders(
    config: TrainTranslatorConfig, settings: LossSettings
) -> tuple[DataLoader | None, DataLoader | None]:
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
        if not config.real_data or not config.anime_data:
            raise ConfigError("the unsupervised branch needs --real_data and --anime_data")
        real = ImageDataset(config.real_data, image_column=config.image_column, **crop)
        anime = ImageDataset(config.anime_data, image_column=config.image_column, **crop)
        unpaired = DataLoader(UnpairedDataset(real, anime), **loader)
    if settings.supervised:
        if not config.paired_data:
            raise ConfigError("the supervised branch needs --paired_data (or set --supervised false)")
        pairs = PairedDataset(
            config.paired_data, real_column=config.real_column, anime_column=config.anime_column, **crop
        )
        paired = DataLoader(pairs, **loader)
    return unpaired, paired


def sample_images(config: TrainTranslatorConfig) -> torch.Tensor:
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


def cycle(loader: DataLoader):
    while True:
        yield from loader


def main(argv: list[str] | None = None) -> None:
    config = parse_config(TrainTranslatorConfig, argv, description=__doc__)
    settings = LossSettings.from_config(config)
    if config.push_to_hub:  # refuse now rather than after days of training
        if not config.hub_model_id or config.hub_model_id.count("/") != 1:
            raise ConfigError("--push_to_hub needs --hub_model_id owner/name")
        if hub.offline_mode():
            raise ConfigError("--push_to_hub with HF_HUB_OFFLINE set: uploads are disabled")
    output_dir = Path(config.output_dir)
    accelerator = Accelerator(
        log_with=make_trackers(config.report_to, output_dir / "logs", config.tracker_project_name) or None,
        project_config=ProjectConfiguration(project_dir=str(output_dir), logging_dir=str(output_dir / "logs")),
    )
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.INFO)
    logging.getLogger("accelerate.checkpointing").setLevel(logging.WARNING)  # one line per file saved
    logger.info(accelerator.state, main_process_only=False)
    if config.seed is not None:
        set_seed(config.seed, device_specific=True)  # different crops and patches on each process
    if accelerator.is_main_process:
        output_dir.mkdir(parents=True, exist_ok=True)

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
            logger.warning(
                "vgg_weights=random: the VGG loss compares features of an untrained network (smoke tests only)"
            )
        weights = None if config.vgg_weights == "random" else config.vgg_weights
        vgg = VGGPerceptualLoss(weights=weights).to(accelerator.device)

    # Data.
    unpaired_loader, paired_loader = make_dataloaders(config, settings)
    fixed_samples = sample_images(config)

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
        raise ConfigError("fewer images than train_batch_size x processes: no full batch per epoch")
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
    global_step = int(resume_state(accelerator, output_dir, config.resume)["step"])
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

    # Final translator: config.json + safetensors, loadable by ScenimefyTranslator.from_pretrained.
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        save_samples(global_step)
        final_dir = output_dir / "translator"
        accelerator.unwrap_model(nets.generator).save_pretrained(final_dir)
        logger.info(f"saved the translator to {final_dir}")
        if config.push_to_hub:
            # create_repo + upload_folder with a generated model card; the token is never printed.
            result = publish.publish_translator(
                final_dir,
                config.hub_model_id,
                training_config=config_to_dict(config),
                license=config.hub_license,
                commit_message=f"Scenimefy translator, {global_step} steps (train_translator.py)",
            )
            logger.info(f"uploaded to {result.url}")
    progress.close()
    accelerator.end_training()


if __name__ == "__main__":
    try:
        main()
    except (ConfigError, DataSourceError, PerceptualWeightsError) as err:
        raise SystemExit(f"train_translator.py: {err}") from None
