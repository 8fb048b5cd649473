"""The benchmark scripts run end to end at tiny sizes, so they stay correct between real runs."""

import os
import subprocess
import sys

from tests.support.paths import REPO, SHARED


def test_gpu_check_runs_every_part_at_tiny_sizes_on_cpu():
    result = subprocess.run(
        [sys.executable, "benchmarks/gpu_check.py", "--tiny", "--device", "cpu"],
        capture_output=True,
        text=True,
        cwd=REPO,
        env={**os.environ, "SCENIMEFY_SHARED": str(SHARED)},  # a clone elsewhere finds it too
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    out = result.stdout
    assert "CPU:" in out and "eager fp32" in out and "frames/s" in out
    for stage in ("stage 1 StyleGAN2", "stage 1 fine-tuning", "stage 2 pair generation", "stage 3 translator"):
        assert stage in out and "steps/s" in out.split(stage)[1].splitlines()[0]
    assert "diffusion pairs: tiny preset" in out and "h per 1,000 pairs" in out
