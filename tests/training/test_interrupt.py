"""Ctrl-C and SIGTERM end a training run with one line; --resume latest continues it, and the
metrics log of the whole run holds every step once."""

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from PIL import Image

from scenimefy.training.checkpoints import checkpoint_dirs
from scenimefy.training.tracking import read_metrics
from tests.support.launch import accelerate_command, accelerate_launch
from tests.support.paths import REPO

SCRIPT = REPO / "train" / "train_stylegan.py"
STOP = "; resume with --resume latest"


@pytest.fixture
def photos(tmp_path):
    rng = np.random.default_rng(0)
    folder = tmp_path / "photos"
    folder.mkdir()
    for i in range(4):
        Image.fromarray(rng.integers(0, 255, (40, 48, 3), dtype=np.uint8)).save(folder / f"{i}.png")
    return folder


def run_args(photos, out, *extra):
    preset = REPO / "train" / "configs" / "stylegan-tiny.yaml"
    fixed = {"--train_batch_size": "2", "--checkpointing_steps": "5", "--sample_steps": "0"}
    return ["--config", preset, "--train_data", photos, "--output_dir", out, *sum(fixed.items(), ()), *extra]


def steps_logged(out) -> list[int]:
    path = out / "logs" / "stylegan" / "metrics.jsonl"
    return [row["step"] for row in read_metrics(path)] if path.is_file() else []


def wait_past_a_checkpoint(proc, out, log) -> None:
    """Until a checkpoint is complete and at least two more steps are logged after it."""
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        assert proc.poll() is None, log.read_text()[-3000:]
        if checkpoint_dirs(out) and len(steps_logged(out)) >= int(checkpoint_dirs(out)[-1].name.split("-")[1]) + 2:
            return
        time.sleep(0.05)
    pytest.fail("the run made no progress")


def tracebacks(text: str) -> list[str]:
    return text.split("Traceback (most recent call last):")[1:]


@pytest.mark.slow
def test_ctrl_c_on_the_launcher_then_resume_logs_every_step_once(photos, tmp_path):
    out, log = tmp_path / "run", tmp_path / "run.log"
    command, env = accelerate_command(SCRIPT, run_args(photos, out, "--max_train_steps", "5000"))
    with open(log, "w") as sink:  # Ctrl-C in a terminal: SIGINT to the whole foreground process group
        proc = subprocess.Popen(command, cwd=REPO, env=env, stdout=sink, stderr=sink, start_new_session=True)
        wait_past_a_checkpoint(proc, out, log)
        os.killpg(proc.pid, signal.SIGINT)
        proc.wait(timeout=120)
    text = log.read_text()
    assert proc.returncode in (130, -signal.SIGINT)  # the launcher dies of the SIGINT: 130 in a shell
    stop_lines = [line for line in text.splitlines() if STOP in line]
    assert len(stop_lines) == 1, text[-3000:]
    stopped_at = int(stop_lines[0].split("stopped at step ")[1].split(";")[0])
    last_checkpoint = checkpoint_dirs(out)[-1].name
    assert stop_lines[0] == f"stopped at step {stopped_at}{STOP} (continues from {last_checkpoint})"
    assert steps_logged(out) == list(range(1, stopped_at + 1))
    # No traceback from the training process. accelerate's own launcher (not ours) still prints the
    # KeyboardInterrupt it receives in `process.wait()`: the only traceback allowed, and only that one.
    for block in tracebacks(text):
        assert "accelerate/commands/launch.py" in block and "simple_launcher" in block, block
        assert "train_stylegan.py" not in block and "scenimefy" not in block, block
    assert not (out / "generator").exists()

    resumed = accelerate_launch(
        SCRIPT, run_args(photos, out, "--resume", "latest", "--max_train_steps", str(stopped_at + 3))
    )
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"resumed from {out / last_checkpoint}" in resumed.stderr
    assert steps_logged(out) == list(range(1, stopped_at + 4))  # continuous, no step twice
    assert (out / "generator" / "config.json").is_file()


@pytest.mark.slow
def test_sigint_and_sigterm_of_the_script_exit_130_and_143_with_one_line(photos, tmp_path):
    env = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    for signum, code in ((signal.SIGINT, 130), (signal.SIGTERM, 143)):
        out, log = tmp_path / f"run-{code}", tmp_path / f"run-{code}.log"
        command = [sys.executable, str(SCRIPT), *map(str, run_args(photos, out, "--max_train_steps", "5000"))]
        with open(log, "w") as sink:
            proc = subprocess.Popen(command, cwd=REPO, env=env, stdout=sink, stderr=sink)
            wait_past_a_checkpoint(proc, out, log)
            proc.send_signal(signum)
            assert proc.wait(timeout=120) == code
        text = log.read_text()
        assert "Traceback" not in text and "KeyboardInterrupt" not in text, text[-3000:]
        last = text.strip().splitlines()[-1]
        assert last.startswith("stopped at step ") and STOP in last, last
