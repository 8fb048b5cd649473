"""The paper's semantic-consistency metric L_BCE (Tables 3, 4) between two folders of images.

Each translated image is compared with the source photo of the same relative path and stem
(``photos/a/b.jpg`` <-> ``out/a/b.png``): L_BCE(translated, photo) as in ``selection``, averaged
over the pairs. Lower is better; the paper reports 4.39 for the full model.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from scenimefy.data.images import image_files, load_image
from scenimefy.losses.segmentation import semantic_consistency
from scenimefy.models.segmenter import SemanticSegmenter


@dataclass
class LbceResult:
    mean: float
    per_image: dict[str, float] = field(default_factory=dict)  # relative path of the photo -> L_BCE
    unmatched_reference: list[str] = field(default_factory=list)  # photos without a translation
    unmatched_translated: list[str] = field(default_factory=list)  # translations without a photo


def _images_by_key(root: Path) -> dict[str, Path]:
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: no such folder")
    found: dict[str, Path] = {}
    for path in image_files(root):
        key = path.relative_to(root).with_suffix("").as_posix()
        if key in found:
            raise ValueError(f"{found[key]} and {path} share the name {key!r}: pairs are matched by name")
        found[key] = path
    return found


Pair = tuple[str, Path, Path]  # (name, photo, translation)


def pair_files(
    reference_dir: str | os.PathLike, translated_dir: str | os.PathLike
) -> tuple[list[Pair], list[str], list[str]]:
    """(key, photo, translation) for names present in both folders, plus the unmatched names of each."""
    reference, translated = _images_by_key(Path(reference_dir)), _images_by_key(Path(translated_dir))
    pairs = [(key, reference[key], translated[key]) for key in reference if key in translated]
    if not pairs:
        raise ValueError(f"no image in {translated_dir} has the name of an image in {reference_dir}")
    return pairs, sorted(set(reference) - set(translated)), sorted(set(translated) - set(reference))


def _load_pair(photo: Path, translation: Path) -> tuple[np.ndarray, np.ndarray]:
    real, fake = load_image(photo).rgb, load_image(translation).rgb
    if fake.shape != real.shape:  # e.g. a translator that crops to multiples of 4
        fake = np.asarray(Image.fromarray(fake).resize((real.shape[1], real.shape[0]), Image.BILINEAR))
    return real, fake


def _to_batch(arrays: list[np.ndarray]) -> torch.Tensor:
    return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2)  # (B, 3, H, W) uint8


def evaluate_lbce(
    reference_dir: str | os.PathLike,
    translated_dir: str | os.PathLike,
    segmenter: SemanticSegmenter,
    *,
    batch_size: int = 8,
    progress: bool = True,
) -> LbceResult:
    """Mean L_BCE(translation, photo) over the pairs matched by name (batched by image size)."""
    from tqdm.auto import tqdm

    pairs, missing, extra = pair_files(reference_dir, translated_dir)
    per_image: dict[str, float] = {}
    batch: list[tuple[str, np.ndarray, np.ndarray]] = []

    def flush() -> None:
        real = _to_batch([r for _, r, _ in batch])
        fake = _to_batch([f for _, _, f in batch])
        scores = segmenter(torch.cat([fake, real]))
        lbce = semantic_consistency(*scores.chunk(2))
        per_image.update({key: value for (key, _, _), value in zip(batch, lbce.tolist())})
        batch.clear()

    for key, photo, translation in tqdm(pairs, desc="L_BCE", unit="pair", disable=not progress):
        real, fake = _load_pair(photo, translation)
        if batch and (len(batch) == batch_size or batch[0][1].shape != real.shape):
            flush()
        batch.append((key, real, fake))
    flush()
    mean = float(np.mean(list(per_image.values())))
    return LbceResult(mean=mean, per_image=per_image, unmatched_reference=missing, unmatched_translated=extra)
