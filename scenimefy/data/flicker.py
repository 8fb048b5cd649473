"""The flicker index of a stylized frame sequence: how much the output changes from frame to frame
against how much its input does. Shared by video stylization (``scenimefy video --flicker``) and the
temporal metrics (``scenimefy.evaluation.temporal``)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class FlickerStats:
    """See :class:`FlickerMeter`."""

    index: float  # output change / input change, over all pixels
    static: float  # mean output change (8-bit levels) where the input did not change
    pairs: int  # consecutive frame pairs measured


class FlickerMeter:
    """Streaming flicker measurement on (B, H, W, 3) uint8 input / output frame batches.

    ``index`` = sum_t mean|y_t - y_{t-1}| / sum_t mean|x_t - x_{t-1}| over consecutive frames
    (x: the frames the network saw, y: its outputs, same size). ``static`` = mean |y_t - y_{t-1}|
    in 8-bit levels over pixels whose input changed by at most ``static_level`` levels in every
    channel: pure flicker, since nothing moved there.
    """

    def __init__(self, static_level: int = 3) -> None:
        self.static_level = static_level
        self._prev: tuple[np.ndarray, np.ndarray] | None = None
        self._out_change = self._in_change = self._static_sum = 0.0
        self._static_count = 0
        self.pairs = 0

    def update(self, inputs: np.ndarray, outputs: np.ndarray) -> None:
        for x, y in zip(inputs, outputs):
            x16, y16 = x.astype(np.int16), y.astype(np.int16)
            if self._prev is not None:
                dx, dy = np.abs(x16 - self._prev[0]), np.abs(y16 - self._prev[1])
                self._in_change += float(dx.mean())
                self._out_change += float(dy.mean())
                still = dx.max(axis=2) <= self.static_level
                self._static_sum += float(dy[still].sum()) / 3
                self._static_count += int(still.sum())
                self.pairs += 1
            self._prev = (x16, y16)

    def result(self) -> FlickerStats:
        index = self._out_change / self._in_change if self._in_change > 0 else float("nan")
        static = self._static_sum / self._static_count if self._static_count else float("nan")
        return FlickerStats(index=index, static=static, pairs=self.pairs)
