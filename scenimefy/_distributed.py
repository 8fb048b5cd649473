"""The end of a multi-process run (``accelerate launch``), shared by stylize and the training scripts."""

from __future__ import annotations

import sys


def close_process_group() -> None:
    """Destroy the process group, if one was started, before the process exits.

    A process that exits with its gloo process group alive can abort ("terminate called without
    an active exception", SIGABRT) after its work is done, and fail the whole ``accelerate launch``.
    Local to this process: safe when the other processes are already gone.
    """
    dist = sys.modules.get("torch.distributed")  # never imported: no group, and no torch import on exit
    if dist is not None and dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
