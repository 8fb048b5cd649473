"""The Live tab's working size: the largest at which the model alone keeps up with a webcam on
this server (``LIVE_FPS`` frames a second), measured per fast model on its first live frame,
with all of PyTorch's threads and with one, whichever reaches the larger size.

Why one thread can win: a live stream shares the CPU with the browser's frames arriving, their
decoding and the results' encoding (and on a shared server with other work). A multi-threaded op
waits for its slowest thread, so every thread preempted by that other work stalls the op: on 2
busy cores the lite model ran 4-10x slower on 2 threads than on 1 (see docs/app.md).
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time

import numpy as np
import torch

from scenimefy.inference.runtime import single_threaded_ops

log = logging.getLogger("scenimefy.app")

LIVE_FPS = 12.0  # the working size is the largest at which the model alone reaches this rate
LIVE_SIDES = (128, 160, 192, 224, 256, 288, 320, 384, 448, 512, 576, 640)  # tried, longer side (px)
REMEASURE_S = 600.0  # measured again after this long (a CPU busy then may be free now, or the reverse)


def working_size(height: int, width: int, side: int) -> tuple[int, int]:
    """(H, W) at most ``side`` on the longer side, multiples of 8 (any lite depth up to 3 levels)."""
    scale = min(1.0, side / max(height, width))
    return max(16, round(height * scale / 8) * 8), max(16, round(width * scale / 8) * 8)


def threads(single: bool):
    """The threading a live frame runs with: PyTorch's own, or one thread (``single``)."""
    return single_threaded_ops() if single else contextlib.nullcontext()


def seconds_per_frame(pipe, height: int, width: int, runs: int = 3, *, single: bool = False) -> float:
    """The model alone (``stylize_frames``, what a live frame runs) on one (H, W) frame: the best of
    ``runs`` after a first run that pays for this size's one-off work (kernel choice, buffers). The
    best, not the median: on a CPU shared with other work it is the model's own speed."""
    frame = np.random.default_rng(0).integers(0, 256, (1, height, width, 3), dtype=np.uint8)
    with threads(single):
        pipe.stylize_frames(frame)
        times = []
        for _ in range(runs):
            began = time.perf_counter()
            pipe.stylize_frames(frame)
            times.append(time.perf_counter() - began)
    return min(times)


def measure_live_side(
    pipe, cap: int, fps: float = LIVE_FPS, *, single: bool = False
) -> tuple[int, list[tuple[int, int, float]]]:
    """The longest side (of a 4:3 camera frame, at most ``cap``) at which ``pipe`` alone runs at
    ``fps`` frames a second or more here, and the ``(W, H, seconds per frame)`` measured. Sizes
    are tried from small to large and the trial stops at the first one too slow (a few hundred ms
    in all); when even the smallest is too slow, it is the one used."""
    sides = [s for s in LIVE_SIDES if s < cap] + [cap]
    chosen, measured = sides[0], []
    for side in sides:
        h, w = working_size(side * 3 // 4, side, side)
        seconds = seconds_per_frame(pipe, h, w, single=single)
        measured.append((w, h, seconds))
        if seconds * fps > 1:
            break
        chosen = side
    return chosen, measured


def choose_live_size(pipe, cap: int, fps: float = LIVE_FPS) -> tuple[int, bool, str]:
    """(side, single thread?, what was measured in words): :func:`measure_live_side` with
    PyTorch's threads and, when it has more than one, with one; the larger side wins, and on a tie
    the faster at that side."""
    options = [False] + ([True] if torch.get_num_threads() > 1 else [])
    results = []
    for single in options:
        side, measured = measure_live_side(pipe, cap, fps, single=single)
        at_side = next((s for w, h, s in measured if max(w, h) == side), measured[0][2])
        results.append((side, -at_side, single, measured))
    side, _, single, _ = max(results)
    words = "; ".join(
        f"{'1 thread' if one else f'{torch.get_num_threads()} threads'}: "
        + ", ".join(f"{w} x {h}: {1 / s:.1f}" for w, h, s in measured)
        for _, _, one, measured in results
    )
    return side, single, words


class LiveSides:
    """The working side (and threading) of each fast model on this server, measured on its first
    live frame and again when that measurement is ``REMEASURE_S`` old."""

    def __init__(self) -> None:
        self._sides: dict[str, tuple[int, bool, float]] = {}
        self._lock = threading.Lock()

    def get(self, model: str, pipe, cap: int, fps: float = LIVE_FPS) -> tuple[int, bool]:
        """``model``'s (side, single thread?) at ``fps``, side at most ``cap``; ``fps`` 0: (``cap``,
        False), nothing measured."""
        if fps <= 0:
            return cap, False
        with self._lock:  # one measurement per model, even when two streams start together
            known = self._sides.get(model)
            if known is None or time.monotonic() - known[2] > REMEASURE_S:
                side, single, words = choose_live_size(pipe, cap, fps)
                log.info(
                    "live: %s works at up to %d px on %s, the largest size with %g+ frames/s model-only here "
                    "(frames/s, %s; cap %d px)",
                    model,
                    side,
                    "1 thread" if single else f"{torch.get_num_threads()} threads",
                    fps,
                    words,
                    cap,
                )
                self._sides[model] = side, single, time.monotonic()
            return self._sides[model][:2]
