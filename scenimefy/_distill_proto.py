"""Prototype: distilling the full translator into a ``ScenimefyLiteTranslator`` on a CPU budget.

R&D code for issue 14 (pure functions, no CLI); ``benchmarks/bench_lite.py`` drives it and
docs/lite-notes.md has the findings. Outline:

* Teacher targets are computed once and cached on disk as uint8 ``.npz`` "views": random crops
  of each training photo at a random scale, keyed by the photo, the seed, the crop geometry and
  a fingerprint of the teacher's weights. The teacher runs on the crop itself, so its
  InstanceNorm statistics are those of the crop -- exactly what the student sees when it
  trains on that crop (a crop of the teacher's whole-image output would carry the whole
  image's statistics, a target the student cannot reach). The views are not flipped: a
  translator with learnt kernels is not flip-equivariant.
* Training: L1 to the teacher's output (+ optional image-gradient L1 and multi-scale L1 terms),
  Adam, cosine learning-rate decay over a step or a wall-clock budget, bf16 autocast and
  channels_last (the fastest training setup measured on a CPU with AVX512-BF16).
* Evaluation: mean |difference| in 8-bit levels to the teacher's fp32 output at full size, next
  to the equal-compute baseline (the teacher at the reduced size that costs the student's
  multiply-adds, upscaled back with bicubic).
"""

from __future__ import annotations

import hashlib
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from .inference import translate

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp")


# --------------------------------------------------------------------------- images


def image_paths(folder: str | Path) -> list[Path]:
    """Image files of ``folder``, sorted by name."""
    return sorted(p for p in Path(folder).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)


def holdout_split(paths: Sequence[Path], every: int = 4, offset: int = 0) -> tuple[list[Path], list[Path]]:
    """(train, test): every ``every``-th path (from ``offset``, in name order) is held out."""
    ordered = sorted(paths, key=lambda p: p.name)
    test = [p for i, p in enumerate(ordered) if i % every == offset % every]
    train = [p for p in ordered if p not in test]
    return train, test


def load_rgb(path: str | Path) -> np.ndarray:
    """(H, W, 3) uint8; an alpha channel is dropped."""
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"))


def resize(rgb: np.ndarray, height: int, width: int) -> np.ndarray:
    if rgb.shape[:2] == (height, width):
        return rgb
    return np.asarray(Image.fromarray(rgb).resize((width, height), Image.BICUBIC))


def center_square(rgb: np.ndarray, size: int) -> np.ndarray:
    """The central square of ``rgb``, resized (bicubic) to ``size`` x ``size``."""
    h, w = rgb.shape[:2]
    side = min(h, w)
    top, left = (h - side) // 2, (w - side) // 2
    return resize(rgb[top : top + side, left : left + side], size, size)


def to_tensor(rgb: np.ndarray) -> torch.Tensor:
    """(..., H, W, 3) uint8 -> (..., 3, H, W) float32 in [-1, 1]."""
    t = torch.from_numpy(np.array(rgb, dtype=np.uint8, copy=True)).float().div_(127.5).sub_(1)
    return t.movedim(-1, -3)


def to_uint8(y: torch.Tensor) -> np.ndarray:
    """(..., 3, H, W) in [-1, 1] -> (..., H, W, 3) uint8, rounded (not truncated)."""
    return ((y.detach().float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).movedim(-3, -1).cpu().numpy()


def mean_abs_levels(a: np.ndarray, b: np.ndarray) -> float:
    """Mean |a - b| of two uint8 images, in 8-bit levels."""
    return float(np.abs(a.astype(np.int16) - b.astype(np.int16)).mean())


# --------------------------------------------------------------------------- teacher targets


def model_fingerprint(model: torch.nn.Module) -> str:
    """12 hex digits of a hash of the model's config and weights (cache keys)."""
    digest = hashlib.sha1(repr(dict(getattr(model, "config", {}))).encode())
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().float().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:12]


def _path_key(path: Path) -> str:
    return f"{path.stem}-{hashlib.sha1(str(Path(path).resolve()).encode()).hexdigest()[:6]}"


def run_teacher(teacher: torch.nn.Module, rgb: np.ndarray, *, exact: bool) -> np.ndarray:
    """Teacher output (N, H, W, 3) uint8 for (N, H, W, 3) uint8 inputs via ``translate``."""
    return to_uint8(translate(teacher, to_tensor(rgb), exact=exact))


def random_views(
    rgb: np.ndarray, rng: np.random.Generator, n_views: int, crop: int, short_sides: tuple[int, int]
) -> np.ndarray:
    """``n_views`` random ``crop`` x ``crop`` crops, each of ``rgb`` resized (bicubic) so its
    short side is uniform in ``short_sides`` (at least ``crop``). Returns (n, crop, crop, 3) uint8."""
    h, w = rgb.shape[:2]
    views = []
    for _ in range(n_views):
        short = max(crop, int(rng.integers(short_sides[0], short_sides[1] + 1)))
        scale = short / min(h, w)
        rh, rw = max(crop, round(h * scale)), max(crop, round(w * scale))
        resized = resize(rgb, rh, rw)
        top, left = int(rng.integers(0, rh - crop + 1)), int(rng.integers(0, rw - crop + 1))
        views.append(resized[top : top + crop, left : left + crop])
    return np.stack(views)


def teacher_views(
    teacher: torch.nn.Module,
    path: Path,
    *,
    seed: int,
    n_views: int,
    crop: int,
    short_sides: tuple[int, int],
    cache_dir: Path,
    exact: bool = False,
    fingerprint: str | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """(inputs, teacher outputs), each (n_views, crop, crop, 3) uint8, cached in ``cache_dir``.

    The crops depend only on (photo, seed, geometry); the file name also holds the teacher's
    fingerprint and the target precision (``exact``: fp32; else the fast path's bf16, ~1.4
    levels from fp32, a tenth of the cost of a distillation error).
    """
    fingerprint = fingerprint or model_fingerprint(teacher)
    name = (
        f"{_path_key(path)}-t{fingerprint}-s{seed}-n{n_views}-c{crop}-{short_sides[0]}_{short_sides[1]}"
        f"-{'fp32' if exact else 'fast'}.npz"
    )
    file = Path(cache_dir) / name
    if file.is_file():
        with np.load(file) as data:
            return data["x"], data["y"]
    rng = np.random.default_rng([seed, int(hashlib.sha1(path.name.encode()).hexdigest()[:8], 16)])
    x = random_views(load_rgb(path), rng, n_views, crop, short_sides)
    y = run_teacher(teacher, x, exact=exact)
    file.parent.mkdir(parents=True, exist_ok=True)
    tmp = file.with_suffix(".tmp.npz")
    np.savez(tmp, x=x, y=y)
    tmp.replace(file)
    return x, y


def teacher_full(
    teacher: torch.nn.Module, path: Path, size: int, *, cache_dir: Path, fingerprint: str | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """(input, fp32 teacher output) of the photo's central square at ``size``, cached."""
    fingerprint = fingerprint or model_fingerprint(teacher)
    file = Path(cache_dir) / f"{_path_key(path)}-t{fingerprint}-full{size}-fp32.npz"
    if file.is_file():
        with np.load(file) as data:
            return data["x"], data["y"]
    x = center_square(load_rgb(path), size)
    y = run_teacher(teacher, x[None], exact=True)[0]
    file.parent.mkdir(parents=True, exist_ok=True)
    tmp = file.with_suffix(".tmp.npz")
    np.savez(tmp, x=x, y=y)
    tmp.replace(file)
    return x, y


# --------------------------------------------------------------------------- baselines


def equal_compute_side(side: int, macs_ratio: float, multiple: int = 4) -> int:
    """Largest multiple of ``multiple`` whose square costs the teacher at most ``macs_ratio`` of
    ``side`` x ``side`` (the teacher's cost is proportional to the pixel count)."""
    return max(multiple, int(side * math.sqrt(macs_ratio) / multiple) * multiple)


def equal_compute_baseline(teacher: torch.nn.Module, rgb: np.ndarray, small_side: int) -> np.ndarray:
    """Teacher (fp32) at ``small_side`` (bicubic down), bicubic back up: (H, W, 3) uint8."""
    h, w = rgb.shape[:2]
    small = resize(rgb, small_side, small_side)
    y = translate(teacher, to_tensor(small)[None], exact=True)
    up = F.interpolate(y, size=(h, w), mode="bicubic", align_corners=False)
    return to_uint8(up)[0]


# --------------------------------------------------------------------------- initialisation


@torch.no_grad()
def init_from_teacher_slices(student: torch.nn.Module, teacher: torch.nn.Module) -> torch.nn.Module:
    """Copy the leading channels of every teacher weight into the student's same-named one.

    For a student with the teacher's topology and fewer channels (same number of
    downsamplings, at most as many blocks), e.g. the default lite config (16, 32, 64) for the
    ngf=64 teacher. The stem then computes exactly the teacher's first channels; deeper layers
    see only part of their inputs, but InstanceNorm removes the scale that loses. Measured: no
    consistent gain over the default init (docs/lite-notes.md).
    """
    if len(student.down) != len(teacher.down) or len(student.blocks) > len(teacher.blocks):
        raise ValueError("the student must have the teacher's downsamplings and at most its blocks")
    if student.stem.kernel_size != teacher.stem.kernel_size or student.head.kernel_size != teacher.head.kernel_size:
        raise ValueError("the student's stem and head kernels must match the teacher's")
    source = teacher.state_dict()
    for name, param in student.state_dict().items():
        if name not in source or any(a > b for a, b in zip(param.shape, source[name].shape)):
            raise ValueError(f"{name}: no teacher weight to slice {tuple(param.shape)} from")
        param.copy_(source[name][tuple(slice(0, n) for n in param.shape)])
    return student


# --------------------------------------------------------------------------- training


def gradient_l1(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """L1 between the horizontal and vertical finite differences of two image batches."""
    dx = lambda t: t[..., :, 1:] - t[..., :, :-1]  # noqa: E731
    dy = lambda t: t[..., 1:, :] - t[..., :-1, :]  # noqa: E731
    return 0.5 * ((dx(a) - dx(b)).abs().mean() + (dy(a) - dy(b)).abs().mean())


def multiscale_l1(a: torch.Tensor, b: torch.Tensor, levels: int = 2) -> torch.Tensor:
    """Mean L1 between 2x, 4x, ... average-pooled versions (the low frequencies, reweighted)."""
    total = a.new_zeros(())
    for _ in range(levels):
        a, b = F.avg_pool2d(a, 2), F.avg_pool2d(b, 2)
        total = total + (a - b).abs().mean()
    return total / levels


@dataclass(frozen=True)
class LossWeights:
    l1: float = 1.0
    gradient: float = 0.0
    multiscale: float = 0.0


def distill_loss(out: torch.Tensor, target: torch.Tensor, weights: LossWeights) -> tuple[torch.Tensor, dict]:
    """Weighted sum of the terms (fp32); returns (loss, {term: value})."""
    out, target = out.float(), target.float()
    terms = {"l1": (out - target).abs().mean()}
    if weights.gradient:
        terms["gradient"] = gradient_l1(out, target)
    if weights.multiscale:
        terms["multiscale"] = multiscale_l1(out, target)
    loss = sum(getattr(weights, k) * v for k, v in terms.items())
    return loss, {k: float(v.detach()) for k, v in terms.items()}


def distill_step(
    student: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    x: torch.Tensor,
    y: torch.Tensor,
    weights: LossWeights,
    *,
    autocast: bool = True,
) -> dict:
    """One optimiser step on (x, y) (B, 3, h, w) in [-1, 1]; returns the loss terms."""
    with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=autocast):
        out = student(x)
    loss, terms = distill_loss(out, y, weights)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return terms


def cosine_lr(base: float, progress: float, warmup: float = 0.02) -> float:
    """Linear warm-up over the first ``warmup`` of training, then cosine decay to 0."""
    if progress < warmup:
        return base * (progress + 1e-3) / warmup
    return base * 0.5 * (1 + math.cos(math.pi * min(1.0, (progress - warmup) / (1 - warmup))))


def distill(
    student: torch.nn.Module,
    inputs: np.ndarray,
    targets: np.ndarray,
    *,
    steps: int | None = None,
    seconds: float | None = None,
    batch: int = 8,
    lr: float = 5e-4,
    weights: LossWeights = LossWeights(),
    seed: int = 0,
    autocast: bool = True,
    channels_last: bool = True,
    log: Callable[[int, float, dict], None] | None = None,
    log_every: int = 25,
) -> list[dict]:
    """Train ``student`` on (N, h, w, 3) uint8 ``inputs`` -> ``targets`` for ``steps`` or ``seconds``.

    Batches are drawn without replacement (reshuffled each epoch). The learning rate follows
    ``cosine_lr`` over the step count, or over the elapsed fraction of ``seconds``. Returns the
    per-step loss terms (plus ``time``).
    """
    if (steps is None) == (seconds is None):
        raise ValueError("give exactly one of steps and seconds")
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    student.train().to(memory_format=fmt)
    optimizer = torch.optim.Adam(student.parameters(), lr=lr, betas=(0.9, 0.99))
    rng = np.random.default_rng(seed)
    order: list[int] = []
    history: list[dict] = []
    start = time.perf_counter()
    step = 0
    while True:
        elapsed = time.perf_counter() - start
        progress = step / steps if steps is not None else elapsed / seconds
        if progress >= 1:
            break
        for group in optimizer.param_groups:
            group["lr"] = cosine_lr(lr, progress)
        if len(order) < batch:
            order += list(rng.permutation(len(inputs)))
        idx, order = order[:batch], order[batch:]
        x = to_tensor(inputs[idx]).contiguous(memory_format=fmt)
        y = to_tensor(targets[idx])
        terms = distill_step(student, optimizer, x, y, weights, autocast=autocast)
        terms["time"] = time.perf_counter() - start
        history.append(terms)
        step += 1
        if log is not None and (step % log_every == 0 or step == 1):
            log(step, terms["time"], terms)
    student.eval()
    return history


@torch.no_grad()
def student_output(student: torch.nn.Module, rgb: np.ndarray) -> np.ndarray:
    """fp32 eager student output (H, W, 3) uint8 for one (H, W, 3) uint8 image."""
    student.eval()
    return to_uint8(student(to_tensor(rgb)[None].contiguous()))[0]


def evaluate(student: torch.nn.Module, pairs: Iterable[tuple[np.ndarray, np.ndarray]]) -> list[float]:
    """Mean |diff| in 8-bit levels of the student's output to each (input, teacher output)."""
    return [mean_abs_levels(student_output(student, x), y) for x, y in pairs]
