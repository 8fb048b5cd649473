"""Stage 4 (Scenimefy-Lite): distil a translator into a small, fast student.

    accelerate launch train/distill_translator.py --teacher shinkai --photos data/lhq

The teacher is any translator source: a style name, a translator folder, an authors'
``*_net_G.pth`` or a Hub repo id. The photos need no labels: an image folder, a ``datasets``
folder or a Hub dataset id. The teacher runs once on random crops at random scales of every
photo (``views_per_photo`` each); its outputs are cached on disk (``cache_dir``, default
``<output_dir>/teacher_cache``; deterministic per seed, reused by later runs and resumed when
interrupted; under several processes each computes its share). The student
(``ScenimefyLiteTranslator``) then learns them with pixel L1 + image-gradient L1 (+ LPIPS,
off by default). See docs/lite.md.

Outputs under ``output_dir``: ``checkpoint-<step>/`` (accelerate state + ``student/``; resume
with ``--resume latest``), ``samples/step-<step>.png`` ([photo | teacher | student] rows),
``logs/<project>/metrics.jsonl`` and, at the end, ``student/``: config.json + safetensors for
``ScenimefyPipeline.from_pretrained``, its model card ``README.md`` and ``training_config.json``.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from accelerate.logging import get_logger
from tqdm.auto import tqdm

import scenimefy  # noqa: F401  (first: makes torchvision importable on CPU-only torch)
from scenimefy.data import ImageDataset
from scenimefy.data.pixels import to_model_range, to_uint8
from scenimefy.hub import cards, publish
from scenimefy.hub.translators import open_translator
from scenimefy.inference import translate
from scenimefy.inference.graph import UnsupportedLayerError, check_supported
from scenimefy.models import ScenimefyLiteTranslator
from scenimefy.models.loading import UnknownTranslatorError, is_lite, model_fingerprint, read_config
from scenimefy.training import checks, distill
from scenimefy.training.checkpoints import save_checkpoint
from scenimefy.training.config import config_to_dict, parse_config
from scenimefy.training.loop import resume, run_script, start_accelerator, stopped

logger = get_logger(__name__)


@dataclass
class DistillConfig:
    """Distil a translator into a ScenimefyLiteTranslator (Scenimefy-Lite, stage 4)."""

    # Data: the teacher and the photos it is run on.
    teacher: str = ""  # translator to distil: a style name, a translator folder, a *_net_G.pth or a Hub repo id
    photos: str = ""  # training photos: an image folder, a `datasets` folder or a Hub dataset id (no labels)
    image_column: str = "image"  # image column of a `datasets` source
    crop_size: int = 256  # training crop side (the teacher runs on each crop); a multiple of 4
    views_per_photo: int = 4  # random crops per photo, each at its own scale
    min_short_side: int = 256  # each crop comes from the photo resized so its short side is in [min, max]
    max_short_side: int = 768  # the largest such short side (random scales: the student works at any size)
    teacher_precision: str = "fast"  # fast: the teacher's default path (bf16 / fp16); exact: fp32
    cache_dir: str = ""  # teacher-output cache, reused by later runs (default: <output_dir>/teacher_cache)
    dataloader_num_workers: int = 0  # data-loading worker processes

    # Student: a ScenimefyLiteTranslator.
    student_channels: tuple[int, ...] = (16, 32, 64)  # widths per level, full size first (3 widths: x4 resampling)
    student_blocks: int = 8  # residual blocks at the lowest resolution
    student_stem_kernel: int = 7  # first conv's kernel (odd)
    student_head_kernel: int = 3  # last conv's kernel (odd; 3: faster than the teacher's 7, as close)
    pretrained_student: str = ""  # continue from a student folder (config.json + safetensors) instead

    # Losses (scenimefy.training.distill).
    lambda_l1: float = 1.0  # pixel L1 to the teacher's output
    lambda_gradient: float = 1.0  # L1 of the image gradients (sharper edges; measured to help)
    lambda_lpips: float = 0.0  # LPIPS to the teacher's output (off: not measurable offline, docs/lite.md)
    lpips_net: str = "vgg"  # LPIPS trunk: vgg, alex, squeeze
    lpips_weights: str = "imagenet"  # imagenet (torchvision's, downloaded once) or random (smoke runs)

    # Optimisation: Adam, linear warm-up then cosine decay to 0.
    max_train_steps: int = 20000  # optimiser steps
    warmup_steps: int = 200  # steps of linear learning-rate warm-up
    train_batch_size: int = 16  # crops per step and process
    learning_rate: float = 1e-3  # Adam lr
    adam_beta1: float = 0.9  # Adam beta1
    adam_beta2: float = 0.99  # Adam beta2
    channels_last: bool = True  # channels_last student and batches (faster convs on CPUs and GPUs)
    seed: int | None = 0  # random seed of the crops and the student's init (none: unseeded init, crops of seed 0)

    # Outputs.
    output_dir: str = "outputs/lite"  # checkpoints, samples, logs, the teacher cache and the final student/
    checkpointing_steps: int = 2000  # save an accelerate checkpoint every this many steps
    checkpoints_total_limit: int | None = 3  # keep at most this many checkpoints (none: all)
    resume: str | None = None  # "latest" or a checkpoint-<step> folder
    sample_steps: int = 1000  # save a sample grid (and log the sample distance) every this many steps (0: at the end)
    num_sample_images: int = 4  # photos in a sample grid (central squares of the first photos)
    sample_size: int = 256  # side of the sample squares
    report_to: str = "jsonl"  # comma list: jsonl, tensorboard, wandb, ..., all (installed ones), none
    tracker_project_name: str = "distill"  # run name in the trackers (logs/<name>/metrics.jsonl)
    push_to_hub: bool = False  # publish output_dir/student at the end (token: `hf auth login` or HF_TOKEN)
    hub_model_id: str | None = None  # owner/name of the model repo for push_to_hub
    hub_license: str = "auto"  # card licence; auto: the teacher's (S-Lab when it derives from the authors')


def student_multiple(config: DistillConfig) -> int:
    """Input sides of the student must be multiples of this (2 ** downsamplings)."""
    if config.pretrained_student and Path(config.pretrained_student, "config.json").is_file():
        return 2 ** (len(ScenimefyLiteTranslator.load_config(config.pretrained_student)["channels"]) - 1)
    return 2 ** (len(config.student_channels) - 1)


def check(config: DistillConfig) -> None:
    """Every setting that cannot work, before anything loads or is written."""
    checks.check_translator_source("teacher", config.teacher)
    checks.check_image_source("photos", config.photos)
    n = checks.count_images(config.photos)
    if n is not None:
        processes = checks.process_count()
        checks.require(
            n * config.views_per_photo >= config.train_batch_size * processes,
            f"--photos {config.photos} gives {n} x {config.views_per_photo} views, fewer than one batch "
            f"(--train_batch_size {config.train_batch_size} x {processes} process(es)): use --views_per_photo "
            f"{-(-config.train_batch_size * processes // n)} or a smaller --train_batch_size",
        )
    if config.pretrained_student:
        checks.check_model_source("pretrained_student", config.pretrained_student, "config.json", "student folder")
        folder = Path(config.pretrained_student)
        if (folder / "config.json").is_file():
            try:
                student_config = read_config(folder)
            except UnknownTranslatorError as err:
                raise checks.ConfigError(f"--pretrained_student: {err}") from None
            checks.require(
                is_lite(student_config),
                f"--pretrained_student {folder}: a full translator, not a lite student; give a student folder "
                "(output_dir/student of an earlier distillation)",
            )
    channels = list(config.student_channels)
    checks.require(bool(channels) and min(channels) >= 1, f"--student_channels {channels}: positive widths")
    for name in ("student_stem_kernel", "student_head_kernel"):
        checks.require(getattr(config, name) % 2 == 1, f"--{name} {getattr(config, name)}: must be odd (e.g. 3)")
    m = student_multiple(config)
    for name in ("crop_size", "sample_size"):
        value = getattr(config, name)
        fixed = max(2 * m, value // m * m)
        checks.require(
            value % m == 0 and value >= 2 * m, f"--{name} {value}: the student needs a multiple of {m}; use {fixed}"
        )
    checks.require(
        config.crop_size <= config.min_short_side <= config.max_short_side,
        f"--min_short_side {config.min_short_side} / --max_short_side {config.max_short_side} must satisfy "
        f"crop_size ({config.crop_size}) <= min <= max: use --min_short_side {config.crop_size} "
        f"--max_short_side {max(config.max_short_side, config.crop_size)}",
    )
    checks.require(
        config.teacher_precision in ("fast", "exact"),
        f"--teacher_precision {config.teacher_precision}: use fast or exact",
    )
    if config.lambda_lpips > 0 and config.lpips_weights not in ("imagenet", "random"):
        raise checks.ConfigError(f"--lpips_weights {config.lpips_weights}: use imagenet or random")
    for name in ("max_train_steps", "train_batch_size", "views_per_photo", "checkpointing_steps"):
        checks.require(getattr(config, name) >= 1, f"--{name} {getattr(config, name)}: must be at least 1")
    checks.check_push_to_hub(config.push_to_hub, config.hub_model_id)
    checks.check_resume(config.output_dir, config.resume)


def photo_keys(photos: ImageDataset, root: str) -> list[str]:
    """A stable name per photo for the cache: its path under ``root``, or its dataset row."""
    if photos.files is not None:
        return [str(p.relative_to(root)) for p in photos.files]
    return [f"row-{i}" for i in range(len(photos))]


def load_rgb(photos: ImageDataset, index: int) -> np.ndarray:
    return np.asarray(photos.load_image(index))


def teacher_runner(teacher: torch.nn.Module, exact: bool) -> distill.TeacherFn:
    """The teacher as a function of a batch: the fast path, or eager fp32 for a net it does not serve."""
    try:
        check_supported(teacher)
    except UnsupportedLayerError:  # a lite teacher without two downsamplings
        return teacher
    return functools.partial(translate, teacher, exact=exact)


def write_student_folder(final_dir: Path, config: DistillConfig, steps: int) -> None:
    """README.md (model card) + training_config.json (training record) into student/."""
    license, provenance, uses_authors_weights = cards.resolve_license(config.hub_license, {"teacher": config.teacher})
    notes = [f"Distilled from `{config.teacher}`: the student learnt its outputs on photos, not anime images."]
    if config.lambda_lpips > 0 and config.lpips_weights == "random":
        notes.append("The LPIPS term used a randomly initialised network (`lpips_weights: random`): a smoke test.")
    record = cards.training_record(
        script="train/distill_translator.py",
        steps=steps,
        config=config_to_dict(config),
        data={"teacher": config.teacher, "photos": config.photos},
        license=license,
        provenance=provenance,
        uses_authors_weights=uses_authors_weights,
        notes=notes,
    )
    model_config = ScenimefyLiteTranslator.load_config(final_dir)
    card = cards.translator_card(
        model_config, str(final_dir), license=license, record=record, config_file=cards.TRAINING_RECORD
    )
    cards.write_model_folder_card(final_dir, card, record)


def main(argv: list[str] | None = None) -> None:
    config = parse_config(DistillConfig, argv, description=__doc__, prog="distill_translator.py")
    check(config)
    # Data and teacher first: a source that cannot be read stops the run before anything is written.
    photos = ImageDataset(config.photos, config.crop_size, config.crop_size, image_column=config.image_column)
    teacher, _ = open_translator(config.teacher)
    output_dir = Path(config.output_dir)
    accelerator = start_accelerator(output_dir, config.report_to, config.tracker_project_name, config.seed)
    teacher = teacher.to(accelerator.device).eval().requires_grad_(False)

    # Teacher targets: every process fills its share of the cache, then all read all of it.
    settings = distill.ViewSettings(
        crop=config.crop_size,
        views=config.views_per_photo,
        short_sides=(config.min_short_side, config.max_short_side),
        seed=config.seed or 0,
        precision=config.teacher_precision,
    )
    cache_root = Path(config.cache_dir) if config.cache_dir else output_dir / "teacher_cache"
    folder = cache_root / settings.folder_name(model_fingerprint(teacher))
    cache = distill.TeacherCache(folder, photo_keys(photos, config.photos), settings)
    mine = range(accelerator.process_index, len(photos), accelerator.num_processes)
    todo = len(cache.missing(mine))
    bar = tqdm(total=todo, desc="teacher outputs", disable=not accelerator.is_local_main_process or not todo)
    run_teacher = teacher_runner(teacher, exact=config.teacher_precision == "exact")
    try:
        built = cache.build(mine, lambda i: load_rgb(photos, i), run_teacher, accelerator.device, bar.update)
    except KeyboardInterrupt as interrupt:
        bar.close()
        raise stopped(0, output_dir, interrupt) from None
    bar.close()
    logger.info(f"teacher outputs: {built} photo(s) computed, {len(mine) - built} cached, in {cache.folder}")

    # Sample photos: central squares of the first photos, with the teacher's fp32 outputs.
    n = min(config.num_sample_images, len(photos))
    samples = np.stack([distill.centre_square(load_rgb(photos, i), config.sample_size) for i in range(n)])
    sample_x = to_model_range(torch.from_numpy(samples).permute(0, 3, 1, 2)).to(accelerator.device)
    sample_teacher = to_uint8(teacher_runner(teacher, exact=True)(sample_x)).permute(0, 2, 3, 1).cpu().numpy()
    del teacher, run_teacher  # not needed from here on
    accelerator.wait_for_everyone()

    if config.pretrained_student:
        student = ScenimefyLiteTranslator.from_pretrained(config.pretrained_student)
    else:
        student = ScenimefyLiteTranslator(
            channels=config.student_channels,
            n_blocks=config.student_blocks,
            stem_kernel=config.student_stem_kernel,
            head_kernel=config.student_head_kernel,
        )
    if student.n_down != 2:
        logger.warning("a student without two downsamplings runs eagerly in the pipeline (not the fast path)")
    logger.info(f"student: {student.macs_per_pixel():,.0f} MACs per pixel")
    fmt = torch.channels_last if config.channels_last else torch.contiguous_format
    student = student.to(memory_format=fmt).train()
    lpips_model = None
    if config.lambda_lpips > 0:
        from scenimefy.losses.finetune import load_lpips

        lpips_model = load_lpips(config.lpips_net, pretrained=config.lpips_weights == "imagenet")
        lpips_model = lpips_model.to(accelerator.device)
    weights = distill.LossWeights(config.lambda_l1, config.lambda_gradient, config.lambda_lpips)

    loader = torch.utils.data.DataLoader(
        distill.ViewDataset(cache),
        batch_size=config.train_batch_size,
        shuffle=True,
        drop_last=True,
        num_workers=config.dataloader_num_workers,
    )
    betas = (config.adam_beta1, config.adam_beta2)
    optimizer = torch.optim.Adam(student.parameters(), config.learning_rate, betas=betas)
    student, optimizer, loader = accelerator.prepare(student, optimizer, loader)
    steps_per_epoch = len(loader)
    if steps_per_epoch == 0:
        raise checks.ConfigError(
            f"fewer views than --train_batch_size {config.train_batch_size} x {accelerator.num_processes} "
            "process(es): no full batch; lower --train_batch_size or raise --views_per_photo"
        )
    # Stepped here once per step on every process (not prepared), saved with the checkpoints.
    schedule = distill.warmup_cosine(config.max_train_steps, config.warmup_steps)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
    accelerator.register_for_checkpointing(scheduler)

    def save_student_in_checkpoint(models, weights, checkpoint_dir):
        if accelerator.is_main_process:
            accelerator.unwrap_model(student).save_pretrained(Path(checkpoint_dir) / "student")

    accelerator.register_save_state_pre_hook(save_student_in_checkpoint)
    if accelerator.is_main_process:
        accelerator.init_trackers(config.tracker_project_name, config=config_to_dict(config))
    # Resume: accelerate state (student, optimiser, lr schedule, RNG) + the step counter.
    global_step = int(resume(accelerator, output_dir, config.resume)["step"])
    logger.info(
        f"{len(loader.dataset)} views of {len(photos)} photos, {steps_per_epoch} steps/epoch, "
        f"{config.max_train_steps} steps, {accelerator.num_processes} process(es)"
    )

    def save_samples(step: int) -> dict[str, float]:
        """The [photo | teacher | student] grid; returns the student's mean distance on the samples."""
        if not accelerator.is_main_process:
            return {}
        out = distill.student_outputs(accelerator.unwrap_model(student), samples)
        (output_dir / "samples").mkdir(parents=True, exist_ok=True)
        distill.sample_grid(samples, sample_teacher, out).save(output_dir / "samples" / f"step-{step:07d}.png")
        distances = [distill.mean_abs_levels(a, b) for a, b in zip(out, sample_teacher)]
        return {"sample_l1_levels": float(np.mean(distances))}

    progress = tqdm(
        total=config.max_train_steps, initial=global_step, desc="steps", disable=not accelerator.is_local_main_process
    )
    epoch, skip = divmod(global_step, steps_per_epoch)
    try:
        while global_step < config.max_train_steps:
            epoch_loader = accelerator.skip_first_batches(loader, skip) if skip else loader
            skip = 0
            loader.set_epoch(epoch)  # a new shuffle per epoch, the same on every process
            for batch in epoch_loader:
                logs = distill.distill_step(
                    student,
                    optimizer,
                    batch,
                    weights,
                    lpips_model=lpips_model,
                    backward=accelerator.backward,
                    autocast=accelerator.autocast,
                    memory_format=fmt,
                )
                scheduler.step()
                global_step += 1
                progress.update(1)
                logs.update(lr=scheduler.get_last_lr()[0], l1_levels=logs["l1"] * 127.5)
                if config.sample_steps and global_step % config.sample_steps == 0:
                    logs.update(save_samples(global_step))
                progress.set_postfix(l1=f"{logs['l1_levels']:.2f} levels")
                accelerator.log(logs, step=global_step)
                if global_step % config.checkpointing_steps == 0:
                    path = save_checkpoint(accelerator, output_dir, global_step, config.checkpoints_total_limit)
                    logger.info(f"saved {path}")
                if global_step >= config.max_train_steps:
                    break
            epoch += 1
    except KeyboardInterrupt as interrupt:
        progress.close()
        raise stopped(global_step, output_dir, interrupt) from None
    progress.close()

    # The final student: config.json + safetensors (ScenimefyPipeline.from_pretrained), its card and record.
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        distance = save_samples(global_step)["sample_l1_levels"]
        final_dir = output_dir / "student"
        accelerator.unwrap_model(student).to(memory_format=torch.contiguous_format).save_pretrained(final_dir)
        write_student_folder(final_dir, config, global_step)
        logger.info(
            f"saved the student, README.md and training_config.json to {final_dir} "
            f"(mean |student - teacher| on the sample photos: {distance:.2f} levels)"
        )
        if config.push_to_hub:
            # create_repo + upload_folder with the card; the token is never printed.
            result = publish.publish_translator(
                final_dir, config.hub_model_id, commit_message=f"Scenimefy-Lite student, {global_step} steps"
            )
            logger.info(f"uploaded to {result.url}")
    accelerator.end_training()


if __name__ == "__main__":
    run_script(main, "distill_translator.py")
