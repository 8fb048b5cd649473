"""Temporal stabilisation of stylized video and its measurement (docs/video.md).

* statistics (:class:`NormStatsSmoother`): InstanceNorm normalises every frame by its own
  per-channel statistics, so a moving object or a small exposure change shifts every colour
  of the frame and the output "pulses". The layers normalise instead with an exponential
  moving average of the statistics across frames, reset at scene cuts;
* output (:class:`TemporalFilter`): the network also amplifies the small frame-to-frame noise
  of a compressed video into visible shimmer. Where the input did not change, the output
  leans on the previous output (a motion-gated moving average); where it moved, it does not.
* Flicker index (:class:`FlickerMeter`): the mean absolute change between consecutive output
  frames divided by the same for the input frames. 1.0 = the output changes exactly as much as
  the video itself does; the excess is flicker the stylization adds. Lower is steadier.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from scenimefy.data.flicker import FlickerMeter, FlickerStats  # noqa: F401  (stabilisation's measure)

DEFAULT_MOMENTUM = 0.9  # EMA weight of the past: ~10 frames (1/3 s at 30 fps) of memory


class NormStatsSmoother:
    """Temporal smoothing of InstanceNorm statistics, the ``norm_stats`` hook of ``translate``.

    ``smoother(layer, mean, var)`` receives one norm layer's per-sample statistics (B, C), the
    samples being consecutive frames, and returns the statistics to normalise with:
    ``s_t = momentum * s_{t-1} + (1 - momentum) * raw_t`` per layer and channel, for mean and
    variance alike. Layers may be called in any interleaving (layer by layer for a batch, or
    frame by frame) as long as each layer sees the frames in order; state carries across calls.

    A scene cut (layer 0's mean moves by more than ``cut_threshold`` standard deviations,
    averaged over channels) restarts the average so the new shot is not tinted by the old one.
    """

    def __init__(self, momentum: float = DEFAULT_MOMENTUM, cut_threshold: float = 1.5) -> None:
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f"momentum must be in [0, 1), got {momentum}")
        self.momentum = momentum
        self.cut_threshold = cut_threshold
        self.reset()

    def reset(self) -> None:
        self._state: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
        self._seen: dict[int, int] = {}  # frames each layer has processed
        self._cuts: list[bool] = []  # per frame: does a new shot start here (decided at layer 0)

    @property
    def cuts(self) -> int:
        """Scene cuts detected so far (the first frame excluded)."""
        return sum(self._cuts[1:])

    def __call__(self, layer: int, mean: torch.Tensor, var: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out_mean, out_var = torch.empty_like(mean), torch.empty_like(var)
        for b in range(mean.shape[0]):
            frame = self._seen.get(layer, 0)
            self._seen[layer] = frame + 1
            m, v = mean[b].float(), var[b].float()
            state = self._state.get(layer)
            if layer == 0 and frame == len(self._cuts):
                self._cuts.append(state is None or self._is_cut(m, state))
            cut = self._cuts[frame] if frame < len(self._cuts) else state is None
            if state is None or cut:
                state = (m, v)
            else:
                a = self.momentum
                state = (a * state[0] + (1 - a) * m, a * state[1] + (1 - a) * v)
            self._state[layer] = state
            out_mean[b], out_var[b] = state[0].to(mean.dtype), state[1].to(var.dtype)
        return out_mean, out_var

    def _is_cut(self, mean: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor]) -> bool:
        shift = (mean - state[0]).abs() / (state[1] + 1e-5).sqrt()
        return bool(shift.mean() > self.cut_threshold)


class TemporalFilter:
    """Motion-gated temporal smoothing of stylized frames (streaming, one state per clip).

    For consecutive frames, with x the network's input and y its output (uint8 RGB):
    ``y'_t = w * y'_{t-1} + (1 - w) * y_t`` per pixel, ``w = strength * exp(-(d / tolerance)^2)``,
    d the largest channel change of the 3x3 box-blurred input between t-1 and t, in 8-bit levels.
    Static pixels (d ~ 0) average over about 1 / (1 - strength) frames; pixels that moved by
    more than ~2 x ``tolerance`` levels take the new output as is, so motion does not smear, and a
    scene cut resets the whole frame. The blur keeps codec noise from reading as motion.
    """

    def __init__(self, strength: float = 0.8, tolerance: float = 8.0) -> None:
        if not 0.0 <= strength < 1.0:
            raise ValueError(f"strength must be in [0, 1), got {strength}")
        self.strength, self.tolerance = strength, tolerance
        self._prev: tuple[torch.Tensor, torch.Tensor] | None = None  # blurred input, filtered output

    def __call__(self, inputs: np.ndarray, outputs: np.ndarray) -> np.ndarray:
        """(B, H, W, 3) uint8 inputs and outputs of consecutive frames -> filtered outputs."""
        x = torch.from_numpy(np.ascontiguousarray(inputs)).permute(0, 3, 1, 2).float()
        x = F.avg_pool2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), 3, stride=1)
        y = torch.from_numpy(np.ascontiguousarray(outputs)).permute(0, 3, 1, 2).float()
        result = torch.empty_like(y)
        for b in range(x.shape[0]):
            xb, yb = x[b], y[b]
            if self._prev is not None and self._prev[0].shape == xb.shape:
                change = (xb - self._prev[0]).abs().amax(dim=0, keepdim=True)
                w = self.strength * torch.exp(-((change / self.tolerance) ** 2))
                yb = w * self._prev[1] + (1 - w) * yb
            self._prev = (xb, yb)
            result[b] = yb
        return result.round_().clamp_(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()
