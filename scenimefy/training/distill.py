"""Stage 4 (Scenimefy-Lite): distil a trained translator (the teacher) into a small student.

Shared by ``train/distill_translator.py`` (under ``accelerate launch``) and
``benchmarks/bench_lite.py`` (a bounded CPU run). Three parts:

* **Teacher targets, cached.** Each training photo gives ``views`` random crops, each of the photo
  resized so its short side is uniform in ``short_sides`` (random scales: the student learns
  every resolution it will be run at). The teacher runs on each crop itself, so its
  InstanceNorm statistics are the crop's -- what the student sees when it trains on it (a crop
  of the whole-image output would carry statistics the student cannot know). No flips: a
  translator with learnt kernels is not flip-equivariant. Crops and outputs are stored as uint8
  ``.npz`` (compressed), one file per photo, in a folder named by the teacher's weights fingerprint and the
  view settings; the crops depend only on (seed, photo), so the cache is deterministic per seed,
  any process can fill any part of it, and an interrupted build resumes where it stopped.
* **Losses**, each a function of explicit arguments: pixel L1 (``pixel_l1``), the L1 of image
  gradients (``gradient_l1``) and LPIPS (``lpips_distance``); ``distill_loss`` weighs them.
* **The step** (``distill_step``), the learning-rate schedule (``warmup_cosine``), the sample
  grid (photo | teacher | student) and the distance in 8-bit levels used for evaluation.

Measured on the random-weight parity teacher within a bounded CPU budget (docs/lite.md): L1 +
gradient L1 is closer to the teacher than L1 alone; LPIPS could only be tried with random
weights offline (it measures nothing then) and is off by default.
"""

from __future__ import annotations

import hashlib
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn
from torch.utils.data import Dataset

from scenimefy.data.pixels import to_model_range, to_uint8

#: A teacher as the cache sees it: (B, 3, H, W) in [-1, 1] -> (B, 3, H, W) in [-1, 1].
TeacherFn = Callable[[torch.Tensor], torch.Tensor]


# --------------------------------------------------------------------------- teacher targets


@dataclass(frozen=True)
class ViewSettings:
    """How the training crops are drawn (all part of the cache folder's name)."""

    crop: int = 256  # crop side in pixels
    views: int = 4  # crops per photo
    short_sides: tuple[int, int] = (256, 768)  # the photo's short side is resized into this range first
    seed: int = 0
    precision: str = "fast"  # the teacher's path: "fast" (its default dtype) or "exact" (fp32)

    def folder_name(self, fingerprint: str) -> str:
        lo, hi = self.short_sides
        return f"{fingerprint}-c{self.crop}-n{self.views}-s{lo}_{hi}-seed{self.seed}-{self.precision}"


def random_views(rgb: np.ndarray, rng: np.random.Generator, settings: ViewSettings) -> np.ndarray:
    """``settings.views`` random ``crop`` squares of ``rgb`` (H, W, 3) uint8, each from the photo
    resized (bicubic) so its short side is uniform in ``short_sides`` (never below ``crop``).
    Returns (views, crop, crop, 3) uint8."""
    h, w = rgb.shape[:2]
    crop = settings.crop
    out = []
    for _ in range(settings.views):
        short = max(crop, int(rng.integers(settings.short_sides[0], settings.short_sides[1] + 1)))
        scale = short / min(h, w)
        rh, rw = max(crop, round(h * scale)), max(crop, round(w * scale))
        resized = rgb if (rh, rw) == (h, w) else np.asarray(Image.fromarray(rgb).resize((rw, rh), Image.BICUBIC))
        top, left = int(rng.integers(0, rh - crop + 1)), int(rng.integers(0, rw - crop + 1))
        out.append(resized[top : top + crop, left : left + crop])
    return np.stack(out)


def _digest(text: str) -> str:
    return hashlib.sha1(text.encode()).hexdigest()


class TeacherCache:
    """The teacher's outputs on random views of each photo, one ``.npz`` per photo in ``folder``.

    Args:
        folder: the cache folder of one teacher and one ``ViewSettings`` (see ``folder_name``).
        keys: a stable name per photo (its path relative to the data root, or a dataset row).
        settings: how the views are drawn.
    """

    def __init__(self, folder: str | os.PathLike, keys: Sequence[str], settings: ViewSettings) -> None:
        self.folder, self.keys, self.settings = Path(folder), list(keys), settings

    def file(self, index: int) -> Path:
        key = self.keys[index]
        stem = "".join(c if c.isalnum() or c in "-_" else "_" for c in Path(key).stem)[:40]
        return self.folder / f"{stem}-{_digest(key)[:10]}.npz"

    def missing(self, indices: Sequence[int] | None = None) -> list[int]:
        indices = range(len(self.keys)) if indices is None else indices
        return [i for i in indices if not self.file(i).is_file()]

    def rng(self, index: int) -> np.random.Generator:
        """The views of a photo depend on the seed and the photo's key only."""
        return np.random.default_rng([self.settings.seed, int(_digest(self.keys[index])[:8], 16)])

    @torch.no_grad()
    def build(
        self,
        indices: Sequence[int],
        load_rgb: Callable[[int], np.ndarray],
        teacher: TeacherFn,
        device: torch.device | str = "cpu",
        progress: Callable[[int], None] | None = None,
    ) -> int:
        """Compute and store the views of ``indices`` not cached yet; returns how many were computed.

        ``load_rgb(i)`` gives photo i as (H, W, 3) uint8. Each file is written to a temporary
        name and renamed, so an interrupted build leaves only complete files.
        """
        self.folder.mkdir(parents=True, exist_ok=True)
        todo = self.missing(indices)
        for i in todo:
            x = random_views(load_rgb(i), self.rng(i), self.settings)
            inputs = to_model_range(torch.from_numpy(x).permute(0, 3, 1, 2)).to(device)
            y = to_uint8(teacher(inputs)).permute(0, 2, 3, 1).cpu().numpy()
            tmp = self.file(i).with_name(f".{self.file(i).stem}.{os.getpid()}.tmp.npz")
            try:
                np.savez_compressed(tmp, x=x, y=y)  # photos and flat anime outputs shrink ~2x
                os.replace(tmp, self.file(i))
            finally:  # interrupted or out of disk: no temporary file left behind
                tmp.unlink(missing_ok=True)
            if progress is not None:
                progress(1)
        return len(todo)

    def arrays(self, indices: Sequence[int] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(inputs, teacher outputs) of the cached views, each (N, crop, crop, 3) uint8."""
        indices = range(len(self.keys)) if indices is None else indices
        pairs = [_load(str(self.file(i))) for i in indices]
        return np.concatenate([p[0] for p in pairs]), np.concatenate([p[1] for p in pairs])


@lru_cache(maxsize=64)
def _load(path: str) -> tuple[np.ndarray, np.ndarray]:
    with np.load(path) as data:
        return data["x"], data["y"]


class ViewDataset(Dataset):
    """The cached views as training items ``{"photo": (3, crop, crop), "teacher": (3, crop, crop)}`` in [-1, 1]."""

    def __init__(self, cache: TeacherCache) -> None:
        self.cache = cache
        self.views = cache.settings.views

    def __len__(self) -> int:
        return len(self.cache.keys) * self.views

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        x, y = _load(str(self.cache.file(index // self.views)))
        v = index % self.views
        return {
            "photo": to_model_range(torch.from_numpy(np.array(x[v], copy=True)).permute(2, 0, 1)),
            "teacher": to_model_range(torch.from_numpy(np.array(y[v], copy=True)).permute(2, 0, 1)),
        }


# --------------------------------------------------------------------------- losses


def pixel_l1(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """Mean |student - teacher| over pixels and channels (the distillation loss of pix2pix-style
    compression, e.g. GAN Compression, Li et al. 2020, Eq. 2's reconstruction term)."""
    return (student - teacher).abs().mean()


def gradient_l1(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """L1 between the horizontal and vertical finite differences of two image batches: the
    image-gradient difference loss of Mathieu et al. 2016 (Eq. 5, alpha = 1), which penalises
    the blur that plain L1 settles for where the target's texture is unpredictable."""

    def dx(t: torch.Tensor) -> torch.Tensor:
        return t[..., :, 1:] - t[..., :, :-1]

    def dy(t: torch.Tensor) -> torch.Tensor:
        return t[..., 1:, :] - t[..., :-1, :]

    return 0.5 * ((dx(student) - dx(teacher)).abs().mean() + (dy(student) - dy(teacher)).abs().mean())


def lpips_distance(lpips_model: nn.Module, student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """LPIPS (Zhang et al. 2018) between student and teacher outputs, both in [-1, 1]
    (``scenimefy.losses.finetune.load_lpips``; random weights offline measure nothing)."""
    return lpips_model(student, teacher).mean()


def distill_loss(
    student: torch.Tensor,
    teacher: torch.Tensor,
    *,
    lambda_l1: float = 1.0,
    lambda_gradient: float = 1.0,
    lambda_lpips: float = 0.0,
    lpips_model: nn.Module | None = None,
) -> tuple[torch.Tensor, dict[str, float]]:
    """lambda_l1 * L1 + lambda_gradient * gradient L1 + lambda_lpips * LPIPS, in fp32.

    Returns (loss, {term: value}) with the terms that have a non-zero weight.
    """
    student, teacher = student.float(), teacher.float()
    terms = {"l1": pixel_l1(student, teacher)}
    if lambda_gradient:
        terms["gradient"] = gradient_l1(student, teacher)
    if lambda_lpips:
        if lpips_model is None:
            raise ValueError("lambda_lpips > 0 needs an lpips_model")
        terms["lpips"] = lpips_distance(lpips_model, student, teacher)
    weights = {"l1": lambda_l1, "gradient": lambda_gradient, "lpips": lambda_lpips}
    loss = sum(weights[name] * value for name, value in terms.items())
    return loss, {name: float(value.detach()) for name, value in terms.items()}


@dataclass(frozen=True)
class LossWeights:
    lambda_l1: float = 1.0
    lambda_gradient: float = 1.0
    lambda_lpips: float = 0.0


def distill_step(
    student: nn.Module,
    optimizer: torch.optim.Optimizer,
    batch: dict[str, torch.Tensor],
    weights: LossWeights,
    *,
    lpips_model: nn.Module | None = None,
    backward: Callable[[torch.Tensor], None] | None = None,
    autocast: Callable[[], object] | None = None,
    memory_format: torch.memory_format = torch.contiguous_format,
) -> dict[str, float]:
    """One optimiser step on a batch ``{"photo", "teacher"}``; returns the loss terms and ``loss``.

    ``backward`` / ``autocast`` are the accelerator's (default: ``loss.backward()``, no autocast).
    """
    x = batch["photo"].contiguous(memory_format=memory_format)
    if autocast is not None:
        with autocast():
            out = student(x)
    else:
        out = student(x)
    loss, terms = distill_loss(out, batch["teacher"], lpips_model=lpips_model, **vars(weights))
    optimizer.zero_grad(set_to_none=True)
    (backward or torch.Tensor.backward)(loss)
    optimizer.step()
    return {"loss": float(loss.detach()), **terms}


def warmup_cosine(total_steps: int, warmup_steps: int) -> Callable[[int], float]:
    """LambdaLR factor: linear warm-up over ``warmup_steps``, then cosine decay to 0 at ``total_steps``."""

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

    return factor


# --------------------------------------------------------------------------- evaluation and samples


def mean_abs_levels(a: np.ndarray, b: np.ndarray) -> float:
    """Mean |a - b| of two uint8 images, in 8-bit levels."""
    return float(np.abs(a.astype(np.int16) - b.astype(np.int16)).mean())


def centre_square(rgb: np.ndarray, size: int) -> np.ndarray:
    """The central square of ``rgb`` (H, W, 3) uint8, resized (bicubic) to ``size`` x ``size``."""
    h, w = rgb.shape[:2]
    side = min(h, w)
    top, left = (h - side) // 2, (w - side) // 2
    square = rgb[top : top + side, left : left + side]
    return np.asarray(Image.fromarray(square).resize((size, size), Image.BICUBIC)) if side != size else square


@torch.no_grad()
def student_outputs(student: nn.Module, photos: np.ndarray) -> np.ndarray:
    """fp32 eager student outputs (N, H, W, 3) uint8 of (N, H, W, 3) uint8 photos, one at a time."""
    was_training = student.training
    student.eval()
    param = next(student.parameters())
    outs = []
    for rgb in photos:
        x = to_model_range(torch.from_numpy(np.array(rgb, copy=True)).permute(2, 0, 1))[None]
        outs.append(to_uint8(student(x.to(param.device, param.dtype))).permute(0, 2, 3, 1).cpu().numpy()[0])
    student.train(was_training)
    return np.stack(outs)


def sample_grid(photos: np.ndarray, teacher: np.ndarray, student: np.ndarray) -> Image.Image:
    """Rows of [photo | teacher | student] from three (N, H, W, 3) uint8 batches."""
    rows = [np.concatenate(parts, axis=1) for parts in zip(photos, teacher, student)]
    return Image.fromarray(np.concatenate(rows, axis=0))
