"""Scenimefy-Lite in one run: distil the parity teacher on this CPU, then compare.

Prints, against the full translator (by default the converted parity ``net_G.pth``: random
weights in the released Shinkai layout; ``--teacher`` for real weights) in the same process:

1. cost: multiply-adds per pixel and parameters of student and teacher;
2. distance: mean |difference| in 8-bit levels to the teacher's fp32 output at full size
   (``--eval-size``, the central square of each held-out photo), for the student and for the
   EQUAL-COMPUTE baseline -- the teacher run at the largest size (multiple of 4) whose
   multiply-adds do not exceed the student's, upscaled back with bicubic. For context also a
   constant colour (the training targets' mean) and the teacher at half size (~4x the student's
   compute);
3. speed: wall time of the teacher's default fast path ``translate(model, x)`` against the
   student through the same ``translate`` (it compiles the lite translator as is) and the
   student's eager ``forward`` in fp32 and bf16 channels_last, at 512x512 and 256x256;
   repetitions interleaved, medians of wall time and of process CPU time.

Held out: every 4th of ../shared/data/photos and every 3rd of ../shared/samples (by name); the
student trains on the others plus ``--anime`` images of ../shared/data/anime_proxy (inputs only:
distillation needs no labels). Teacher targets are cached under ``--cache`` (uint8 npz keyed by
photo, seed, crop geometry and teacher weights), so a second run skips them.

On a machine shared with other jobs, two OpenMP threads can be 3-10x slower than one (each
parallel region waits for a descheduled thread), so training runs on ``--train-threads`` (1)
and the speed table is printed for each of ``--threads`` (default 2 and 1).

    python benchmarks/bench_lite.py                        # ~10 min with a cold cache on a loaded
                                                           # machine (150 s of it training)
    python benchmarks/bench_lite.py --train-seconds 900    # longer distillation
    python benchmarks/bench_lite.py --config '{"channels": [16, 32, 64, 128], "n_blocks": 6}'
    python benchmarks/bench_lite.py --load out/lite --train-seconds 0   # evaluate a saved student
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import torch

import scenimefy  # noqa: F401  (before torchvision)
from scenimefy import _distill_proto as distill
from scenimefy.convert import load_reference_translator
from scenimefy.inference import cpu_has_fast_bf16, translate
from scenimefy.models.lite import ScenimefyLiteTranslator, count_macs, count_params
from scenimefy.models.translator import ScenimefyTranslator

SHARED = Path(os.environ.get("SCENIMEFY_SHARED", Path(__file__).resolve().parents[2] / "shared"))


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform

    return platform.processor() or "unknown CPU"


def split(anime: int) -> tuple[list[Path], list[Path]]:
    photos_train, photos_test = distill.holdout_split(distill.image_paths(SHARED / "data" / "photos"), every=4)
    samples_train, samples_test = distill.holdout_split(distill.image_paths(SHARED / "samples"), every=3)
    train = photos_train + samples_train + distill.image_paths(SHARED / "data" / "anime_proxy")[:anime]
    return train, photos_test + samples_test


def timed(fns: dict, reps: int) -> dict[str, tuple[float, float]]:
    """Median (wall, process CPU) seconds per function, repetitions interleaved, after a warm-up.

    With one thread the CPU time is the steadiest figure on a shared machine (it leaves out
    the time other processes hold the core).
    """
    for fn in fns.values():
        fn()
    times: dict[str, list[tuple[float, float]]] = {k: [] for k in fns}
    for _ in range(reps):
        for name, fn in fns.items():
            start, cpu = time.perf_counter(), time.process_time()
            fn()
            times[name].append((time.perf_counter() - start, time.process_time() - cpu))
    return {k: (statistics.median(w for w, _ in v), statistics.median(c for _, c in v)) for k, v in times.items()}


def speed_table(teacher, student, sizes: list[int], threads: int, reps: int) -> None:
    torch.set_num_threads(threads)
    eager_bf16 = copy.deepcopy(student).eval().to(memory_format=torch.channels_last)
    for p in eager_bf16.parameters():  # not .to(dtype): diffusers warns about fp32-only modules
        p.data = p.data.to(torch.bfloat16)
    print(f"\nspeed, {threads} thread(s), median of {reps} interleaved runs (load average {os.getloadavg()[0]:.1f}):")
    print(f"{'size':>9} {'path':<34} {'wall ms':>9} {'vs teacher':>11} {'cpu ms':>9} {'vs teacher':>11}")
    for side in sizes:
        x = torch.rand(1, 3, side, side) * 2 - 1
        x_bf16 = x.to(torch.bfloat16, memory_format=torch.channels_last)

        def eager(model, inp):
            with torch.inference_mode():
                return model(inp)

        fns = {
            "teacher translate() (default)": lambda: translate(teacher, x),
            "student translate() (default)": lambda: translate(student, x),
            "student translate(exact=True)": lambda: translate(student, x, exact=True),
            "student eager fp32": lambda: eager(student, x),
            "student eager bf16 channels_last": lambda: eager(eager_bf16, x_bf16),
        }
        medians = timed(fns, reps)
        base, base_cpu = medians["teacher translate() (default)"]
        for name, (t, c) in medians.items():
            print(
                f"{side:>4}x{side:<4} {name:<34} {t * 1e3:9.1f} {base / t:10.2f}x {c * 1e3:9.1f} {base_cpu / c:10.2f}x"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--teacher",
        default=str(SHARED / "parity" / "net_G.pth"),
        help="teacher: a reference *_net_G.pth or a translator folder (default: the parity weights)",
    )
    parser.add_argument("--config", default="{}", help="ScenimefyLiteTranslator kwargs as JSON (default config)")
    parser.add_argument("--load", help="start from a saved student folder (save_pretrained)")
    parser.add_argument("--save", help="save the distilled student here (save_pretrained)")
    parser.add_argument(
        "--init",
        choices=("default", "teacher-slices"),
        default="default",
        help="teacher-slices: the leading channels of the teacher's weights (same topology only)",
    )
    parser.add_argument("--train-seconds", type=float, default=150.0, help="distillation wall-clock budget")
    parser.add_argument("--steps", type=int, help="train this many steps instead of --train-seconds")
    parser.add_argument("--lr", type=float, default=5e-4)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--crop", type=int, default=128, help="training crop side (teacher runs on the crop)")
    parser.add_argument("--views", type=int, default=2, help="random crops per training image")
    parser.add_argument("--short-sides", default="256,640", help="training scales: photo short side range")
    parser.add_argument("--gradient-weight", type=float, default=1.0, help="image-gradient L1 term")
    parser.add_argument("--multiscale-weight", type=float, default=0.0, help="multi-scale L1 term")
    parser.add_argument("--anime", type=int, default=150, help="anime_proxy images added to the training inputs")
    parser.add_argument("--eval-size", type=int, default=512)
    parser.add_argument("--max-test", type=int, default=0, help="evaluate on at most this many held-out photos")
    parser.add_argument("--speed-sizes", default="512,256")
    parser.add_argument("--threads", default="2,1", help="thread counts of the speed table")
    parser.add_argument("--train-threads", type=int, default=1)
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cache", default=str(Path.home() / ".cache" / "scenimefy" / "bench_lite"))
    args = parser.parse_args()

    started = time.perf_counter()
    print(
        f"CPU: {cpu_name()}, {os.cpu_count()} logical cores, native bf16: {cpu_has_fast_bf16()}; "
        f"torch {torch.__version__}; load average {os.getloadavg()[0]:.1f}"
    )
    cache = Path(args.cache)
    teacher_path = Path(args.teacher)
    if teacher_path.is_dir():
        teacher = ScenimefyTranslator.from_pretrained(teacher_path).eval()
    else:
        teacher = load_reference_translator(teacher_path).eval()
    fingerprint = distill.model_fingerprint(teacher)
    if args.load:
        student = ScenimefyLiteTranslator.from_pretrained(args.load)
    else:
        torch.manual_seed(args.seed)
        student = ScenimefyLiteTranslator(**json.loads(args.config))
        if args.init == "teacher-slices":
            distill.init_from_teacher_slices(student, teacher)
    student.eval()

    # ---- cost
    side = 2**student.n_down * 8
    t_macs, s_macs = count_macs(teacher, side, side) / side**2, student.macs_per_pixel()
    t_par, s_par = count_params(teacher), count_params(student)
    ratio = s_macs / t_macs
    print(f"\nstudent config: {json.dumps({k: v for k, v in student.config.items() if not k.startswith('_')})}")
    print(f"{'':8} {'MACs/pixel':>12} {'params':>12}")
    print(f"{'teacher':8} {t_macs:12,.0f} {t_par:12,d}")
    print(
        f"{'student':8} {s_macs:12,.0f} {s_par:12,d}   (1/{1 / ratio:.1f} of the MACs, 1/{t_par / s_par:.1f} of the params)"
    )

    # ---- data
    torch.set_num_threads(args.train_threads)
    train_paths, test_paths = split(args.anime)
    if args.max_test:
        test_paths = test_paths[: args.max_test]
    short = tuple(int(v) for v in args.short_sides.split(","))
    t0 = time.perf_counter()
    views = [
        distill.teacher_views(
            teacher,
            p,
            seed=args.seed,
            n_views=args.views,
            crop=args.crop,
            short_sides=short,
            cache_dir=cache,
            fingerprint=fingerprint,
        )
        for p in train_paths
    ]
    inputs, targets = np.concatenate([v[0] for v in views]), np.concatenate([v[1] for v in views])
    print(
        f"\ntraining views: {len(inputs)} crops of {args.crop}px from {len(train_paths)} images "
        f"({time.perf_counter() - t0:.0f} s incl. teacher runs not cached yet)"
    )
    t0 = time.perf_counter()
    pairs = [
        distill.teacher_full(teacher, p, args.eval_size, cache_dir=cache, fingerprint=fingerprint) for p in test_paths
    ]
    print(
        f"held-out: {len(pairs)} photos at {args.eval_size}px, teacher fp32 outputs ({time.perf_counter() - t0:.0f} s)"
    )

    # ---- distil
    if args.steps or args.train_seconds > 0:
        budget = {"steps": args.steps} if args.steps else {"seconds": args.train_seconds}
        weights = distill.LossWeights(gradient=args.gradient_weight, multiscale=args.multiscale_weight)

        def log(step, elapsed, terms):
            print(f"  step {step:5d}  {elapsed:6.0f} s  L1 {terms['l1'] * 127.5:6.2f} levels", flush=True)

        print(f"distilling ({budget}, batch {args.batch}, lr {args.lr}, {weights}):")
        history = distill.distill(
            student,
            inputs,
            targets,
            batch=args.batch,
            lr=args.lr,
            weights=weights,
            seed=args.seed,
            log=log,
            log_every=50,
            **budget,
        )
        last = history[-min(50, len(history)) :]
        print(
            f"  {len(history)} steps in {history[-1]['time']:.0f} s; last {len(last)} steps' training L1 "
            f"{np.mean([h['l1'] for h in last]) * 127.5:.2f} levels"
        )
    if args.save:
        student.save_pretrained(args.save)
        print(f"saved to {args.save}")

    # ---- distance to the teacher
    small = distill.equal_compute_side(args.eval_size, ratio)
    half = args.eval_size // 2
    constant = np.round(targets.reshape(-1, 3).mean(0)).astype(np.uint8)
    names = [
        "student",
        f"teacher at {small}px, bicubic up (equal compute)",
        f"teacher at {half}px, bicubic up ({(half / args.eval_size) ** 2 / ratio:.1f}x the student's MACs)",
        "constant colour (mean of the training targets)",
    ]
    rows: dict[str, list[float]] = {name: [] for name in names}
    for x, y in pairs:
        rows[names[0]].append(distill.mean_abs_levels(distill.student_output(student, x), y))
        rows[names[1]].append(distill.mean_abs_levels(distill.equal_compute_baseline(teacher, x, small), y))
        rows[names[2]].append(distill.mean_abs_levels(distill.equal_compute_baseline(teacher, x, half), y))
        rows[names[3]].append(distill.mean_abs_levels(np.broadcast_to(constant, y.shape), y))
    print(
        f"\nmean |difference| to the teacher's fp32 output at {args.eval_size}x{args.eval_size}, 8-bit levels "
        f"({len(pairs)} held-out photos):"
    )
    for name, values in rows.items():
        print(f"  {name:<58} {np.mean(values):6.2f}   (per photo {min(values):.1f} .. {max(values):.1f})")
    wins = sum(a < b for a, b in zip(rows[names[0]], rows[names[1]]))
    print(f"  student closer than the equal-compute baseline on {wins}/{len(pairs)} photos")

    # ---- speed
    sizes = [int(s) for s in args.speed_sizes.split(",") if s]
    for threads in [int(t) for t in args.threads.split(",") if t]:
        speed_table(teacher, student, sizes, threads, args.reps)
    print(f"\ntotal {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    sys.exit(main())
