"""What every ``train/`` script does around its loop: start-up, resume, interrupts and errors.

- :func:`run_script` runs a script's ``main`` and turns what can go wrong into one line on stderr:
  a setting or data problem (exit 2), Ctrl-C / SIGINT (exit 130) or SIGTERM (exit 143) as
  "stopped at step N; resume with --resume latest". No traceback, on any rank.
- :func:`start_accelerator` creates the Accelerator with the run's trackers, logging and seed,
  then the output folder (call it only after the start-up checks passed).
- :func:`resume` restores the newest checkpoint and trims the metrics log to it, so the log of a
  run that was stopped and resumed holds every step once.
- :func:`cycle`: endless batches (GANs count steps, not epochs).
"""

from __future__ import annotations

import logging
import os
import signal
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from scenimefy._distributed import close_process_group
from scenimefy.training.checkpoints import checkpoint_dirs, resume_state

EXIT_USAGE = 2


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where the script is, like Ctrl-C raises KeyboardInterrupt."""


class TrainingStopped(Exception):
    """A run stopped by a signal at ``step``; its message says how to continue."""

    def __init__(
        self, step: int, output_dir: str | os.PathLike | None, terminated: bool = False, message: str | None = None
    ) -> None:
        self.step, self.output_dir, self.terminated = step, output_dir, terminated
        super().__init__(message or stop_message(step, output_dir))

    @property
    def exit_code(self) -> int:
        return 128 + (signal.SIGTERM if self.terminated else signal.SIGINT)


def stop_message(step: int, output_dir: str | os.PathLike | None) -> str:
    found = checkpoint_dirs(output_dir) if output_dir else []
    where = f"continues from {found[-1].name}" if found else "no checkpoint yet: it starts from step 0"
    return f"stopped at step {step}; resume with --resume latest ({where})"


def stopped(step: int, output_dir: str | os.PathLike | None, interrupt: KeyboardInterrupt) -> TrainingStopped:
    """``except KeyboardInterrupt as err: raise stopped(step, output_dir, err) from None`` in a loop."""
    return TrainingStopped(step, output_dir, terminated=isinstance(interrupt, Terminated))


def _raise_terminated(signum, frame) -> None:
    raise Terminated()


def _user_errors() -> tuple[type[BaseException], ...]:
    """Errors that are the user's to fix: printed as one line, never as a traceback."""
    from scenimefy.data.images import InvalidImageError
    from scenimefy.data.sources import DataSourceError
    from scenimefy.hub.convert import CheckpointError
    from scenimefy.hub.download import WeightsUnavailableError
    from scenimefy.hub.publish import PublishError
    from scenimefy.losses.clip import PriorWeightsError
    from scenimefy.losses.perceptual import PerceptualWeightsError
    from scenimefy.training.config import ConfigError

    return (
        ConfigError,
        DataSourceError,
        CheckpointError,
        WeightsUnavailableError,
        PublishError,
        PriorWeightsError,
        PerceptualWeightsError,
        InvalidImageError,
    )


def _is_main_rank() -> bool:
    return int(os.environ.get("RANK", "0") or 0) == 0


def _say(text: str) -> None:
    if _is_main_rank():
        print(text, file=sys.stderr, flush=True)


def run_script(main: Callable[[], int | None], name: str) -> None:
    """Run a training script's ``main()`` and exit with its status (see the module docstring)."""
    signal.signal(signal.SIGTERM, _raise_terminated)
    errors = _user_errors()
    try:
        status = main()
    except TrainingStopped as stop:
        _say(str(stop))
        status = stop.exit_code
    except KeyboardInterrupt as err:  # before the first step, or while saving the final model
        _say("stopped before the run finished; nothing new was saved (resume with --resume latest)")
        status = 128 + (signal.SIGTERM if isinstance(err, Terminated) else signal.SIGINT)
    except Exception as err:
        if not isinstance(err, errors):
            raise
        _say(f"{name}: error: {err}")
        status = EXIT_USAGE
    finally:
        close_process_group()
    sys.exit(status or 0)


def cycle(loader) -> Iterator:
    """Endless batches (a GAN counts steps, not epochs)."""
    while True:
        yield from loader


def start_accelerator(output_dir: str | os.PathLike, report_to: str, project: str, seed: int | None):
    """The run's Accelerator (trackers from ``report_to``, logging, per-process seeds), then the
    output folder. Call after every start-up check passed: nothing is created before."""
    from accelerate import Accelerator
    from accelerate.logging import get_logger
    from accelerate.utils import ProjectConfiguration, set_seed

    from scenimefy.training.tracking import make_trackers

    output_dir = Path(output_dir)
    accelerator = Accelerator(
        log_with=make_trackers(report_to, output_dir / "logs", project) or None,
        project_config=ProjectConfiguration(project_dir=str(output_dir), logging_dir=str(output_dir / "logs")),
    )
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.INFO)
    logging.getLogger("accelerate.checkpointing").setLevel(logging.WARNING)  # one line per file saved
    get_logger(__name__).info(accelerator.state, main_process_only=False)
    if seed is not None:
        set_seed(seed, device_specific=True)  # different crops, latents and patches on each process
    if accelerator.is_main_process:
        output_dir.mkdir(parents=True, exist_ok=True)
    return accelerator


def resume(accelerator, output_dir: str | os.PathLike, resume_from: str | None) -> dict[str, Any]:
    """Restore ``resume_from`` ("latest" or a checkpoint folder; see ``checkpoints.resume_state``)
    and drop the metrics rows past the restored step. Call after ``init_trackers``."""
    from scenimefy.training.tracking import JSONLTracker

    state = resume_state(accelerator, output_dir, resume_from)
    if accelerator.is_main_process:
        for tracker in accelerator.trackers:
            if isinstance(tracker, JSONLTracker):
                tracker.truncate_after(int(state["step"]))
    return state
