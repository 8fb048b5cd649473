"""Video stylization: PyAV decode -> batched frames through the translator -> H.264 encode.

    from scenimefy import ScenimefyPipeline
    from scenimefy.inference.video import stylize_video
    pipe = ScenimefyPipeline.from_pretrained(style="shinkai")
    result = stylize_video(pipe, "clip.mov", "anime.mp4", start=3, duration=5)

Frames stream through: the decoder, a batch of ``batch_size`` frames and the encoder's lookahead
are all that is held in memory, never the clip. Choices (docs/video.md has the details):

* Timing: every output frame keeps its input presentation timestamp (shifted by ``start``), so
  variable frame rate clips keep their timing; the nominal fps is written as the stream rate.
* Rotation: phone clips store sideways pixels plus a display matrix. Each frame is turned
  upright for the network (it was trained on upright scenes), turned back, and the input's
  display matrix is written to the output: players show it exactly as they showed the input.
* Odd sizes: H.264 in yuv420p (the only profile browsers play) stores 2x2 chroma blocks, so an
  odd width or height loses its last column / row. ``max_side`` scales the frames down in the
  decoder (a faster preview); the output has that size.
* Audio: the first audio track is copied packet for packet (no quality loss) when the output
  container takes its codec (for .mp4: AAC, MP3, Opus, FLAC, the codecs browsers play);
  otherwise it is re-encoded to AAC. Clips without audio give clips without audio.
* Temporal consistency (``temporal``, ``scenimefy.inference.temporal``): ``"flow"`` (the default)
  blends each stylized frame with the previous output warped by optical flow, in the low band,
  where the flow is trusted, on top of smoothed InstanceNorm statistics; ``"stats"``: smoothed
  statistics and a motion-gated output filter (``stabilize``); ``"off"``: frames independent.
  ``keyframes=N`` runs the network on every N-th frame and warps the frames in between from
  their two keyframes (a look-ahead of N x ``batch_size`` frames). The old ``stabilize=False`` / ``"stats"`` /
  ``"filter"`` still work (``False`` = ``"off"``; the parts = ``"stats"``'s parts).
* Nothing half-written: the output is written to a hidden temporary file beside ``dst`` and
  renamed when complete (``outputs.atomic_output``); an error, an interrupt or a closed job
  removes it. A full disk raises ``DiskFullError``.
* Damaged input: undecodable packets are skipped and damaged container data ends the clip
  where it is, so a corrupt or truncated file gives the frames that could be read (with their
  timing), never a hang; ``VideoResult.complete`` is False and ``damaged`` counts the skipped
  packets. A file with no decodable frame at all raises ``VideoError``.
* Jobs: :func:`iter_stylize_video` is the same work as a generator that yields a
  :class:`VideoProgress` after each batch (the web app drives it, and stops it between two
  batches by closing it); :func:`stylize_video` runs it to the end.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Generator
from contextlib import closing
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Literal

import numpy as np
from tqdm.auto import tqdm

from scenimefy.inference.outputs import atomic_output
from scenimefy.inference.pipeline import ScenimefyPipeline
from scenimefy.inference.stabilize import (
    DEFAULT_MOMENTUM,
    FlickerStats,
)
from scenimefy.inference.temporal import METHODS
from scenimefy.inference.transcode import VideoProgress, transcode
from scenimefy.inference.video_io import (
    CONTAINERS,
    VideoError,
    VideoInfo,
    output_size,
    probe_video,
    quarter_turns,
)

DEFAULT_CRF = 18  # visually lossless for x264; the network output is smooth and compresses well
Stabilize = Literal[True, False, "stats", "filter"]
Temporal = Literal["flow", "stats", "off"]
DEFAULT_TEMPORAL: Temporal = "flow"
DEFAULT_KEYFRAMES = 1


@dataclass(frozen=True)
class VideoPlan:
    """What a job will do, known before its first frame (the app shows it)."""

    width: int  # encoded size (stored orientation)
    height: int
    display_width: int  # as players show it (rotation applied)
    display_height: int
    start: float  # seconds into the clip
    seconds: float | None  # length of the part stylized (None: unknown, to the end)
    clip_seconds: float | None  # the whole clip
    frames: int | None  # expected frame count of the part
    info: VideoInfo


@dataclass
class VideoResult:
    path: Path
    frames: int
    width: int
    height: int
    fps: Fraction | None
    audio: str  # "copied", "re-encoded" or "none"
    seconds: float  # wall time
    flicker: FlickerStats | None = None
    temporal: str = DEFAULT_TEMPORAL  # what ran: "flow", "stats", "off" (stabilize's parts: "statistics", "filter")
    keyframes: int = 1
    network_frames: int = 0  # frames the network stylized (the others were warped from keyframes)
    scene_cuts: int = 0  # new shots found by the flow (temporal="flow" or keyframes > 1)
    network_seconds: float = 0.0  # wall time inside the network (the rest: decode, temporal work, encode)
    complete: bool = True  # False: the input was damaged or ended early; ``frames`` is what could be read
    damaged: int = 0  # undecodable packets skipped
    expected_frames: int | None = None

    @property
    def frames_per_second(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else float("inf")


def plan_video(
    src: str | os.PathLike,
    *,
    start: float = 0.0,
    duration: float | None = None,
    max_side: int | None = None,
    info: VideoInfo | None = None,
) -> VideoPlan:
    """Probe ``src`` and say what a job with these options would stylize (size, part, frames)."""
    info = info or probe_video(src)
    if start < 0:
        raise VideoError(f"start must be >= 0 seconds, got {start}")
    if duration is not None and duration <= 0:
        raise VideoError(f"duration must be > 0 seconds, got {duration}")
    w, h = output_size(info.width, info.height, max_side)
    turned = quarter_turns(info.rotation) % 2 == 1
    seconds = duration
    if info.duration is not None:
        rest = max(0.0, info.duration - start)
        seconds = rest if duration is None else min(duration, rest)
    frames = None
    if info.fps and seconds is not None:
        frames = max(1, round(seconds * float(info.fps)))
    elif info.frames and duration is None and not start:
        frames = info.frames
    return VideoPlan(
        width=w,
        height=h,
        display_width=h if turned else w,
        display_height=w if turned else h,
        start=start,
        seconds=seconds,
        clip_seconds=info.duration,
        frames=frames,
        info=info,
    )


def stylize_video(
    pipe: ScenimefyPipeline,
    src: str | os.PathLike,
    dst: str | os.PathLike,
    *,
    progress: bool = True,
    on_progress: Callable[[int, int | None], None] | None = None,
    **options,
) -> VideoResult:
    """Stylize the video ``src`` into ``dst`` (.mp4, .m4v, .mov or .mkv; H.264 + the audio).

    ``options`` are those of :func:`iter_stylize_video`. ``progress`` shows a tqdm bar;
    ``on_progress(done, total)`` is also called after each batch.
    """
    job = iter_stylize_video(pipe, src, dst, **options)
    bar = None
    with closing(job):
        try:
            while True:
                update = next(job)
                if bar is None:
                    bar = tqdm(total=update.total, desc="video", unit="frame", disable=not progress)
                bar.update(update.done - bar.n)
                if on_progress is not None and update.done:
                    on_progress(update.done, update.total)
        except StopIteration as stop:
            return stop.value
        finally:
            if bar is not None:
                bar.close()


def iter_stylize_video(
    pipe: ScenimefyPipeline,
    src: str | os.PathLike,
    dst: str | os.PathLike,
    *,
    temporal: Temporal | None = None,
    keyframes: int = DEFAULT_KEYFRAMES,
    stabilize: Stabilize = True,
    momentum: float = DEFAULT_MOMENTUM,
    start: float = 0.0,
    duration: float | None = None,
    max_side: int | None = None,
    batch_size: int = 4,
    crf: int = DEFAULT_CRF,
    preset: str = "medium",
    exact: bool = False,
    measure_flicker: bool = False,
    adjust: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = None,
    plan: VideoPlan | None = None,
) -> Generator[VideoProgress, None, VideoResult]:
    """The video job as a generator: yields a :class:`VideoProgress` before the first frame and
    after each batch, returns the :class:`VideoResult`. Closing it stops the work between two
    batches, frees the decoder and encoder, and removes the partial output.

    Args:
        temporal: "flow" (default): flow-guided blend with the previous output on top of smoothed
            InstanceNorm statistics; "stats": smoothed statistics (EMA ``momentum``) and the
            motion-gated output filter; "off": frames independent. None: from ``stabilize``.
        keyframes: run the network on every N-th frame (and at scene cuts and wherever the flow
            is unreliable); the frames between are warped from their two keyframes.
        stabilize: the older switch, used when ``temporal`` is None: True = "flow", False =
            "off", "stats" / "filter" = one part of "stats" (statistics / output filter).
        start, duration: seconds; only this part of the clip is stylized (a preview).
        max_side: scale frames so the longer side is at most this (output at that size).
        batch_size: frames per network call.
        crf, preset: x264 quality (lower crf = better, 18 is visually lossless) and speed.
        exact: ``translate``'s fp32 mode (the reference numbers) instead of the fast dtype.
        measure_flicker: compute :class:`FlickerStats` (costs a little per frame).
        adjust: ``adjust(frames, stylized) -> frames`` on (B, H, W, 3) uint8 upright batches,
            e.g. the app's strength blend; the flicker index measures its result.
        plan: a :func:`plan_video` of the same options, to skip probing the file again.
    """
    if batch_size < 1:
        raise VideoError("batch_size must be >= 1")
    if not isinstance(keyframes, int) or keyframes < 1:
        raise VideoError(f"keyframes must be a whole number >= 1, got {keyframes!r}")
    if stabilize not in (True, False, "stats", "filter"):
        raise VideoError(f"stabilize must be True, False, 'stats' or 'filter', got {stabilize!r}")
    if temporal is None:
        temporal = {True: DEFAULT_TEMPORAL, False: "off"}.get(stabilize, "stats")
    elif temporal not in METHODS:
        raise VideoError(f"temporal must be one of {', '.join(METHODS)}, got {temporal!r}")
    else:
        stabilize = {"flow": True, "stats": True, "off": False}[temporal]
    if stabilize in (True, "stats") and not pipe.can_smooth_stats:
        if stabilize == "stats":
            raise VideoError(
                f"the {pipe.backend} backend of this translator cannot smooth its normalisation statistics: "
                "use stabilize='filter' or False"
            )
        stabilize = "filter"  # the part that works for any backend
    dst = Path(dst)
    container_format = CONTAINERS.get(dst.suffix.lower())
    if container_format is None:
        raise VideoError(f"{dst}: output must end in one of {', '.join(CONTAINERS)}")
    plan = plan or plan_video(src, start=start, duration=duration, max_side=max_side)
    yield VideoProgress(0, plan.frames, plan)
    began = time.perf_counter()
    with atomic_output(dst) as tmp:
        stats = yield from transcode(
            pipe,
            src,
            tmp,
            container_format,
            plan,
            temporal=temporal,
            keyframes=keyframes,
            stabilize=stabilize,
            momentum=momentum,
            start=start,
            duration=duration,
            batch_size=batch_size,
            crf=crf,
            preset=preset,
            exact=exact,
            measure_flicker=measure_flicker,
            adjust=adjust,
        )
    return VideoResult(
        path=dst,
        width=plan.width,
        height=plan.height,
        fps=plan.info.fps,
        seconds=time.perf_counter() - began,
        expected_frames=plan.frames,
        **stats,
    )
