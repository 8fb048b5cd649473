"""The diffusion models of the diffusion-pairs stage: style presets, schedulers, the checkpoint's
configs (read before anything loads, for the start-up checks) and the diffusers pipeline.

Models load through diffusers' ``from_pretrained`` from a local folder or a Hub id (the Hugging
Face cache only, when the Hub is out of reach); the tiny preset's random model is a folder written
by :func:`scenimefy.training.tiny.save_tiny_stable_diffusion` and loads the same way.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from scenimefy.hub.download import WeightsUnavailableError, hub_reachable, looks_local
from scenimefy.training.config import ConfigError
from scenimefy.training.tiny import TINY, TINY_STABLE_DIFFUSION_CONFIG

PRESETS: dict[str, tuple[str, str]] = {
    "shinkai": (
        "anime scene, Makoto Shinkai style background art, vivid saturated colours, dramatic blue sky with "
        "detailed cumulus clouds, glowing sunlight, lens flare, sharp clean lines, highly detailed, best quality",
        "photo, photorealistic, realistic, 3d render, people, person, text, watermark, signature, lowres, "
        "blurry, jpeg artifacts, worst quality, low quality",
    ),
    "hosoda": (
        "anime scene, Mamoru Hosoda style background art, clean flat colours, simple soft shading, bright summer "
        "light, tall white cumulonimbus clouds, hand-painted scenery, best quality",
        "photo, photorealistic, realistic, 3d render, heavy shading, people, person, text, watermark, signature, "
        "lowres, blurry, jpeg artifacts, worst quality, low quality",
    ),
}
#: ``--scheduler`` -> diffusers class (``default``: the checkpoint's own).
SCHEDULERS = {
    "default": None,
    "ddim": "DDIMScheduler",
    "pndm": "PNDMScheduler",
    "euler": "EulerDiscreteScheduler",
    "euler_a": "EulerAncestralDiscreteScheduler",
    "dpm++": "DPMSolverMultistepScheduler",
    "unipc": "UniPCMultistepScheduler",
}
DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
#: The licence of Stable Diffusion 1.x and of most checkpoints fine-tuned from it.
SD_LICENSE = "creativeml-openrail-m"


def prompts(config: Any) -> tuple[str, str]:
    """(prompt, negative prompt): the preset's, unless given."""
    prompt, negative = PRESETS[config.preset]
    return (
        config.prompt if config.prompt is not None else prompt,
        config.negative_prompt if config.negative_prompt is not None else negative,
    )


def _read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None


def model_file(name: str, filename: str) -> dict | None:
    """A JSON file of a local folder or Hub repo (from the cache offline); None when it cannot be read
    here (the model load then says why)."""
    if looks_local(name):
        return _read_json(Path(name).expanduser() / filename)
    from scenimefy.hub.download import download_hub_file

    try:
        return _read_json(download_hub_file(name, filename))
    except WeightsUnavailableError:
        return None


def model_configs(config: Any) -> tuple[dict | None, dict | None, dict | None, dict | None]:
    """(model_index, unet, vae, controlnet) configs, None where unknown; the tiny ones from the asset."""
    if config.model == TINY:
        tiny = json.loads(TINY_STABLE_DIFFUSION_CONFIG.read_text())
        index = {"_class_name": "StableDiffusionPipeline"}
        unet, vae = tiny["unet"], tiny["vae"]
    else:
        index = model_file(config.model, "model_index.json")
        unet, vae = model_file(config.model, "unet/config.json"), model_file(config.model, "vae/config.json")
    if not config.controlnet:
        controlnet = None
    elif config.controlnet == TINY:
        controlnet = {
            "_class_name": "ControlNetModel",
            **json.loads(TINY_STABLE_DIFFUSION_CONFIG.read_text())["controlnet"],
        }
    else:
        controlnet = model_file(config.controlnet, "config.json")
    return index, unet, vae, controlnet


def size_multiple(unet: dict, vae: dict) -> int:
    """Image sides the model takes are multiples of this: the VAE's downscaling times the UNet's."""
    vae_scale = 2 ** (len(vae.get("block_out_channels", [0] * 4)) - 1)
    return vae_scale * 2 ** (len(unet.get("down_block_types", [0] * 4)) - 1)


def resolve_dtype(setting: str, device: torch.device) -> torch.dtype:
    """``auto``: float16 on a GPU, float32 on a CPU (half precision there is slow or unsupported)."""
    if setting == "auto":
        return torch.float16 if device.type == "cuda" else torch.float32
    if setting == "float16" and device.type == "cpu":
        raise ConfigError("--dtype float16 on a CPU: use float32 (or bfloat16); float16 is for GPUs")
    return DTYPES[setting]


def _from_pretrained(cls: Any, name: str, what: str, **kwargs: Any) -> Any:
    """``cls.from_pretrained`` of a folder or Hub id, from the cache only when the Hub is out of reach;
    a missing model is one line, never a traceback or a hang."""
    local = looks_local(name)
    try:
        return cls.from_pretrained(name, local_files_only=not local and not hub_reachable(), **kwargs)
    except (OSError, ValueError) as err:
        where = "" if local else " (offline: only models already in the Hugging Face cache can be used)"
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise WeightsUnavailableError(f"{what} {name!r} could not be loaded{where}: {first}") from None


def load_pipeline(config: Any, model: str, controlnet: str | None, device: torch.device, dtype: torch.dtype) -> Any:
    """The diffusers pipeline of the run, on ``device`` in ``dtype``, with its scheduler and LoRA."""
    import diffusers

    common = {"dtype": dtype, "safety_checker": None, "requires_safety_checker": False}
    if config.anime_only:
        pipe = _from_pretrained(diffusers.StableDiffusionPipeline, model, "Stable Diffusion checkpoint", **common)
    elif controlnet:
        net = _from_pretrained(diffusers.ControlNetModel, controlnet, "ControlNet", dtype=dtype)
        pipe = _from_pretrained(
            diffusers.StableDiffusionControlNetImg2ImgPipeline,
            model,
            "Stable Diffusion checkpoint",
            controlnet=net,
            **common,
        )
    else:
        pipe = _from_pretrained(
            diffusers.StableDiffusionImg2ImgPipeline, model, "Stable Diffusion checkpoint", **common
        )
    if SCHEDULERS[config.scheduler]:
        pipe.scheduler = getattr(diffusers, SCHEDULERS[config.scheduler]).from_config(pipe.scheduler.config)
    if config.lora:
        try:
            pipe.load_lora_weights(config.lora)
        except (OSError, ValueError) as err:
            raise WeightsUnavailableError(f"LoRA {config.lora!r} could not be loaded: {err}") from None
        pipe.fuse_lora(lora_scale=config.lora_scale)  # plain weights again: no adapter cost per step
    pipe.set_progress_bar_config(disable=True)
    return pipe.to(device)
