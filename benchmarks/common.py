"""What every benchmark shares: the CPU it ran on, and interleaved timing."""

from __future__ import annotations

import os
import statistics
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import torch

#: The read-only shared material (``../shared`` beside the checkout; ``SCENIMEFY_SHARED`` overrides).
SHARED = Path(os.environ.get("SCENIMEFY_SHARED", Path(__file__).resolve().parents[2] / "shared"))


def cpu_line() -> str:
    model = "unknown CPU"
    flags: set[str] = set()
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
        for line in out.splitlines():
            if line.startswith("Model name:"):
                model = line.split(":", 1)[1].strip()
            if line.startswith("Flags:"):
                flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    have = {f: f in flags for f in ("avx2", "avx512f", "avx512_bf16", "amx_bf16")}
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return (
        f"CPU: {model}, {os.cpu_count()} logical cores, "
        + " ".join(f"{k}={'yes' if v else 'no'}" for k, v in have.items())
        + f"; torch {torch.__version__}, {torch.get_num_threads()} threads; load average {load:.1f}"
    )


def interleaved(cands: dict[str, Callable[[], object]], reps: int) -> dict[str, tuple[float, float]]:
    """Median and minimum wall seconds of each candidate, repetitions interleaved."""
    times: dict[str, list[float]] = {k: [] for k in cands}
    for f in cands.values():  # warm-up (and compilation) outside the timings
        f()
    for _ in range(reps):
        for k, f in cands.items():
            t0 = time.perf_counter()
            f()
            times[k].append(time.perf_counter() - t0)
    return {k: (statistics.median(v), min(v)) for k, v in times.items()}
