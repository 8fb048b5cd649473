"""Per-layer conv kernel choice (scenimefy.inference.kernels): what each kernel costs, what runs.

For the full translator and the lite student (random weights: speed does not depend on them) at
256x192, 480x360, 512x512 and 1024x1024:

1. per layer shape: the time of each candidate kernel (direct oneDNN conv in the path's dtype,
   Winograd F(4x4) / F(6x6) in fp32, fused blur-upsampling) in the trial that ``auto`` runs on
   first use, and the kernel it chose (a fresh, temporary kernel cache: nothing is reused);
2. whole model, repetitions interleaved (median ms): the default path (``auto``), ``exact=True``
   (direct fp32), forced Winograd (``SCENIMEFY_CONV_KERNELS=winograd`` on the fp32 path: the fp32
   fast path before per-layer choice), forced direct (on a bf16 CPU: the bf16 path before it) and
   ``heuristic``; the check: default <= 1.10x the better of exact and forced Winograd;
3. the student against the full model's default path at 512x512 (target >= 7x on an AVX2 CPU) and
   the student's frames/s at 256x192 through ``translate`` (target >= 15).

    python benchmarks/bench_kernels.py                 # this CPU's own path (~4 min here)
    python benchmarks/bench_kernels.py --avx2          # the kernels and path of an AVX2-only CPU
    python benchmarks/bench_kernels.py --sizes 256x192 --models lite   # a quick look

``--avx2`` re-runs the script with ``ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2``: the ISA of
an AVX2-only CPU, not its clock (a real one was ~3x slower per core). Ratios come from one run.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from contextlib import contextmanager

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch
from common import cpu_line, interleaved

import scenimefy  # noqa: F401  (before torchvision)
from scenimefy.inference import choose_settings, translate
from scenimefy.inference.kernels import CHOOSER
from scenimefy.models.lite import ScenimefyLiteTranslator
from scenimefy.models.translator import ScenimefyTranslator

SIZES = ("256x192", "480x360", "512x512", "1024x1024")


@contextmanager
def env(**values: str | None):
    before = {k: os.environ.get(k) for k in values}
    for k, v in values.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v
    try:
        yield
    finally:
        for k, v in before.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def path_runner(model, x, **overrides):
    exact = overrides.pop("exact", False)

    def run():
        with env(**overrides):
            translate(model, x, exact=exact)

    return run


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default=",".join(SIZES), help="WxH list (default: %(default)s)")
    parser.add_argument("--models", default="full,lite")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--avx2", action="store_true", help="run as an AVX2-only CPU would (see the module doc)")
    args = parser.parse_args()
    if args.avx2 and os.environ.get("ONEDNN_MAX_CPU_ISA") != "AVX2":
        extra = {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2"}
        argv = [a for a in sys.argv if a != "--avx2"]
        return subprocess.call([sys.executable, *argv], env={**os.environ, **extra})

    cache = tempfile.mkdtemp(prefix="scenimefy-kernels-")
    os.environ["SCENIMEFY_CACHE_DIR"] = cache  # a fresh trial for every layer
    os.environ.pop("SCENIMEFY_CONV_KERNELS", None)
    torch.manual_seed(0)
    cpu = torch.device("cpu")
    print(cpu_line())
    isa = os.environ.get("ONEDNN_MAX_CPU_ISA")
    print(f"ISA: ATen {torch.backends.cpu.get_cpu_capability()}, oneDNN cap {isa or 'none'}")
    print(f"default path: {choose_settings(cpu).reason}\n")
    bf16 = choose_settings(cpu).dtype == torch.bfloat16
    models = {
        "full": ScenimefyTranslator().eval(),  # the paper's translator: ngf 64, 9 blocks
        "lite": ScenimefyLiteTranslator().eval(),
    }
    models = {k: v for k, v in models.items() if k in args.models.split(",")}
    sizes = [tuple(int(v) for v in s.split("x")) for s in args.sizes.split(",")]
    inputs = {(w, h): torch.rand(1, 3, h, w) * 2 - 1 for w, h in sizes}

    print("== 1. per layer: trial times (ms, best of the trial's runs) and the chosen kernel")
    for model in models.values():
        for w, h in sizes:
            translate(model, inputs[w, h])  # the trial runs here
    for key, decision in sorted(CHOOSER.decisions().items()):
        times = "  ".join(f"{k} {v:8.2f}" for k, v in decision["ms"].items())
        print(f"{key:58s} {times}  -> {decision['choice']}")

    print("\n== 2. whole model, median ms of interleaved repetitions")
    paths = {
        "default": {},
        "exact": {"exact": True},
        "winograd": {"SCENIMEFY_CONV_KERNELS": "winograd", "SCENIMEFY_CPU_BF16": "0"},
        "direct": {"SCENIMEFY_CONV_KERNELS": "direct"},
        "heuristic": {"SCENIMEFY_CONV_KERNELS": "heuristic"},
    }
    if not bf16:  # on an fp32 CPU, forced direct is exact mode's arithmetic
        paths.pop("direct")
    results: dict[tuple[str, int, int], dict[str, float]] = {}
    failures = []
    for name, model in models.items():
        for w, h in sizes:
            x = inputs[w, h]
            reps = args.reps if w * h <= 512 * 512 else max(2, args.reps - 1)
            timed = interleaved({p: path_runner(model, x, **dict(o)) for p, o in paths.items()}, reps)
            ms = {p: t[0] * 1e3 for p, t in timed.items()}
            results[name, w, h] = ms
            better = min(ms["exact"], ms["winograd"])
            ok = ms["default"] <= 1.10 * better
            if not ok:
                failures.append(f"{name} {w}x{h}")
            cells = "  ".join(f"{p} {v:8.1f}" for p, v in ms.items())
            print(
                f"{name:4s} {w:4d}x{h:<4d} {cells}  default/best(exact, winograd) {ms['default'] / better:.2f}", end=""
            )
            print("  ok" if ok else "  SLOWER THAN 1.10x", flush=True)

    print("\n== 3. the student against the full model")
    if ("full", 512, 512) in results and ("lite", 512, 512) in results:
        ratio = results["full", 512, 512]["default"] / results["lite", 512, 512]["default"]
        print(f"512x512: student {ratio:.1f}x faster than the full model's default path (target >= 7x on AVX2)")
    if ("lite", 256, 192) in results:
        fps = 1e3 / results["lite", 256, 192]["default"]
        print(f"256x192: student {fps:.1f} frames/s through translate (target >= 15)")
    print(f"\ndefault within 1.10x of the better of exact and forced Winograd: {'all' if not failures else failures}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
