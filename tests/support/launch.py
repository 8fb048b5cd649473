"""Run a training script the way users do: the real ``accelerate launch`` executable.

Two CPU processes need ``--multi_gpu`` with ``ACCELERATE_USE_CPU=1``: plain
``--cpu --num_processes 2`` starts a single process unless an MPI launcher is configured.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

from tests.support.paths import REPO

ACCELERATE = Path(sys.executable).with_name("accelerate")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def accelerate_command(script: str | Path, args: list[str], num_processes: int = 1) -> tuple[list[str], dict[str, str]]:
    """The command line and environment of ``accelerate launch`` on ``num_processes`` CPU processes."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    if num_processes == 1:
        launcher = ["--num_processes", "1", "--cpu"]
    else:
        launcher = [
            "--multi_gpu",
            "--num_machines",
            "1",
            "--num_processes",
            str(num_processes),
            "--main_process_port",
            str(free_port()),
        ]
        env["ACCELERATE_USE_CPU"] = "1"
    common = ["--mixed_precision", "no", "--dynamo_backend", "no"]
    return [str(ACCELERATE), "launch", *launcher, *common, str(script), *map(str, args)], env


def accelerate_launch(
    script: str | Path, args: list[str], num_processes: int = 1, timeout: int = 300
) -> subprocess.CompletedProcess:
    command, env = accelerate_command(script, args, num_processes)
    return subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)
