"""Temporal consistency of a stylized video: the warping error E_warp (Lai et al., ECCV 2018).

For consecutive INPUT frames x_t, x_{t+1} and the stylized frames y_t, y_{t+1}:

    F_f = flow(x_t -> x_{t+1}),  F_b = flow(x_{t+1} -> x_t)       (Farneback, never the method's DIS)
    occluded(x) = |F_f + F_b(x + F_f)|^2 > 0.01 (|F_f|^2 + |F_b(x + F_f)|^2) + 0.5   (forward-backward)
               or |grad F_f|^2 > 0.01 |F_f|^2 + 0.002                                (motion boundary)
               or x + F_f(x) outside the frame
    E_warp(t) = mean over non-occluded pixels and the 3 channels of (y_{t+1}(x + F_f(x)) - y_t(x))^2

RGB in [0, 1]; y_{t+1} is sampled bilinearly (backward warping); E_warp is the mean over the
frame pairs. The same flow and mask applied to the input itself give the input's own E_warp: the
floor that flow errors, noise and lighting changes leave (Lai et al.'s released numbers differ
from their paper's ~10x with the flow estimator, so compare methods graded by one script).

Grading uses a flow the stylization methods do not use (Farneback, the parameters of TecoGAN's
tOF: 0.5, 3, 15, 3, 5, 1.2 on grey frames), so a method cannot hide its own flow errors. Everything
after the flow is float64 numpy.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

from scenimefy.data.flicker import FlickerMeter

#: Farneback parameters of the grader (pyr_scale, levels, winsize, iterations, poly_n, poly_sigma, flags).
FARNEBACK = (0.5, 3, 15, 3, 5, 1.2, 0)


def farneback_flow(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Dense flow a -> b (a(x) ~ b(x + F(x))) of two (H, W, 3) uint8 RGB frames: (H, W, 2) float32 (dx, dy)."""
    import cv2

    grey = [cv2.cvtColor(np.ascontiguousarray(f), cv2.COLOR_RGB2GRAY) for f in (a, b)]
    return cv2.calcOpticalFlowFarneback(grey[0], grey[1], None, *FARNEBACK)


def backward_warp(image: np.ndarray, flow: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``image`` sampled at x + flow(x), bilinear, float64; and where that point lies inside the frame.

    image: (H, W, C) or (H, W); flow: (H, W, 2) as (dx, dy). Points outside are clamped to the
    border (their mask entry is False).
    """
    h, w = flow.shape[:2]
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    sx, sy = xx + flow[..., 0], yy + flow[..., 1]
    inside = (sx >= 0) & (sx <= w - 1) & (sy >= 0) & (sy <= h - 1)
    sx, sy = np.clip(sx, 0, w - 1), np.clip(sy, 0, h - 1)
    x0 = np.clip(np.floor(sx).astype(np.int64), 0, max(w - 2, 0))  # the left / top neighbour
    y0 = np.clip(np.floor(sy).astype(np.int64), 0, max(h - 2, 0))
    x1, y1 = np.minimum(x0 + 1, w - 1), np.minimum(y0 + 1, h - 1)
    fx, fy = sx - x0, sy - y0
    img = image.astype(np.float64)
    if img.ndim == 3:
        fx, fy = fx[..., None], fy[..., None]
    top = img[y0, x0] * (1 - fx) + img[y0, x1] * fx
    bottom = img[y1, x0] * (1 - fx) + img[y1, x1] * fx
    return top * (1 - fy) + bottom * fy, inside


def occlusion_mask(forward: np.ndarray, backward: np.ndarray) -> np.ndarray:
    """(H, W) bool, True where frame t's pixel is occluded in t+1 or unreliable (Lai et al.'s rule).

    forward = F_f (t -> t+1), backward = F_b (t+1 -> t), both (H, W, 2).
    """
    f = forward.astype(np.float64)
    b_at, inside = backward_warp(backward, f)  # F_b(x + F_f(x))
    fb = ((f + b_at) ** 2).sum(-1)
    mags = (f**2).sum(-1) + (b_at**2).sum(-1)
    inconsistent = fb > 0.01 * mags + 0.5
    grads = 0.0
    for c in range(2):
        dy, dx = np.gradient(f[..., c])
        grads = grads + dx**2 + dy**2
    boundary = grads > 0.01 * (f**2).sum(-1) + 0.002
    return inconsistent | boundary | ~inside


def pair_warp_error(y_t: np.ndarray, y_next: np.ndarray, forward: np.ndarray, occluded: np.ndarray) -> float:
    """E_warp of one pair: (H, W, 3) uint8 frames t and t+1, F_f, the occlusion mask."""
    warped, _ = backward_warp(y_next.astype(np.float64) / 255.0, forward)
    valid = ~occluded
    if not valid.any():
        return float("nan")
    diff = warped[valid] - y_t[valid].astype(np.float64) / 255.0
    return float((diff**2).mean())


@dataclass
class WarpReport:
    """E_warp of a stylized clip, its input's own E_warp and the flicker index."""

    output: float  # E_warp of the stylized frames (mean over pairs)
    input: float  # the input's own E_warp, same flows and masks: the floor
    pairs: int
    flicker: float  # FlickerMeter's index (output change / input change)
    flicker_static: float  # output change in levels where the input did not change
    masked: float  # mean fraction of pixels masked as occluded / unreliable
    per_pair: list[float] = field(default_factory=list)

    @property
    def ratio(self) -> float:
        """Output E_warp / input E_warp (1.0: as steady as the video itself)."""
        return self.output / self.input if self.input > 0 else float("inf")


def warp_error(
    inputs: Sequence[np.ndarray],
    outputs: Sequence[np.ndarray],
    flows: Iterable[tuple[np.ndarray, np.ndarray]] | None = None,
) -> WarpReport:
    """E_warp of ``outputs`` given the ``inputs`` they were made from (lists of (H, W, 3) uint8).

    ``flows`` gives (F_f, F_b) per consecutive pair (e.g. the true motion of a synthetic clip);
    by default they are Farneback's on the inputs.
    """
    if len(inputs) != len(outputs) or len(inputs) < 2:
        raise ValueError(f"need >= 2 input and output frames of equal count, got {len(inputs)} and {len(outputs)}")
    return pairs_warp_error(zip(inputs, outputs), flows)


def pairs_warp_error(frames: Iterable[tuple[np.ndarray, np.ndarray]], flows=None) -> WarpReport:
    """:func:`warp_error` of (input, output) frame pairs streamed in order (e.g. decoded from files)."""
    flow_iter = iter(flows) if flows is not None else None
    meter = FlickerMeter()
    errs, floor, masked = [], [], []
    prev = None
    for x, y in frames:
        if prev is not None and x.shape != prev[0].shape:
            raise ValueError(f"frame sizes differ: {prev[0].shape} then {x.shape}")
        if y.shape != x.shape:
            raise ValueError(f"input and output frames differ in size: {x.shape} vs {y.shape}")
        meter.update(x[None], y[None])
        if prev is not None:
            if flow_iter is not None:
                forward, backward = next(flow_iter)
            else:
                forward, backward = farneback_flow(prev[0], x), farneback_flow(x, prev[0])
            occ = occlusion_mask(forward, backward)
            errs.append(pair_warp_error(prev[1], y, forward, occ))
            floor.append(pair_warp_error(prev[0], x, forward, occ))
            masked.append(float(occ.mean()))
        prev = (x, y)
    flick = meter.result()
    return WarpReport(
        output=float(np.nanmean(errs)),
        input=float(np.nanmean(floor)),
        pairs=len(errs),
        flicker=flick.index,
        flicker_static=flick.static,
        masked=float(np.mean(masked)),
        per_pair=errs,
    )
