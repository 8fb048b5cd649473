"""Accelerate checkpoints of every training stage: ``<output_dir>/checkpoint-<step>``.

At most ``total_limit`` are kept; a ``complete.json`` mark written last makes a run killed
mid-save never resume from a torn checkpoint; ``--resume latest`` picks the newest complete one.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path
from typing import Any

from scenimefy.training.config import ConfigError

_CHECKPOINT = re.compile(r"checkpoint-(\d+)$")
_DONE_MARK = "complete.json"


def checkpoint_dirs(output_dir: str | os.PathLike) -> list[Path]:
    """Complete checkpoints under ``output_dir``, oldest first."""
    root = Path(output_dir)
    if not root.is_dir():
        return []
    found = [p for p in root.iterdir() if _CHECKPOINT.search(p.name) and (p / _DONE_MARK).is_file()]
    return sorted(found, key=lambda p: int(_CHECKPOINT.search(p.name).group(1)))


def resolve_resume(output_dir: str | os.PathLike, resume: str | None) -> Path | None:
    """``None``/``""`` -> no resume; ``"latest"`` -> newest complete checkpoint (or None); else a path."""
    if not resume:
        return None
    if resume == "latest":
        found = checkpoint_dirs(output_dir)
        return found[-1] if found else None
    path = Path(resume)
    if not (path / _DONE_MARK).is_file():
        raise ConfigError(f"--resume {path}: not a complete checkpoint folder (checkpoint-<step>); use --resume latest")
    return path


def save_checkpoint(
    accelerator, output_dir: str | os.PathLike, step: int, total_limit: int | None = 3, **extra: Any
) -> Path:
    """``accelerator.save_state`` into ``checkpoint-<step>`` and mark it complete last.

    The mark is written after every file, so a run killed mid-save never resumes from a torn
    checkpoint; older checkpoints beyond ``total_limit`` are removed afterwards.
    """
    path = Path(output_dir) / f"checkpoint-{step}"
    accelerator.save_state(str(path))
    if accelerator.is_main_process:
        (path / _DONE_MARK).write_text(json.dumps({"step": step, **extra}))
        if total_limit:
            for old in checkpoint_dirs(output_dir)[:-total_limit]:
                shutil.rmtree(old, ignore_errors=True)
    accelerator.wait_for_everyone()
    return path


def load_checkpoint(accelerator, path: str | os.PathLike) -> dict[str, Any]:
    """Restore an accelerate state; returns what ``save_checkpoint`` stored beside it (step, ...)."""
    path = Path(path)
    accelerator.load_state(str(path))
    return json.loads((path / _DONE_MARK).read_text())


def resume_state(accelerator, output_dir: str | os.PathLike, resume: str | None) -> dict[str, Any]:
    """Restore the checkpoint ``resume`` names (``"latest"`` or a path) into ``accelerator``.

    Returns what ``save_checkpoint`` stored beside it (``step`` and any extras), or ``{"step": 0}``
    when there is nothing to resume from.
    """
    from accelerate.logging import get_logger

    logger = get_logger(__name__)
    path = resolve_resume(output_dir, resume)
    if path is None:
        if resume:
            logger.info(f"no complete checkpoint in {output_dir}: starting from scratch")
        return {"step": 0}
    state = load_checkpoint(accelerator, path)
    logger.info(f"resumed from {path} at step {state['step']}")
    return state
