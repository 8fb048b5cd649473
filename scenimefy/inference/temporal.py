"""Flow-guided temporal consistency and keyframe reuse for stylized video (docs/video.md).

:class:`TemporalProcessor` sits between the decoder and the encoder: it takes upright RGB input
frames in order, runs the network (``stylize``) on the frames that need it and returns
(input, output) pairs in order, possibly later than they came in (keyframes look ahead).

* ``"flow"``: each output is the current stylized frame S_t pulled toward the previous output
  warped onto it, W_t = warp(O_{t-1}, F_{t->t-1}) (DIS flow on the INPUT frames), per pixel by the
  flow's confidence c (``flow.confidence``: forward-backward + photometric check, dilated, blurred):

      O_t = S_t + c * (a_hi * D + (a_lo - a_hi) * G_sigma(D)),   D = W_t - S_t

  i.e. the low-frequency band (Gaussian, sigma ~ 1% of the frame) moves a_lo of the way to the
  warped past and the detail band only a_hi: line art and texture stay the current frame's.
  Occluded or unreliable pixels (c = 0) take S_t as it is: no ghosts. Every output is anchored on
  its own S_t (weights < 1), so over a static stretch nothing accumulates: the output's low band
  is an average of recent stylized frames, never a recursion that can wander off (the
  darkening of artistic-videos #59). A scene cut (under ``cut_reliable`` of the frame reliable)
  restarts from S_t and resets the network's statistics smoothing, so no shot bleeds into the next.
* ``"stats"``: the network's statistics smoothing and the motion-gated output filter
  (``stabilize``); ``"off"``: frames independent.
* ``keyframes=N`` (N > 1): the network runs on every N-th frame, on the first frame of a shot and
  on any frame that neither neighbouring keyframe covers reliably (``promote_reliable``); each
  frame between keyframes K0 < t < K1 is made from both, warped onto t with the flow:
  C_t = (w0 warp(O_K0) + w1 warp(S_K1)) / (w0 + w1), w0 = c0 (K1 - t), w1 = c1 (t - K0) (the
  nearer and more trusted keyframe weighs more; where both are occluded, by distance alone).
  The flow blend above then runs over the whole sequence. The keyframes of ``batch`` segments go
  through the network in one call (as consecutive frames do without keyframes: one frame at a
  time costs ~7% more per frame), so it looks ahead at most N x ``batch`` frames.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np

from scenimefy.inference.flow import FlowEstimator, confidence, grey, warp
from scenimefy.inference.stabilize import TemporalFilter

METHODS = ("flow", "stats", "off")


@dataclass(frozen=True)
class FlowBlend:
    """The blend's weights (see the module doc)."""

    low: float = 0.9  # a_lo: how far the low band follows the warped past
    high: float = 0.7  # a_hi: how far the detail band does
    band: float = 0.01  # sigma of the low band, as a fraction of the longer side
    cut_reliable: float = 0.3  # under this reliable fraction between consecutive frames: a scene cut
    promote_reliable: float = 0.75  # keyframes: under this reliable fraction, run the network on the frame


def low_pass(image: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian blur of a float32 (H, W, C) image; for a wide sigma, on a 4x smaller copy (a quarter
    of a sigma of 4+ px is still 1+ px there) scaled back up: ~10x cheaper, the same low band."""
    if sigma < 4:
        return cv2.GaussianBlur(image, (0, 0), sigma)
    h, w = image.shape[:2]
    small = cv2.resize(image, (max(1, w // 4), max(1, h // 4)), interpolation=cv2.INTER_AREA)
    small = cv2.GaussianBlur(small, (0, 0), sigma / 4)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)


def blend(current: np.ndarray, warped: np.ndarray, conf: np.ndarray, settings: FlowBlend) -> np.ndarray:
    """O = S + c (a_hi D + (a_lo - a_hi) G(D)), D = warped - current; float32 (H, W, 3) in [0, 255]."""
    d = warped - current
    sigma = max(1.0, settings.band * max(current.shape[:2]))
    pull = settings.high * d + (settings.low - settings.high) * low_pass(d, sigma)
    return current + conf * pull


@dataclass
class _Frame:
    x: np.ndarray  # (H, W, 3) uint8 input, upright
    g: np.ndarray  # grey
    to_prev: np.ndarray | None = None  # F_{t->t-1}
    from_prev: np.ndarray | None = None  # F_{t-1->t}
    conf: np.ndarray | None = None  # (H, W, 1): how far this frame trusts the previous one's warp
    cut: bool = False  # a new shot starts here
    out: np.ndarray | None = None  # float32 output


@dataclass
class _Segment:
    """Frames after a keyframe up to the next one (its last item), planned before the network runs."""

    items: list[_Frame]
    run: list[_Frame]  # the frames the network runs on: promoted in-betweens and the keyframe
    views: list[tuple]  # per in-between: (flow to k0, conf0, flow to k1, conf1)


class TemporalProcessor:
    """Streaming temporal work of one clip (see the module doc).

    stylize(frames) -> stylized: (B, H, W, 3) uint8 -> uint8, the network on consecutive frames;
    reset(): called before the first frame of a new shot (e.g. ``NormStatsSmoother.reset``).
    """

    def __init__(
        self,
        stylize: Callable[[np.ndarray], np.ndarray],
        *,
        method: str = "flow",
        keyframes: int = 1,
        reset: Callable[[], None] | None = None,
        settings: FlowBlend = FlowBlend(),
        flow_preset: str = "fast",
        flow_side: int | None = 480,
        batch: int = 4,
    ) -> None:
        if method not in METHODS:
            raise ValueError(f"temporal must be one of {', '.join(METHODS)}, got {method!r}")
        if keyframes < 1:
            raise ValueError(f"keyframes must be >= 1, got {keyframes}")
        self.stylize, self.method, self.keyframes, self.batch = stylize, method, keyframes, max(1, batch)
        self.reset = reset or (lambda: None)
        self.settings = settings
        self.uses_flow = method == "flow" or keyframes > 1
        self.flow = FlowEstimator(flow_preset, flow_side) if self.uses_flow else None
        self.deflicker = TemporalFilter() if method == "stats" else None
        self._last: _Frame | None = None  # the last frame given out (its output set)
        self._pending: list[_Frame] = []  # frames after the last keyframe, waiting for the next
        self._segments: list[_Segment] = []  # planned segments waiting for the network (keyframes)
        self.network_frames = 0  # frames the network ran on
        self.cuts = 0

    # ------------------------------------------------------------------ public
    def push(self, frames: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
        """Consecutive upright input frames (B, H, W, 3) uint8 -> the (input, output uint8) pairs now ready."""
        if not self.uses_flow:
            styled = self._network(frames)
            if self.deflicker is not None:
                styled = self.deflicker(frames, styled)
            return list(zip(frames, styled))
        ready: list[_Frame] = []
        if self.keyframes == 1:
            items: list[_Frame] = []
            for f in frames:
                items.append(self._analyse(f, items[-1] if items else self._last))
            self._run_shots(items)
            for item in items:
                ready.append(self._smooth(item))
        else:
            for f in frames:
                item = self._analyse(f, self._newest())
                if item.cut:  # the first frame, or a new shot: the frames before end the old one
                    self._plan_segment()
                    self._segments.append(_Segment([item], [item], []))
                else:
                    self._pending.append(item)
                    if len(self._pending) >= self.keyframes:
                        self._plan_segment()
                if sum(len(seg.run) for seg in self._segments) >= self.batch:
                    ready += self._run_segments()
        return self._give(ready)

    def finish(self) -> list[tuple[np.ndarray, np.ndarray]]:
        """The frames still held back (the clip ended before the next keyframe)."""
        if self.keyframes > 1:
            self._plan_segment()
            return self._give(self._run_segments())
        return []

    # ------------------------------------------------------------------ steps
    def _network(self, frames: np.ndarray) -> np.ndarray:
        self.network_frames += len(frames)
        return self.stylize(np.ascontiguousarray(frames))

    def _analyse(self, x: np.ndarray, prev: _Frame | None) -> _Frame:
        """Flows to the previous input frame and whether a new shot starts here."""
        item = _Frame(x=x, g=grey(x))
        if prev is None:
            item.cut = True
            return item
        if prev.x.shape != x.shape:
            raise ValueError(f"frame size changed mid-clip: {prev.x.shape} -> {x.shape}")
        item.to_prev, item.from_prev = self.flow(item.g, prev.g), self.flow(prev.g, item.g)
        item.conf = confidence(prev.x, x, item.to_prev, item.from_prev)
        reliable = float((item.conf > 0.5).mean())
        item.cut = reliable < self.settings.cut_reliable
        self.cuts += item.cut
        return item

    def _run_shots(self, items: list[_Frame]) -> None:
        """Stylize frames in order, one network call per shot (the smoothing restarts at a cut)."""
        start = 0
        for i in range(1, len(items) + 1):
            if i == len(items) or items[i].cut:
                if items[start].cut:
                    self.reset()
                styled = self._network(np.stack([it.x for it in items[start:i]]))
                for it, s in zip(items[start:i], styled):
                    it.out = s.astype(np.float32)
                start = i

    def _smooth(self, item: _Frame) -> _Frame:
        """The flow blend of ``item.out`` with the previous output (method "flow")."""
        prev = self._last
        if self.method == "flow" and prev is not None and not item.cut:
            item.out = blend(item.out, warp(prev.out, item.to_prev), item.conf, self.settings)
        return self._emit(item)

    def _emit(self, item: _Frame) -> _Frame:
        self._last = item
        return item

    def _newest(self) -> _Frame | None:
        """The last frame analysed (held back or given out)."""
        if self._pending:
            return self._pending[-1]
        if self._segments:
            return self._segments[-1].items[-1]
        return self._last

    def _plan_segment(self) -> None:
        """The pending frames become a segment: the last one a keyframe, the others made from it and
        the keyframe before, except where neither covers them reliably (those run the network)."""
        if not self._pending:
            return
        items, self._pending = self._pending, []
        k0 = self._segments[-1].items[-1] if self._segments else self._last
        k1, between = items[-1], items[:-1]
        n = len(items)
        views = []  # per in-between: (flow to k0, conf0, flow to k1, conf1)
        for j, t in enumerate(between, start=1):
            if j == 1:  # the consecutive pair's flows and confidence, already known
                to0, c0 = t.to_prev, t.conf
            else:
                to0, from0 = self.flow(t.g, k0.g), self.flow(k0.g, t.g)
                c0 = confidence(k0.x, t.x, to0, from0)
            if j == n - 1:
                to1, from1 = k1.from_prev, k1.to_prev
            else:
                to1, from1 = self.flow(t.g, k1.g), self.flow(k1.g, t.g)
            c1 = confidence(k1.x, t.x, to1, from1)
            views.append((to0, c0, to1, c1))
        floor = self.settings.promote_reliable
        run = [between[j] for j, (_, c0, _, c1) in enumerate(views) if (np.maximum(c0, c1) > 0.5).mean() < floor]
        self._segments.append(_Segment(items, run + [k1], views))

    def _run_segments(self) -> list[_Frame]:
        """The network on the planned segments' keyframes (one call per shot), then their frames in order."""
        segments, self._segments = self._segments, []
        if not segments:
            return []
        self._run_shots([it for seg in segments for it in seg.run])
        ready: list[_Frame] = []
        for seg in segments:
            if seg.items[0].cut:  # a shot's first frame: the network's output as it is
                ready.append(self._emit(seg.items[0]))
                continue
            k0, k1, between = self._last, seg.items[-1], seg.items[:-1]
            n = len(seg.items)
            for j, t in enumerate(between, start=1):
                if t.out is None:
                    to0, c0, to1, c1 = seg.views[j - 1]
                    w0, w1 = c0 * (n - j) + 1e-3 * (n - j), c1 * j + 1e-3 * j  # by distance alone where both fail
                    t.out = (w0 * warp(k0.out, to0) + w1 * warp(k1.out, to1)) / (w0 + w1)
                ready.append(self._emit(t))
            # The in-betweens are made from both keyframes and change smoothly already; the blend
            # removes the jump at the keyframe (and costs a warp less per in-between).
            ready.append(self._smooth(k1))
        return ready

    def _give(self, items: list[_Frame]) -> list[tuple[np.ndarray, np.ndarray]]:
        if not items:
            return []
        xs = np.stack([it.x for it in items])
        ys = np.stack([np.clip(np.rint(it.out), 0, 255).astype(np.uint8) for it in items])
        if self.deflicker is not None:
            ys = self.deflicker(xs, ys)
        return list(zip(xs, ys))
