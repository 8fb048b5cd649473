"""Pseudo pairs from REAL photos by a diffusion model: the paper's future work (Sec. 6).

Photo i (in the source's order) is fitted to ``resolution`` (centre crop or resize) and turned into
its anime counterpart by ``StableDiffusionControlNetImg2ImgPipeline`` (SD 1.x): img2img at
``strength`` keeps the layout, a canny ControlNet holds the edges (OpenCV; no annotator weights),
the checkpoint, the prompt of a style preset and optionally a LoRA set the style. The noise of
photo i comes from its own seed (:func:`photo_seed` of the run seed and i) on a CPU generator, so a pair does not depend
on the batch, the device or the process that made it. Stage 2's segmentation-guided selection
then scores the pair exactly as it scores StyleGAN2 pairs (L_BCE with Mask2Former, paper 3.2) and
keeps it iff L_BCE < max_lbce and the photo shows more than min_classes classes.

The output is stage 2's dataset (``scenimefy.training.shards``: parquet shards per block of
photos, markers, resume, several processes) with the columns of stage 2 (real, anime, seed, lbce,
classes) plus ``edge_score`` (:mod:`scenimefy.evaluation.edges`), ``photo`` (where it came from)
and the generation settings; its card reports the L_BCE and edge-score distributions and how many
pairs the selection kept, and names the models, licences, prompts and photo source.

``anime_only``: text-to-image with the same checkpoint and prompt, for the unpaired anime set of
stage 3: ``num_anime`` images written as ``output_dir/000000.png`` ... (an image folder).

``diffusion_pairs(config)`` is the whole stage; ``train/diffusion_pairs.py`` is its command line.
"""

from __future__ import annotations

import math
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from datasets import Features, Image, Value
from PIL import Image as PILImage

from scenimefy.hub.download import load_segmenter, looks_local
from scenimefy.losses.segmentation import keep_pairs
from scenimefy.training import checks
from scenimefy.training.config import ConfigError, config_to_dict
from scenimefy.training.diffusion_card import dataset_card
from scenimefy.training.diffusion_models import (
    DTYPES,
    PRESETS,
    SCHEDULERS,
    load_pipeline,
    model_configs,
    prompts,
    resolve_dtype,
    size_multiple,
)
from scenimefy.training.shards import (
    atomic_write,
    marker_path,
    png,
    read_markers,
    remove_leftovers,
    run_blocks,
    shard_path,
    start_run,
    write_marker,
    write_rows,
)
from scenimefy.training.tiny import RANDOM_SEGMENTER_LBCE, TINY, tiny_segmenter

RESIZE_MODES = ("crop", "resize")
FEATURES = Features(
    {
        "real": Image(),
        "anime": Image(),
        "seed": Value("int64"),
        "lbce": Value("float32"),
        "classes": Value("int32"),
        "edge_score": Value("float32"),
        "photo": Value("string"),
        "prompt": Value("string"),
        "negative_prompt": Value("string"),
        "strength": Value("float32"),
        "guidance_scale": Value("float32"),
        "num_inference_steps": Value("int32"),
        "controlnet_scale": Value("float32"),
    }
)
#: Settings that decide which pairs a run produces; a resumed run must not change them.
CONTENT_KEYS = (
    "photos",
    "photos_split",
    "image_column",
    "model",
    "controlnet",
    "lora",
    "lora_scale",
    "segmenter",
    "seg_shortest_edge",
    "resolution",
    "resize",
    "strength",
    "guidance_scale",
    "num_inference_steps",
    "scheduler",
    "controlnet_scale",
    "canny_low",
    "canny_high",
    "max_lbce",
    "min_classes",
    "seed",
    "block_size",
    "anime_only",
)


def photo_seed(base_seed: int, index: int) -> int:
    """The seed of photo ``index``: 32 well-mixed bits of (run seed, index).

    32 bits because torch's CPU generator keeps only the low 32 bits of a seed: stage 2's
    ``seed * 2**32 + i`` would give every run seed the same noise.
    """
    return int(np.random.SeedSequence([base_seed, index]).generate_state(1, dtype=np.uint32)[0])


# ---------------------------------------------------------------- start-up checks


def check(config: Any) -> Any:
    """Every setting that cannot work, before a model loads or a file is written; returns the photos
    (:func:`photo_source`)."""
    checks.require(config.preset in PRESETS, f"--preset {config.preset}: unknown; use one of {', '.join(PRESETS)}")
    checks.require(
        0 < config.strength <= 1,
        f"--strength {config.strength}: must lie in (0, 1] (the share of the denoising redone; 0.4-0.7 keeps "
        "the photo's layout)",
    )
    checks.require(
        config.scheduler in SCHEDULERS, f"--scheduler {config.scheduler}: use one of {', '.join(SCHEDULERS)}"
    )
    checks.require(config.resize in RESIZE_MODES, f"--resize {config.resize}: use one of {', '.join(RESIZE_MODES)}")
    checks.require(
        config.dtype == "auto" or config.dtype in DTYPES, f"--dtype {config.dtype}: use auto or {', '.join(DTYPES)}"
    )
    for name in ("num_inference_steps", "block_size", "batch_size", "resolution", "num_anime"):
        checks.require(getattr(config, name) >= 1, f"--{name} {getattr(config, name)}: must be at least 1")
    checks.require(
        config.anime_only or math.ceil(config.num_inference_steps * config.strength) >= 1,
        f"--strength {config.strength} x --num_inference_steps {config.num_inference_steps} leaves no denoising step",
    )
    checks.require(0 <= config.seed < 2**31, f"--seed {config.seed}: must lie in [0, 2**31)")
    if config.max_photos is not None:
        checks.require(config.max_photos >= 1, f"--max_photos {config.max_photos}: must be at least 1 (or none)")
    for setting in ("model", "controlnet"):
        value = getattr(config, setting)
        if value and value != TINY:
            checks.check_model_source(setting, value, "model_index.json" if setting == "model" else "config.json")
    if config.lora and looks_local(config.lora) and not Path(config.lora).expanduser().exists():
        raise ConfigError(f"--lora {config.lora}: no such file or folder")
    if not config.anime_only and config.segmenter != TINY:
        checks.check_model_source("segmenter", config.segmenter, "config.json", "Mask2Former folder")
    checks.require(
        config.anime_only or config.segmenter != TINY or config.max_lbce > RANDOM_SEGMENTER_LBCE,
        f"--segmenter tiny is random: every pair scores L_BCE ~ 5.01, so --max_lbce {config.max_lbce} keeps none; "
        "use --max_lbce 5.1 (as train/configs/diffusion-pairs-tiny.yaml does)",
    )
    checks.require(
        not Path(config.output_dir).exists() or Path(config.output_dir).is_dir(),
        f"--output_dir {config.output_dir}: a file is in the way",
    )

    index, unet, vae, controlnet = model_configs(config)
    if index is not None:
        cls = str(index.get("_class_name", ""))
        checks.require(
            "XL" not in cls and "Flux" not in cls and "StableDiffusion3" not in cls,
            f"--model {config.model} is a {cls}: this stage runs Stable Diffusion 1.x/2.x checkpoints "
            "(StableDiffusionControlNetImg2ImgPipeline)",
        )
    if config.controlnet and not config.anime_only:
        if controlnet is not None:
            cls = str(controlnet.get("_class_name", ""))
            checks.require(
                cls == "ControlNetModel",
                f"--controlnet {config.controlnet} is a {cls or 'model without a class name'}, not a ControlNetModel",
            )
            checks.require(
                controlnet.get("addition_embed_type") != "text_time",
                f"--controlnet {config.controlnet} is an SDXL ControlNet; StableDiffusionControlNetImg2ImgPipeline "
                "takes SD 1.x/2.x ControlNets (e.g. lllyasviel/control_v11p_sd15_canny)",
            )
        if controlnet is not None and unet is not None:
            for key in ("cross_attention_dim", "block_out_channels"):
                checks.require(
                    controlnet.get(key) == unet.get(key),
                    f"--controlnet {config.controlnet} has {key} {controlnet.get(key)} but the UNet of --model "
                    f"{config.model} has {unet.get(key)}: the pipeline cannot take it; use a ControlNet trained "
                    "for this base model",
                )
    if unet is not None and vae is not None:
        multiple = size_multiple(unet, vae)
        fit = max(multiple, round(config.resolution / multiple) * multiple)
        checks.require(
            config.resolution % multiple == 0,
            f"--resolution {config.resolution}: the UNet of --model {config.model} takes sides that are multiples "
            f"of {multiple} (VAE scale x UNet downsampling); use --resolution {fit}",
        )
    return photo_source(config)  # no photos: an error now


def photo_source(config: Any):
    """The photos as an :class:`~scenimefy.data.datasets.ImageDataset` (unresized), or None for ``anime_only``."""
    if config.anime_only:
        return None
    from scenimefy.data.datasets import ImageDataset

    checks.check_image_source("photos", config.photos)
    return ImageDataset(config.photos, image_column=config.image_column, split=config.photos_split)


def photo_name(photos: Any, config: Any, index: int) -> str:
    """Where photo ``index`` came from: its path under ``--photos``, or ``source[split][index]``."""
    if photos.files is not None:
        return photos.files[index].relative_to(Path(config.photos).expanduser()).as_posix()
    return f"{config.photos}[{config.photos_split}][{index}]"


def fit_photo(image: PILImage.Image, resolution: int, mode: str) -> np.ndarray:
    """(resolution, resolution, 3) uint8: the centred square crop of the resized photo, or the photo squashed."""
    from scenimefy.data.transforms import apply_crop, draw_crop, resize_shorter_side

    image = image.convert("RGB")
    if mode == "resize":
        fitted = image.resize((resolution, resolution), PILImage.BICUBIC)
    else:
        resized = resize_shorter_side(image, resolution)
        fitted = apply_crop(resized, draw_crop(resized.size, resolution, random=False), resolution)
    return np.asarray(fitted, dtype=np.uint8)


class DiffusionPairMaker:
    """Generates, scores and writes one block of photos (or anime images) at a time."""

    def __init__(self, config: Any, out: Path, device: torch.device, photos: Any, model_dir: Path | None) -> None:
        self.config, self.out, self.device, self.photos = config, out, device, photos
        self.dtype = resolve_dtype(config.dtype, device)
        model, controlnet = config.model, config.controlnet
        if TINY in (model, controlnet):  # the tiny model goes through from_pretrained like any other
            from scenimefy.training.tiny import save_tiny_stable_diffusion

            tiny_model, tiny_controlnet = save_tiny_stable_diffusion(model_dir)
            model = str(tiny_model) if model == TINY else model
            controlnet = str(tiny_controlnet) if controlnet == TINY else controlnet
        self.pipe = load_pipeline(config, model, controlnet, device, self.dtype)
        self.controlnet = bool(controlnet)
        self.prompt, self.negative_prompt = prompts(config)
        self.segmenter = None
        if not config.anime_only:
            if config.segmenter == TINY:
                self.segmenter = tiny_segmenter(shortest_edge=config.seg_shortest_edge)
            else:
                self.segmenter = load_segmenter(config.segmenter, shortest_edge=config.seg_shortest_edge)
            self.segmenter.to(device, self.dtype)

    @property
    def total(self) -> int:
        cfg = self.config
        available = cfg.num_anime if cfg.anime_only else len(self.photos)
        return min(available, cfg.max_photos) if cfg.max_photos is not None and not cfg.anime_only else available

    def block_length(self, block: int) -> int:
        """How many photos (or anime images) block ``block`` holds in this run."""
        start = block * self.config.block_size
        return max(0, min(start + self.config.block_size, self.total) - start)

    def generate(self, photos: list[np.ndarray] | None, seeds: list[int]) -> np.ndarray:
        """(B, H, W, 3) uint8 anime images of ``photos`` (or from text alone), one generator per seed."""
        from scenimefy.data.edges import canny

        cfg, n = self.config, len(seeds)
        kwargs: dict[str, Any] = {
            "prompt": [self.prompt] * n,
            "negative_prompt": [self.negative_prompt] * n,
            "num_inference_steps": cfg.num_inference_steps,
            "guidance_scale": cfg.guidance_scale,
            "generator": [torch.Generator().manual_seed(s) for s in seeds],  # CPU: the same noise on any device
            "output_type": "np",
        }
        if photos is None:
            kwargs.update(height=cfg.resolution, width=cfg.resolution)
        else:
            kwargs.update(image=[PILImage.fromarray(p) for p in photos], strength=cfg.strength)
            if self.controlnet:
                edges = [canny(p, cfg.canny_low, cfg.canny_high) for p in photos]
                kwargs.update(
                    control_image=[
                        PILImage.fromarray(np.repeat(e[..., None], 3, axis=2).astype(np.uint8) * 255) for e in edges
                    ],
                    controlnet_conditioning_scale=cfg.controlnet_scale,
                    height=cfg.resolution,
                    width=cfg.resolution,
                )
        with torch.inference_mode():
            images = self.pipe(**kwargs).images
        return (np.clip(images, 0, 1) * 255).round().astype(np.uint8)  # as diffusers' numpy_to_pil

    def make_block(self, block: int) -> dict:
        cfg = self.config
        indices = range(block * cfg.block_size, min((block + 1) * cfg.block_size, self.total))
        if cfg.anime_only:
            return self._anime_block(block, indices)
        from scenimefy.data.edges import edge_alignment

        rows: dict[str, list] = {name: [] for name in FEATURES}
        scores: dict[str, list] = {"lbce": [], "edge_score": []}
        for first in range(indices.start, indices.stop, cfg.batch_size):
            batch = range(first, min(first + cfg.batch_size, indices.stop))
            photos = [fit_photo(self.photos.load_image(i), cfg.resolution, cfg.resize) for i in batch]
            seeds = [photo_seed(cfg.seed, i) for i in batch]
            anime = self.generate(photos, seeds)
            real_t = torch.from_numpy(np.stack(photos)).permute(0, 3, 1, 2)
            anime_t = torch.from_numpy(anime).permute(0, 3, 1, 2)
            lbce, classes = self.segmenter.score_pairs(anime_t.to(self.device), real_t.to(self.device))
            lbce, classes = lbce.cpu(), classes.cpu()
            edges = [edge_alignment(p, a) for p, a in zip(photos, anime)]
            scores["lbce"] += [round(float(v), 6) for v in lbce]
            scores["edge_score"] += [round(e, 6) for e in edges]
            for j in keep_pairs(lbce, classes, cfg.max_lbce, cfg.min_classes).nonzero().flatten().tolist():
                rows["real"].append(png(real_t[j]))
                rows["anime"].append(png(anime_t[j]))
                rows["seed"].append(seeds[j])
                rows["lbce"].append(float(lbce[j]))
                rows["classes"].append(int(classes[j]))
                rows["edge_score"].append(edges[j])
                rows["photo"].append(photo_name(self.photos, cfg, batch[j]))
                rows["prompt"].append(self.prompt)
                rows["negative_prompt"].append(self.negative_prompt)
                rows["strength"].append(cfg.strength)
                rows["guidance_scale"].append(cfg.guidance_scale)
                rows["num_inference_steps"].append(cfg.num_inference_steps)
                rows["controlnet_scale"].append(cfg.controlnet_scale if self.controlnet else 0.0)
        if rows["seed"]:
            write_rows(shard_path(self.out, block), rows, FEATURES)
        record = {"block": block, "candidates": len(indices), "kept": len(rows["seed"]), **scores}
        write_marker(self.out, block, record)
        return record

    def _anime_block(self, block: int, indices: range) -> dict:
        cfg = self.config
        for first in range(indices.start, indices.stop, cfg.batch_size):
            batch = range(first, min(first + cfg.batch_size, indices.stop))
            images = self.generate(None, [photo_seed(cfg.seed, i) for i in batch])
            for i, image in zip(batch, images):
                atomic_write(
                    self.out / f"{i:06d}.png", lambda p, image=image: PILImage.fromarray(image).save(p, format="PNG")
                )
        record = {"block": block, "candidates": len(indices), "kept": len(indices)}
        write_marker(self.out, block, record)
        return record


def diffusion_pairs(config: Any) -> int:
    """The whole stage under accelerate (see the module docstring); returns the exit status:
    0, or 1 when the selection kept no pair."""
    from accelerate import Accelerator

    photos = check(config)  # before any model loads or file is written
    accelerator = Accelerator()
    resolve_dtype(config.dtype, accelerator.device)
    out = Path(config.output_dir)
    with tempfile.TemporaryDirectory(prefix="scenimefy-tiny-sd-") as tiny_dir:
        maker = DiffusionPairMaker(config, out, accelerator.device, photos, Path(tiny_dir))
    what = f"{maker.total} anime images" if config.anime_only else f"pairs from {maker.total} photos"
    if accelerator.is_main_process:
        settings = {key: config_to_dict(config)[key] for key in CONTENT_KEYS}
        settings.update(prompt=maker.prompt, negative_prompt=maker.negative_prompt, dtype=str(maker.dtype))
        start_run(out, settings, path_keys=("photos", "model", "controlnet", "lora", "segmenter"))
        print(f"generating {what} with {accelerator.num_processes} process(es) on {accelerator.device}")
    accelerator.wait_for_everyone()

    num_blocks = math.ceil(maker.total / config.block_size)
    kept, candidates = run_blocks(
        accelerator,
        out,
        num_blocks,
        maker.make_block,
        progress=lambda kept, candidates: candidates,
        total=maker.total,
        desc="anime" if config.anime_only else "photos",
        unit="img" if config.anime_only else "photo",
        stopped=lambda kept, candidates: (
            f"stopped after {candidates} of {maker.total} {'images' if config.anime_only else 'photos'}; "
            "run the same command again to continue where it stopped"
        ),
        # --max_photos may change between runs: the last block may hold more or fewer photos now.
        complete=lambda record: record["candidates"] == maker.block_length(record["block"]),
    )

    accelerator.wait_for_everyone()
    status = 0
    if accelerator.is_main_process:
        for block in read_markers(out):  # blocks past a --max_photos lowered since they were made
            if block >= num_blocks:
                marker_path(out, block).unlink()
        remove_leftovers(out, read_markers(out))
        for path in out.glob(".tmp-*"):  # an anime image a killed run was writing
            path.unlink()
        for path in out.glob("[0-9][0-9][0-9][0-9][0-9][0-9].png") if config.anime_only else ():
            if int(path.stem) >= maker.total:  # past a --num_anime lowered since they were made
                path.unlink()
        if config.anime_only:
            print(f"{candidates} anime images -> {out}")
        else:
            card = dataset_card(out, config, FEATURES, maker.prompt, maker.negative_prompt)
            atomic_write(out / "README.md", lambda p: p.write_text(card))
            print(f"{kept} pairs ({kept / max(candidates, 1):.1%} of {candidates} photos kept) -> {out}")
            if kept == 0:
                print(
                    "warning: the selection kept no pair; loosen --max_lbce / --min_classes or lower --strength",
                    file=sys.stderr,
                )
                status = 1
    accelerator.wait_for_everyone()
    accelerator.end_training()  # a process leaving with its process group alive can abort (SIGABRT) at exit
    return status
