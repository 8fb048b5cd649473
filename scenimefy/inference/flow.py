"""Optical flow between video frames and how far to trust it (OpenCV DIS, no learned weights).

* :class:`FlowEstimator`: dense flow with ``cv2.DISOpticalFlow`` on grey frames scaled down so
  the longer side is at most ``max_side`` (the flow is smooth; the scale-up is bilinear). A flow
  ``F`` from frame a to frame b means a(x) ~ b(x + F(x)).
* :func:`warp`: backward warping, ``warp(img, F)(x) = img(x + F(x))`` (bicubic, replicate border).
* :func:`confidence`: per pixel in [0, 1], how far a warp of frame a onto frame b can be trusted:
  0 where the forward-backward check fails (|F_ba + F_ab(x + F_ba)|^2 > 0.01 (|F_ba|^2 +
  |F_ab(x + F_ba)|^2) + 0.5, Rerender-A-Video's alpha and beta), where the match leaves the frame,
  and the photometric weight exp(-|I_b - warp(I_a)|^2 / (2 * 0.05^2)) of Bonneel et al. 2015
  (RGB in [0, 1], 3x3-averaged against sensor noise) elsewhere. The unreliable region is
  dilated (9x9, Rerender's) and the mask blurred, so its borders never cut through an object.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

PRESETS = {
    "ultrafast": cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST,
    "fast": cv2.DISOPTICAL_FLOW_PRESET_FAST,
    "medium": cv2.DISOPTICAL_FLOW_PRESET_MEDIUM,
}
FB_ALPHA, FB_BETA = 0.01, 0.5  # forward-backward check (Rerender-A-Video, Sundaram et al.)
PHOTO_SIGMA = 0.05  # Bonneel et al. 2015's photometric tolerance (RGB in [0, 1])
DILATE = 9  # unreliable pixels grow by this window (Rerender-A-Video)


def grey(frame: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(np.ascontiguousarray(frame), cv2.COLOR_RGB2GRAY)


class FlowEstimator:
    """Dense DIS flow between (H, W) uint8 grey frames, at full-frame coordinates (H, W, 2) float32.

    The frames are scaled (area) so the longer side is at most ``max_side`` before DIS runs, and
    the flow scaled back: at 540x960 half size costs a quarter and loses little, since what is
    blended is smoothed anyway.
    """

    def __init__(self, preset: str = "fast", max_side: int | None = 480) -> None:
        if preset not in PRESETS:
            raise ValueError(f"preset must be one of {', '.join(PRESETS)}, got {preset!r}")
        self.preset, self.max_side = preset, max_side
        self._dis = cv2.DISOpticalFlow_create(PRESETS[preset])

    def _scaled(self, image: np.ndarray) -> tuple[np.ndarray, float]:
        h, w = image.shape[:2]
        if self.max_side is None or max(h, w) <= self.max_side:
            return image, 1.0
        s = self.max_side / max(h, w)
        size = (max(8, round(w * s)), max(8, round(h * s)))
        return cv2.resize(image, size, interpolation=cv2.INTER_AREA), s

    def __call__(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        h, w = a.shape[:2]
        (sa, s), (sb, _) = self._scaled(a), self._scaled(b)
        flow = self._dis.calc(sa, sb, None)
        if s == 1.0:
            return flow
        flow = cv2.resize(flow, (w, h), interpolation=cv2.INTER_LINEAR)
        flow[..., 0] *= w / sa.shape[1]
        flow[..., 1] *= h / sa.shape[0]
        return flow


def _maps(flow: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    h, w = flow.shape[:2]
    xs = np.arange(w, dtype=np.float32)[None, :] + flow[..., 0]
    ys = np.arange(h, dtype=np.float32)[:, None] + flow[..., 1]
    return xs, ys


def warp(image: np.ndarray, flow: np.ndarray, interpolation: int = cv2.INTER_CUBIC) -> np.ndarray:
    """``image`` (H, W[, C]) sampled at x + flow(x); float32 in, float32 out (the border replicated)."""
    xs, ys = _maps(flow)
    return cv2.remap(image, xs, ys, interpolation, borderMode=cv2.BORDER_REPLICATE)


@dataclass
class PairFlow:
    """The flows between an earlier frame a and a later frame b, and how far b can trust a's warp."""

    to_a: np.ndarray  # F_ba: b -> a (warp(a_image, to_a) is a seen from b)
    to_b: np.ndarray  # F_ab: a -> b
    confidence: np.ndarray  # (H, W, 1) float32 in [0, 1], at b's pixels
    reliable: float  # fraction of b's pixels with confidence > 0.5


def _norm2(v: np.ndarray) -> np.ndarray:
    """|v|^2 of (H, W, 2) vectors (numpy's last-axis reductions are slow for 2 channels)."""
    return v[..., 0] * v[..., 0] + v[..., 1] * v[..., 1]


def confidence(
    a: np.ndarray, b: np.ndarray, to_a: np.ndarray, to_b: np.ndarray, *, blur: float = 2.0, max_side: int = 480
) -> np.ndarray:
    """How far frame b can trust ``warp(anything_at_a, to_a)``: (H, W, 1) float32 in [0, 1].

    a, b: (H, W, 3) uint8 RGB input frames; to_a = F_ba, to_b = F_ab. Checked on every k-th
    pixel (k so the longer side is at most ``max_side``; the flow is that coarse anyway) and scaled
    back up bilinearly; ``blur`` and the dilation are in full-size pixels.
    """
    h, w = to_a.shape[:2]
    k = max(1, -(-max(h, w) // max_side))
    if k > 1:
        to_a, to_b = to_a[::k, ::k] / k, to_b[::k, ::k] / k
        size = (to_a.shape[1], to_a.shape[0])
        a = cv2.resize(a, size, interpolation=cv2.INTER_AREA)
        b = cv2.resize(b, size, interpolation=cv2.INTER_AREA)
    sh, sw = to_a.shape[:2]
    xs, ys = _maps(to_a)
    back = cv2.remap(to_b, xs, ys, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)  # F_ab(x + F_ba)
    fb = _norm2(to_a + back)
    # the check in full-size pixels: |.|^2 scale by k^2, beta does not
    ok = fb * k * k <= FB_ALPHA * k * k * (_norm2(to_a) + _norm2(back)) + FB_BETA
    ok &= (xs >= 0) & (xs <= sw - 1) & (ys >= 0) & (ys <= sh - 1)
    grow = max(1, round(DILATE / k)) | 1
    if grow > 1:  # grow the unreliable region
        ok = cv2.erode(ok.astype(np.uint8), np.ones((grow, grow), np.uint8), borderType=cv2.BORDER_REPLICATE)
    seen = cv2.remap(a, xs, ys, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE).astype(np.float32)
    diff = ((seen - b.astype(np.float32)) * (1 / 255.0)) ** 2
    if k == 1:  # against sensor noise (the area scale-down averaged it already)
        diff = cv2.blur(diff, (3, 3))
    weight = np.exp((diff[..., 0] + diff[..., 1] + diff[..., 2]) * (-1 / (3 * 2 * PHOTO_SIGMA**2))) * ok
    if blur > 0:
        weight = cv2.GaussianBlur(weight.astype(np.float32), (0, 0), max(0.5, blur / k))
    if k > 1:
        weight = cv2.resize(weight, (w, h), interpolation=cv2.INTER_LINEAR)
    return np.clip(weight, 0, 1).astype(np.float32)[..., None]


def pair_flow(estimator: FlowEstimator, a: np.ndarray, b: np.ndarray, ga=None, gb=None) -> PairFlow:
    """Both flows between RGB frames a (earlier) and b, and b's confidence in a's warp."""
    ga = grey(a) if ga is None else ga
    gb = grey(b) if gb is None else gb
    to_a, to_b = estimator(gb, ga), estimator(ga, gb)
    conf = confidence(a, b, to_a, to_b)
    return PairFlow(to_a=to_a, to_b=to_b, confidence=conf, reliable=float((conf > 0.5).mean()))
