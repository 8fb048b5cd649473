"""Image preprocessing for training: resize, random crop and flip, to [-1, 1] tensors.

``load_size`` is the length the shorter side is resized to (aspect ratio kept; the reference
squashes every image to a ``load_size`` square instead), then a ``crop_size`` square is cut at a
random position and flipped left-right with probability 1/2. Evaluation uses the centre crop.
A pair is cropped and flipped with ONE draw, so its two images stay aligned.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

from scenimefy.data.pixels import to_model_range, to_uint8


@dataclass(frozen=True)
class CropParams:
    left: int
    top: int
    flip: bool


def check_sizes(load_size: int, crop_size: int) -> None:
    if crop_size <= 0 or crop_size % 4:
        raise ValueError(f"crop_size must be a positive multiple of 4 (the translator's stride), got {crop_size}")
    if load_size < crop_size:
        raise ValueError(f"load_size ({load_size}) must be at least crop_size ({crop_size})")


def resize_shorter_side(image: Image.Image, size: int) -> Image.Image:
    w, h = image.size
    scale = size / min(w, h)
    new = (max(size, round(w * scale)), max(size, round(h * scale)))
    return image if new == (w, h) else image.resize(new, Image.BICUBIC)


def draw_crop(size: tuple[int, int], crop_size: int, random: bool = True, flip: bool = True) -> CropParams:
    """Crop position (and flip) for an image of ``size`` (w, h); centred and unflipped when not ``random``."""
    w, h = size
    if not random:
        return CropParams((w - crop_size) // 2, (h - crop_size) // 2, False)
    left = int(torch.randint(0, w - crop_size + 1, ()).item())
    top = int(torch.randint(0, h - crop_size + 1, ()).item())
    return CropParams(left, top, bool(flip and torch.rand(()).item() < 0.5))


def apply_crop(image: Image.Image, params: CropParams, crop_size: int) -> Image.Image:
    image = image.crop((params.left, params.top, params.left + crop_size, params.top + crop_size))
    return image.transpose(Image.FLIP_LEFT_RIGHT) if params.flip else image


def to_tensor(image: Image.Image) -> torch.Tensor:
    """RGB PIL image -> (3, H, W) float32 in [-1, 1]."""
    return to_model_range(torch.from_numpy(np.array(image.convert("RGB"))).permute(2, 0, 1))


def to_pil(x: torch.Tensor) -> Image.Image:
    """(3, H, W) in [-1, 1] -> RGB PIL image (clamped, rounded)."""
    return Image.fromarray(to_uint8(x).permute(1, 2, 0).cpu().numpy())


def crop_image(
    image: Image.Image, load_size: int, crop_size: int, random: bool = True, flip: bool = True
) -> torch.Tensor:
    """Resize, crop (random or centred), maybe flip -> (3, crop, crop) tensor in [-1, 1]."""
    image = resize_shorter_side(image.convert("RGB"), load_size)
    params = draw_crop(image.size, crop_size, random, flip)
    return to_tensor(apply_crop(image, params, crop_size))


def crop_pair(
    real: Image.Image, anime: Image.Image, load_size: int, crop_size: int, random: bool = True, flip: bool = True
) -> tuple[torch.Tensor, torch.Tensor]:
    """The same crop and flip on both images of a pair (resized to the real image's size first)."""
    real = resize_shorter_side(real.convert("RGB"), load_size)
    anime = anime.convert("RGB")
    if anime.size != real.size:
        anime = anime.resize(real.size, Image.BICUBIC)
    params = draw_crop(real.size, crop_size, random, flip)
    return to_tensor(apply_crop(real, params, crop_size)), to_tensor(apply_crop(anime, params, crop_size))
