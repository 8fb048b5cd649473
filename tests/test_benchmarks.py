"""The benchmark scripts run end to end at tiny sizes, so they stay correct between real runs."""

import os
import subprocess
import sys

import pytest

from tests.support.paths import REPO, SHARED


@pytest.mark.slow
def test_gpu_check_runs_every_step_at_tiny_sizes_on_cpu():
    """Every step of the device check at tiny sizes, the training stages under two real
    ``accelerate launch --mixed_precision fp16 / bf16`` runs (on a CPU accelerate runs fp16 in fp32)."""
    result = subprocess.run(
        [sys.executable, "benchmarks/gpu_check.py", "--tiny", "--device", "cpu"],
        capture_output=True,
        text=True,
        cwd=REPO,
        env={**os.environ, "SCENIMEFY_SHARED": str(SHARED)},  # a clone elsewhere finds it too
        timeout=500,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    out = result.stdout
    assert "CPU:" in out and "FAILED" not in out and out.rstrip().endswith("all passed")
    for size in ("1024x1024", "1920x1080", "3840x2160 tiled"):
        line = next(line for line in out.splitlines() if line.startswith(f"{size}: fast vs fp32 mean"))
        assert "NaN no" in line and "exact fp32" in line
    assert "eager fp32" in out and "frames/s" in out
    runs = out.split("-- accelerate launch --mixed_precision ")[1:]
    assert [run.split()[0] for run in runs] == ["fp16", "bf16"]
    assert "autocast bf16" in runs[1]
    for run in runs:
        for stage in ("stage 1 StyleGAN2", "stage 1 fine-tuning", "stage 2 pair generation", "stage 3 translator"):
            line = run.split(stage)[1].splitlines()[0]
            assert "steps/s" in line and line.endswith("losses finite")
    assert "R1 + path length" in runs[0] and "with R1" in runs[0]
    assert "diffusion pairs: tiny preset" in out and "h per 1,000 pairs" in out
