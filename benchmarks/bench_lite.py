"""Scenimefy-Lite in one run: distil the parity teacher on this CPU, then compare with it.

Everything runs in one process, on the same held-out photos, against the full translator (by
default the converted parity ``net_G.pth``: random weights in the released Shinkai layout;
``--teacher`` takes any translator source, e.g. the authors' Shinkai weights):

1. cost: multiply-adds per pixel and parameters of student and teacher;
2. distillation for a bounded time (``--train-seconds``) through ``scenimefy.training.distill``
   (the teacher cache, the L1 + gradient losses and the step of ``train/distill_translator.py``);
3. distance: mean |difference| in 8-bit levels to the teacher's fp32 output at full size
   (``--eval-size``, the central square of each held-out photo) of the student, next to the
   EQUAL-COMPUTE baseline -- the teacher run at the largest size (multiple of 4) whose
   multiply-adds do not exceed the student's, upscaled back with bicubic -- and, for context, a
   constant colour and the teacher at half size (~4x the student's compute);
4. speed: the teacher's default path ``translate(model, x)`` against the student through the same
   ``translate`` (and ``exact=True``, and eager bf16 channels_last) at 512x512 and 256x256, for
   each of ``--threads``; ``--variants`` adds untrained architecture variants (speed does not
   depend on the weights) to look for a wider margin at <= 1/15 of the MACs;
5. onnxruntime vs ``translate`` for both models (``scenimefy.inference.onnx``).
Timings interleave the repetitions (each timed call right after an untimed one of the same path)
and report medians of wall and process CPU time.

Held out: every 4th of ../shared/data/photos and every 3rd of ../shared/samples (by name); the
student trains on the others plus ``--anime`` images of ../shared/data/anime_proxy (inputs only:
distillation needs no labels). Teacher targets are cached under ``--cache``, so a second run
skips them. On a machine shared with other jobs two OpenMP threads can be 3-10x slower than
one, so training and target building run on ``--train-threads`` (1).

    python benchmarks/bench_lite.py                        # ~10 min with a cold cache (150 s training)
    python benchmarks/bench_lite.py --train-seconds 900    # a longer distillation
    python benchmarks/bench_lite.py --teacher shinkai      # the authors' weights, when cached
    python benchmarks/bench_lite.py --load out/lite --train-seconds 0   # evaluate a saved student
"""

from __future__ import annotations

import argparse
import copy
import functools
import json
import math
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import torch
import torch.nn.functional as F
from common import SHARED, cpu_line

import scenimefy  # noqa: F401  (before torchvision)
from scenimefy.data.images import image_files
from scenimefy.data.pixels import to_model_range, to_uint8
from scenimefy.hub.translators import open_translator
from scenimefy.inference import cpu_has_fast_bf16, onnx, translate
from scenimefy.models import ScenimefyLiteTranslator, count_macs, count_params
from scenimefy.models.loading import model_fingerprint
from scenimefy.training import distill

#: Architecture variants timed with --variants (name -> ScenimefyLiteTranslator kwargs).
VARIANTS = {
    "7x7 head (the R&D default)": {"head_kernel": 7},
    "9 blocks": {"n_blocks": 9},
    "3x3 stem": {"stem_kernel": 3},
    "(8,32,64) x9": {"channels": (8, 32, 64), "n_blocks": 9},
    "(12,32,64), 5x5 stem and head": {"channels": (12, 32, 64), "stem_kernel": 5, "head_kernel": 5},
}


def split(anime: int) -> tuple[list[Path], list[Path]]:
    """(train, held out): every 4th photo and every 3rd sample (by name) are held out."""
    photos, samples = image_files(SHARED / "data" / "photos"), image_files(SHARED / "samples")
    test = [p for i, p in enumerate(photos) if i % 4 == 0] + [p for i, p in enumerate(samples) if i % 3 == 0]
    train = [p for p in photos + samples if p not in test] + image_files(SHARED / "data" / "anime_proxy")[:anime]
    return train, test


def load_rgb(path: Path) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"))


def to_batch(rgb: np.ndarray) -> torch.Tensor:
    return to_model_range(torch.from_numpy(np.array(rgb, copy=True)).permute(2, 0, 1))[None]


def to_rgb(y: torch.Tensor) -> np.ndarray:
    return to_uint8(y).permute(0, 2, 3, 1).cpu().numpy()[0]


def held_out_targets(teacher, paths, size: int, cache: Path) -> list[tuple[np.ndarray, np.ndarray]]:
    """(central square at ``size``, the teacher's fp32 output) per held-out photo, cached."""
    fingerprint = model_fingerprint(teacher)
    pairs = []
    for path in paths:
        file = cache / f"eval-{fingerprint}-{path.stem}-{distill._digest(str(path))[:6]}-{size}.npz"
        if not file.is_file():
            x = distill.centre_square(load_rgb(path), size)
            file.parent.mkdir(parents=True, exist_ok=True)
            np.savez(file, x=x, y=to_rgb(translate(teacher, to_batch(x), exact=True)))
        with np.load(file) as data:
            pairs.append((data["x"], data["y"]))
    return pairs


def equal_compute_side(side: int, macs_ratio: float, multiple: int = 4) -> int:
    """Largest multiple of ``multiple`` whose square costs the teacher at most ``macs_ratio`` of side^2."""
    return max(4 * multiple, int(side * math.sqrt(macs_ratio) / multiple) * multiple)


def teacher_upscaled(teacher, rgb: np.ndarray, small: int) -> np.ndarray:
    """The EQUAL-COMPUTE baseline: the teacher (fp32) at ``small`` px (bicubic down), bicubic back up."""
    from PIL import Image

    h, w = rgb.shape[:2]
    x = np.asarray(Image.fromarray(rgb).resize((small, small), Image.BICUBIC))
    y = translate(teacher, to_batch(x), exact=True)
    return to_rgb(F.interpolate(y, size=(h, w), mode="bicubic", align_corners=False))


def train(student, inputs: np.ndarray, targets: np.ndarray, args) -> list[dict]:
    """``distill.distill_step`` for ``--train-seconds`` (or ``--steps``): bf16 autocast, channels_last,
    warm-up + cosine lr over the budget's elapsed fraction, batches without replacement."""
    weights = distill.LossWeights(1.0, args.gradient_weight, 0.0)
    schedule = distill.warmup_cosine(1000, 20)  # over per-mille of the budget
    optimizer = torch.optim.Adam(student.parameters(), lr=args.lr, betas=(0.9, 0.99))
    student.train().to(memory_format=torch.channels_last)
    rng = np.random.default_rng(args.seed)
    order: list[int] = []
    history: list[dict] = []
    start = time.perf_counter()
    while True:
        elapsed = time.perf_counter() - start
        progress = len(history) / args.steps if args.steps else elapsed / args.train_seconds
        if progress >= 1:
            break
        for group in optimizer.param_groups:
            group["lr"] = args.lr * schedule(int(progress * 1000))
        if len(order) < args.batch:
            order += list(rng.permutation(len(inputs)))
        idx, order = order[: args.batch], order[args.batch :]
        batch = {"photo": to_model_range(torch.from_numpy(inputs[idx]).permute(0, 3, 1, 2))}
        batch["teacher"] = to_model_range(torch.from_numpy(targets[idx]).permute(0, 3, 1, 2))
        autocast = functools.partial(torch.autocast, "cpu", dtype=torch.bfloat16)
        logs = distill.distill_step(
            student, optimizer, batch, weights, autocast=autocast, memory_format=torch.channels_last
        )
        history.append({**logs, "time": time.perf_counter() - start})
        if len(history) % 50 == 0 or len(history) == 1:
            print(f"  step {len(history):5d}  {history[-1]['time']:6.0f} s  L1 {logs['l1'] * 127.5:6.2f} levels")
    student.eval().to(memory_format=torch.contiguous_format)
    return history


def timed(fns: dict, reps: int) -> dict[str, tuple[float, float]]:
    """Median (wall, process CPU) seconds per function, repetitions interleaved.

    Each timed call follows an untimed call of the same function, so no path pays for the caches
    the previous one evicted (the first student run after the teacher's is measurably slower):
    what is timed is the steady state of a path run frame after frame, as in a video.
    """
    times: dict[str, list[tuple[float, float]]] = {k: [] for k in fns}
    for _ in range(reps):
        for name, fn in fns.items():
            fn()
            start, cpu = time.perf_counter(), time.process_time()
            fn()
            times[name].append((time.perf_counter() - start, time.process_time() - cpu))
    return {k: (statistics.median(w for w, _ in v), statistics.median(c for _, c in v)) for k, v in times.items()}


def print_table(title: str, rows: dict, base: str, side: int) -> None:
    base_wall, base_cpu = rows[base]
    print(title)
    for name, (wall, cpu) in rows.items():
        print(
            f"{side:>4}x{side:<4} {name:<40} {wall * 1e3:9.1f} {base_wall / wall:9.2f}x "
            f"{cpu * 1e3:9.1f} {base_cpu / cpu:9.2f}x"
        )


def eager_bf16(model):
    model = copy.deepcopy(model).eval().to(memory_format=torch.channels_last)
    for p in model.parameters():  # not .to(dtype): diffusers warns about fp32-only modules
        p.data = p.data.to(torch.bfloat16)
    return model


@torch.inference_mode()
def eager(model, x: torch.Tensor) -> torch.Tensor:
    return model(x)


def speed(teacher, student, variants: dict, sizes: list[int], threads: int, reps: int) -> None:
    torch.set_num_threads(threads)
    print(f"\nspeed, {threads} thread(s), median of {reps} interleaved runs (load average {os.getloadavg()[0]:.1f}):")
    print(f"{'size':>9} {'path':<40} {'wall ms':>9} {'vs T':>10} {'cpu ms':>9} {'vs T':>10}")
    bf16 = eager_bf16(student)
    for side in sizes:
        x = torch.rand(1, 3, side, side) * 2 - 1
        xb = x.to(torch.bfloat16, memory_format=torch.channels_last)

        fns = {
            "teacher translate() (default)": functools.partial(translate, teacher, x),
            "student translate() (default)": functools.partial(translate, student, x),
            "student translate(exact=True)": functools.partial(translate, student, x, exact=True),
            "student eager bf16 channels_last": functools.partial(eager, bf16, xb),
        }
        for name, model in variants.items():
            fns[f"variant {name}"] = functools.partial(translate, model, x)
        print_table("", timed(fns, reps), "teacher translate() (default)", side)


def onnx_speed(teacher, student, side: int, threads: int, reps: int) -> None:
    """onnxruntime (fp32) vs translate (default, exact) for both models, interleaved."""
    torch.set_num_threads(threads)
    x = torch.rand(1, 3, side, side) * 2 - 1
    fns = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, model in (("teacher", teacher), ("student", student)):
            path = onnx.export_onnx(model, Path(tmp) / f"{name}.onnx")
            runtime = onnx.OnnxTranslator(path, threads=threads)
            check = onnx.verify_onnx(path, model, x, runtime=runtime)
            print(
                f"  {name}: ONNX {path.stat().st_size / 2**20:.1f} MB, max |diff| to PyTorch fp32 {check.max_abs:.1e}"
            )
            fns[f"{name} onnxruntime fp32"] = functools.partial(runtime, x)
            fns[f"{name} translate() (default)"] = functools.partial(translate, model, x)
            fns[f"{name} translate(exact=True)"] = functools.partial(translate, model, x, exact=True)
        rows = timed(fns, reps)
    print(f"\nonnxruntime vs translate, {threads} thread(s), median of {reps} (load {os.getloadavg()[0]:.1f}):")
    print(f"{'size':>9} {'path':<40} {'wall ms':>9} {'vs T':>10} {'cpu ms':>9} {'vs T':>10}")
    print_table("", rows, "teacher translate() (default)", side)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--teacher", default=str(SHARED / "parity" / "net_G.pth"), help="any translator source")
    parser.add_argument("--config", default="{}", help="ScenimefyLiteTranslator kwargs as JSON (default config)")
    parser.add_argument("--load", help="start from a saved student folder")
    parser.add_argument("--save", help="save the distilled student here (save_pretrained)")
    parser.add_argument("--train-seconds", type=float, default=150.0, help="distillation wall-clock budget")
    parser.add_argument("--steps", type=int, help="train this many steps instead of --train-seconds")
    parser.add_argument("--lr", type=float, default=5e-4, help="measured best for ~200 steps (docs/lite.md)")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--crop", type=int, default=128, help="training crop side (the teacher runs on the crop)")
    parser.add_argument("--views", type=int, default=2, help="random crops per training image")
    parser.add_argument("--short-sides", default="256,640", help="training scales: photo short side range")
    parser.add_argument("--gradient-weight", type=float, default=1.0, help="image-gradient L1 term")
    parser.add_argument("--anime", type=int, default=150, help="anime_proxy images added to the training inputs")
    parser.add_argument("--eval-size", type=int, default=512)
    parser.add_argument("--max-test", type=int, default=0, help="evaluate on at most this many held-out photos")
    parser.add_argument("--speed-sizes", default="512,256")
    parser.add_argument("--threads", default="1,2", help="thread counts of the speed tables")
    parser.add_argument("--variants", action="store_true", help="also time untrained architecture variants")
    parser.add_argument("--no-onnx", action="store_true", help="skip the onnxruntime comparison")
    parser.add_argument("--train-threads", type=int, default=1)
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cache", default=str(Path.home() / ".cache" / "scenimefy" / "bench_lite"))
    args = parser.parse_args()

    started = time.perf_counter()
    print(f"{cpu_line()}; native bf16 path: {cpu_has_fast_bf16()}")
    cache = Path(args.cache)
    teacher, _ = open_translator(args.teacher)
    teacher.eval().requires_grad_(False)
    if args.load:
        student = ScenimefyLiteTranslator.from_pretrained(args.load).eval()
    else:
        torch.manual_seed(args.seed)
        student = ScenimefyLiteTranslator(**json.loads(args.config)).eval()

    # ---- cost
    side = 32
    t_macs, s_macs = count_macs(teacher, side, side) / side**2, student.macs_per_pixel()
    t_par, s_par = count_params(teacher), count_params(student)
    ratio = s_macs / t_macs
    print(f"\nstudent config: {json.dumps({k: v for k, v in student.config.items() if not k.startswith('_')})}")
    print(f"{'':8} {'MACs/pixel':>12} {'params':>12}")
    print(f"{'teacher':8} {t_macs:12,.0f} {t_par:12,d}")
    print(
        f"{'student':8} {s_macs:12,.0f} {s_par:12,d}   "
        f"(1/{1 / ratio:.1f} of the MACs, 1/{t_par / s_par:.1f} of the params)"
    )

    # ---- data: the library's teacher cache (the teacher's fast path on each crop, as the script does)
    torch.set_num_threads(args.train_threads)
    train_paths, test_paths = split(args.anime)
    test_paths = test_paths[: args.max_test or None]
    lo, hi = (int(v) for v in args.short_sides.split(","))
    settings = distill.ViewSettings(args.crop, args.views, (lo, hi), args.seed, "fast")
    views = distill.TeacherCache(
        cache / settings.folder_name(model_fingerprint(teacher)), [str(p) for p in train_paths], settings
    )
    t0 = time.perf_counter()
    views.build(range(len(train_paths)), lambda i: load_rgb(train_paths[i]), functools.partial(translate, teacher))
    inputs, targets = views.arrays()
    print(
        f"\ntraining views: {len(inputs)} crops of {args.crop}px from {len(train_paths)} images "
        f"({time.perf_counter() - t0:.0f} s incl. teacher runs not cached yet)"
    )
    t0 = time.perf_counter()
    pairs = held_out_targets(teacher, test_paths, args.eval_size, cache)
    print(
        f"held out: {len(pairs)} photos at {args.eval_size}px, teacher fp32 outputs ({time.perf_counter() - t0:.0f} s)"
    )

    # ---- distil
    if args.steps or args.train_seconds > 0:
        budget = f"{args.steps} steps" if args.steps else f"{args.train_seconds:.0f} s"
        print(f"distilling ({budget}, batch {args.batch}, lr {args.lr}, L1 + {args.gradient_weight} x gradient L1):")
        history = train(student, inputs, targets, args)
        last = history[-min(50, len(history)) :]
        print(
            f"  {len(history)} steps in {history[-1]['time']:.0f} s; last {len(last)} steps' training L1 "
            f"{np.mean([h['l1'] for h in last]) * 127.5:.2f} levels"
        )
    if args.save:
        student.save_pretrained(args.save)
        print(f"saved to {args.save}")

    # ---- distance to the teacher at full resolution
    small = equal_compute_side(args.eval_size, ratio)
    half = args.eval_size // 2
    constant = np.round(targets.reshape(-1, 3).mean(0)).astype(np.uint8)
    names = [
        "student",
        f"teacher at {small}px, bicubic up (EQUAL COMPUTE, 1/{(args.eval_size / small) ** 2:.1f})",
        f"teacher at {half}px, bicubic up ({(half / args.eval_size) ** 2 / ratio:.1f}x the student's MACs)",
        "constant colour (mean of the training targets)",
    ]
    rows: dict[str, list[float]] = {name: [] for name in names}
    outputs = distill.student_outputs(student, np.stack([x for x, _ in pairs]))
    for (x, y), out in zip(pairs, outputs):
        rows[names[0]].append(distill.mean_abs_levels(out, y))
        rows[names[1]].append(distill.mean_abs_levels(teacher_upscaled(teacher, x, small), y))
        rows[names[2]].append(distill.mean_abs_levels(teacher_upscaled(teacher, x, half), y))
        rows[names[3]].append(distill.mean_abs_levels(np.broadcast_to(constant, y.shape), y))
    print(
        f"\nmean |difference| to the teacher's fp32 output at {args.eval_size}x{args.eval_size}, 8-bit levels "
        f"({len(pairs)} held-out photos):"
    )
    for name, values in rows.items():
        print(f"  {name:<66} {np.mean(values):6.2f}   (per photo {min(values):.1f} .. {max(values):.1f})")
    wins = sum(a < b for a, b in zip(rows[names[0]], rows[names[1]]))
    print(f"  student closer than the equal-compute baseline on {wins}/{len(pairs)} photos")

    # ---- speed
    variants = {}
    if args.variants:
        for name, kwargs in VARIANTS.items():
            model = ScenimefyLiteTranslator(**kwargs).eval()
            variants[f"{name} 1/{t_macs / model.macs_per_pixel():.1f}"] = model
    sizes = [int(s) for s in args.speed_sizes.split(",") if s]
    for threads in [int(t) for t in args.threads.split(",") if t]:
        speed(teacher, student, variants, sizes, threads, args.reps)
    if not args.no_onnx:
        for threads in [int(t) for t in args.threads.split(",") if t]:
            onnx_speed(teacher, student, sizes[0], threads, max(3, args.reps - 2))
    print(f"\ntotal {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    sys.exit(main())
