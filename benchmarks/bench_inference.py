"""Inference speed, memory and accuracy: our ``translate`` against the reference demo path.

Baseline = what the authors' demo does: fp32 eager ``model(x)`` at full size. Ours, per path this
machine can run: ``bf16`` (where the CPU has native bf16; fp16 on CUDA), ``fp32`` (the fast path
of CPUs without native bf16: Winograd F(6x6, 3x3) for the 3x3 convs, channels_last) and
``exact`` (fp32 with the reference arithmetic). The default path is marked. All run in one
process on the same weights (the
converted parity checkpoint: random weights in the released Shinkai layout) and the same input (a
sample photo resized with bicubic), repetitions interleaved; ratios use the minimum over
repetitions, which is the least disturbed by other processes on a shared machine. The process
CPU time (all threads) is printed too: on a busy machine it is steadier than wall time.

Accuracy: mean / max |difference| of the 8-bit images (round((y+1)*127.5)) against the baseline.

Peak memory: each (path, size) runs once in a fresh subprocess that reads its peak resident set
(``VmHWM``; it includes ~0.45 GB of Python, torch and the weights) before and after the run: we
print the process peak and the increase the run caused.

    python benchmarks/bench_inference.py                  # ~5 min on 2 idle cores
    python benchmarks/bench_inference.py --sizes 512x512 --reps 2 --skip-memory
    python benchmarks/bench_inference.py --device cuda    # GPU: times synchronised, memory =
                                                          # torch.cuda.max_memory_allocated
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import torch
from common import SHARED, cpu_line
from PIL import Image

import scenimefy  # noqa: F401  (before torchvision)
from scenimefy.hub.convert import load_reference_translator
from scenimefy.inference.engine import translate
from scenimefy.inference.runtime import choose_settings, cpu_probe_bf16

WEIGHTS = SHARED / "parity" / "net_G.pth"
PHOTO = SHARED / "samples" / "space_5.png"
SIZES = ("512x512", "1024x1024", "1920x1080")
#: translate() arguments of each path (the dtype picks the path; choose_settings adds the rest).
PATH_ARGS = {"bf16": {"dtype": torch.bfloat16}, "fp16": {"dtype": torch.float16}, "fp32": {"dtype": torch.float32}}


def paths_for(device: torch.device) -> list[str]:
    """The baseline, the fast paths this device runs natively, and exact mode."""
    if device.type == "cuda":
        return ["baseline", "fp16", "exact"]
    return ["baseline", *(["bf16"] if cpu_probe_bf16() else []), "fp32", "exact"]


def parse_size(text: str) -> tuple[int, int]:
    w, h = (int(v) for v in text.lower().split("x"))
    return w, h


def load_input(width: int, height: int) -> torch.Tensor:
    image = Image.open(PHOTO).convert("RGB").resize((width, height), Image.BICUBIC)
    return torch.from_numpy(np.array(image)).permute(2, 0, 1)[None].float() / 127.5 - 1


def run_path(path: str, model, x: torch.Tensor, **kwargs) -> torch.Tensor:
    if path == "baseline":
        with torch.inference_mode():
            y = model(x)
    elif path == "exact":
        y = translate(model, x, exact=True, **kwargs)
    else:
        y = translate(model, x, **PATH_ARGS.get(path, {}), **kwargs)
    if x.device.type == "cuda":
        torch.cuda.synchronize(x.device)
    return y


def to_uint8(y: torch.Tensor) -> np.ndarray:
    return ((y.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).cpu().numpy()


def level_diff(a: torch.Tensor, b: torch.Tensor) -> tuple[float, int]:
    d = np.abs(to_uint8(a).astype(np.int16) - to_uint8(b).astype(np.int16))
    return float(d.mean()), int(d.max())


def rss_mb() -> float:
    """Peak resident set of this process image, MB.

    VmHWM, not ru_maxrss: Linux carries ru_maxrss across fork + exec, so a child started from a
    large parent would report the parent's size.
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB; macOS: bytes


def child(path: str, size: str, kwargs: dict, device: torch.device) -> None:
    """One measurement in a fresh process: prints peak memory before / after the run as JSON."""
    model = load_reference_translator(WEIGHTS).to(device)
    x = load_input(*parse_size(size)).to(device)
    cuda = device.type == "cuda"
    before = torch.cuda.max_memory_allocated(device) / 2**20 if cuda else rss_mb()
    t = time.perf_counter()
    run_path(path, model, x, **kwargs)
    peak = torch.cuda.max_memory_allocated(device) / 2**20 if cuda else rss_mb()
    print(json.dumps({"before_mb": before, "peak_mb": peak, "seconds": time.perf_counter() - t}))


def measure_memory(path: str, size: str, device: torch.device, **kwargs) -> dict:
    cmd = [sys.executable, __file__, "--device", str(device), "--child", path, size, json.dumps(kwargs)]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", nargs="+", default=list(SIZES), help="WxH, multiples of 4")
    ap.add_argument("--reps", type=int, default=3, help="timed repetitions per path (after a warm-up)")
    ap.add_argument("--skip-timing", action="store_true", help="only the peak-memory runs")
    ap.add_argument("--skip-memory", action="store_true", help="no subprocess peak-memory runs")
    ap.add_argument("--skip-4k", action="store_true", help="no 3840x2160 tiled memory run")
    ap.add_argument("--device", default="cpu", help="cpu (default) or cuda[:i]")
    ap.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = ap.parse_args()
    device = torch.device(args.device)
    if args.child:
        child(args.child[0], args.child[1], json.loads(args.child[2]), device)
        return

    model = load_reference_translator(WEIGHTS).to(device)
    paths = paths_for(device)
    default = choose_settings(device)
    default_path = {torch.bfloat16: "bf16", torch.float16: "fp16"}.get(default.dtype, "fp32")
    print(cpu_line())
    if device.type == "cuda":
        print(f"device: {torch.cuda.get_device_name(device)}")
    print(f"default path: {default_path} ({default.reason}); weights: {WEIGHTS.name}; input: {PHOTO.name}")
    for p in paths[1:-1]:
        print(f"  {p}: {choose_settings(device, **PATH_ARGS[p]).reason}")
    print("\nwall: seconds (min and median over repetitions); cpu: process CPU seconds, all threads (min)")
    print("speed-up, mean|d|, max|d|: against the baseline (the authors' demo path); * = default path")
    print(
        f"{'size':>10} {'path':>9} {'wall min':>8} {'median':>7} {'speed-up':>8} {'cpu':>6} {'cpu x':>6} "
        f"{'mean|d|':>8} {'max|d|':>6}"
    )
    for size in [] if args.skip_timing else args.sizes:
        x = load_input(*parse_size(size)).to(device)
        outputs, times, cpu = {}, {p: [] for p in paths}, {p: [] for p in paths}
        for p in paths:  # warm-up: oneDNN builds its kernels for each new shape
            outputs[p] = run_path(p, model, x)
        for _ in range(args.reps):
            for p in paths:
                t, c = time.perf_counter(), time.process_time()
                run_path(p, model, x)
                times[p].append(time.perf_counter() - t)
                cpu[p].append(time.process_time() - c)
        base, base_cpu = min(times["baseline"]), min(cpu["baseline"])
        for p in paths:
            mean_d, max_d = level_diff(outputs[p], outputs["baseline"])
            name = p + ("*" if p == default_path else "")
            print(
                f"{size:>10} {name:>9} {min(times[p]):8.2f} {statistics.median(times[p]):7.2f} "
                f"{base / min(times[p]):7.2f}x {min(cpu[p]):6.1f} {base_cpu / min(cpu[p]):5.2f}x "
                f"{mean_d:8.3f} {max_d:6d}",
                flush=True,
            )
        if size == "1920x1080":
            tiled = run_path(default_path, model, x, tile_size=512)
            mean_d, max_d = level_diff(tiled, outputs[default_path])
            print(f"{size:>10} tiled(512) vs untiled {default_path}: mean|d| {mean_d:.3f}, max|d| {max_d}")
        del outputs

    if not args.skip_memory:
        what = "peak CUDA memory allocated" if device.type == "cuda" else "peak resident memory"
        print(f"\n{what}, one fresh process per run (MB: process peak / increase by the run)")
        for size in args.sizes:
            cells = []
            for p in paths:
                m = measure_memory(p, size, device)
                cells.append(f"{p} {m['peak_mb']:.0f} / +{m['peak_mb'] - m['before_mb']:.0f}")
            print(f"{size:>10}: " + "   ".join(cells), flush=True)
    if not args.skip_4k:
        for p in paths[1:-1]:
            m = measure_memory(p, "3840x2160", device)
            grown = m["peak_mb"] - m["before_mb"]
            print(f"3840x2160 {p} (auto tiling): peak {m['peak_mb']:.0f} MB (+{grown:.0f}), {m['seconds']:.1f} s")
    print(cpu_line())


if __name__ == "__main__":
    main()
