"""One switch for TF32 on CUDA, shared by inference (exact mode, its eager fallback), FID and the
benchmarks: a private top-level module, since ``evaluation`` may not import ``inference``."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

import torch

# On Ampere and newer GPUs cuDNN runs fp32 convs (and cuBLAS may run fp32 matmuls) in TF32, with a
# 10-bit mantissa: ~1e-3 relative error, not fp32. Whatever must be fp32 -- exact mode, its eager
# fallback, the FID Inception, a benchmark's fp32 baseline -- runs inside ``no_tf32``. The flags
# are process-wide, so the scope is reference-counted (like runtime.single_threaded_ops): they are saved
# when the first user enters and restored when the last one leaves, whatever order concurrent
# calls finish in (a plain save/restore per call would switch TF32 back on under another call).
_tf32_lock = threading.Lock()
_tf32_users = 0
_tf32_before: tuple = ()


def _tf32_flags() -> tuple:
    """The TF32 switches as set, read through the API that set them (torch >= 2.9 refuses to read
    the legacy booleans once its per-op precision strings were set, and the other way round)."""
    b = torch.backends
    try:
        return ("legacy", b.cudnn.allow_tf32, b.cuda.matmul.allow_tf32)
    except RuntimeError:
        return ("precision", b.cudnn.conv.fp32_precision, b.cudnn.rnn.fp32_precision, b.cuda.matmul.fp32_precision)


def _set_tf32_flags(flags: tuple) -> None:
    b = torch.backends
    if flags[0] == "legacy":
        b.cudnn.allow_tf32, b.cuda.matmul.allow_tf32 = flags[1:]
    else:
        b.cudnn.conv.fp32_precision, b.cudnn.rnn.fp32_precision, b.cuda.matmul.fp32_precision = flags[1:]


def _tf32_off(flags: tuple) -> tuple:
    return (flags[0], False, False) if flags[0] == "legacy" else (flags[0], "ieee", "ieee", "ieee")


@contextmanager
def no_tf32(device: torch.device | str, enabled: bool = True) -> Iterator[None]:
    """Full fp32 convs and matmuls on CUDA while inside (reference-counted across threads).

    A no-op on other devices and when ``enabled`` is False.
    """
    global _tf32_users, _tf32_before
    if not (enabled and torch.device(device).type == "cuda"):
        yield
        return
    with _tf32_lock:
        if _tf32_users == 0:
            _tf32_before = _tf32_flags()
            _set_tf32_flags(_tf32_off(_tf32_before))
        _tf32_users += 1
    try:
        yield
    finally:
        with _tf32_lock:
            _tf32_users -= 1
            if _tf32_users == 0:
                _set_tf32_flags(_tf32_before)
