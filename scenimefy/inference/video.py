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
  their two keyframes (a look-ahead of N frames). The old ``stabilize=False`` / ``"stats"`` /
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
from collections import deque
from collections.abc import Callable, Generator
from contextlib import closing
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Literal

import av
import numpy as np
from tqdm.auto import tqdm

from scenimefy.inference.outputs import atomic_output
from scenimefy.inference.pipeline import ScenimefyPipeline
from scenimefy.inference.stabilize import (
    DEFAULT_MOMENTUM,
    FlickerMeter,
    FlickerStats,
    NormStatsSmoother,
    TemporalFilter,
)
from scenimefy.inference.temporal import METHODS, TemporalProcessor
from scenimefy.inference.video_io import (
    CONTAINERS,
    AudioTrack,
    VideoError,
    VideoInfo,
    decode_packet,
    demux,
    frame_pts,
    frame_total,
    mux_options,
    open_video,
    output_size,
    packet_seconds,
    probe_video,
    quarter_turns,
    time_range,
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


@dataclass(frozen=True)
class VideoProgress:
    done: int  # frames stylized and encoded so far
    total: int | None  # expected frames (None: unknown)
    plan: VideoPlan


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
        stats = yield from _transcode(
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


def _transcode(
    pipe,
    src,
    tmp: Path,
    container_format: str,
    plan: VideoPlan,
    *,
    temporal,
    keyframes,
    stabilize,
    momentum,
    start,
    duration,
    batch_size,
    crf,
    preset,
    exact,
    measure_flicker,
    adjust,
) -> Generator[VideoProgress, None, dict]:
    info = plan.info
    turns = quarter_turns(info.rotation)
    out_w, out_h = plan.width, plan.height
    smoother = NormStatsSmoother(momentum) if stabilize in (True, "stats") else None
    # "stats" split in its parts (the old stabilize="stats" / "filter"): the filter runs here
    deflicker = TemporalFilter() if temporal == "stats" and stabilize == "filter" else None
    method = "off" if temporal == "stats" and stabilize is not True else temporal
    mode = "exact" if exact else "default"

    timer = {"network": 0.0}

    def network(upright: np.ndarray) -> np.ndarray:
        began = time.perf_counter()
        styled = pipe.stylize_frames(upright, mode=mode, norm_stats=smoother)
        timer["network"] += time.perf_counter() - began
        return adjust(upright, styled) if adjust is not None else styled

    temporal_work = TemporalProcessor(
        network, method=method, keyframes=keyframes, reset=smoother.reset if smoother else None
    )
    meter = FlickerMeter() if measure_flicker else None
    with (
        open_video(src) as inp,
        av.open(str(tmp), "w", format=container_format, options=mux_options(container_format)) as out,
    ):
        vin = inp.streams.video[0]
        vin.thread_type = "AUTO"  # frame-threaded decoding
        rng = time_range(vin, start, duration)
        origin_s = float(rng.origin * vin.time_base)
        vout = out.add_stream("libx264", rate=info.fps or 30)
        vout.width, vout.height, vout.pix_fmt = out_w, out_h, "yuv420p"
        vout.codec_context.time_base = vin.time_base  # frames keep their input pts (VFR)
        vout.time_base = vin.time_base
        vout.options = {"crf": str(crf), "preset": preset}
        if info.rotation:
            vout.set_display_rotation(info.rotation)
        audio = None
        if inp.streams.audio:
            audio = AudioTrack(out, inp.streams.audio[0], start, duration, origin_s, container_format)
        if rng.start > rng.origin:
            inp.seek(rng.start, stream=vin)  # lands on the keyframe before; earlier frames are skipped
        total = plan.frames if plan.frames is not None else frame_total(info, rng)
        batch: list[tuple[np.ndarray, int]] = []
        waiting: deque[int] = deque()  # pts of frames given to the temporal work, not yet encoded
        state = {"done": 0, "last_pts": None}

        def encode(ready: list[tuple[np.ndarray, np.ndarray]]) -> None:
            if not ready:
                return
            upright = np.stack([x for x, _ in ready])
            styled = np.stack([y for _, y in ready])
            if deflicker is not None:
                styled = deflicker(upright, styled)
            if meter is not None:
                meter.update(upright, styled)
            if turns:
                styled = np.rot90(styled, -turns, axes=(1, 2))
            for pixels in styled:
                frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(pixels), format="rgb24")
                frame.pts, frame.time_base = waiting.popleft(), vin.time_base
                for packet in vout.encode(frame.reformat(format="yuv420p")):
                    out.mux(packet)
            state["done"] += len(ready)

        def flush_batch() -> None:
            frames = np.stack([f for f, _ in batch])
            upright = np.rot90(frames, turns, axes=(1, 2)) if turns else frames
            waiting.extend(p for _, p in batch)
            batch.clear()
            encode(temporal_work.push(upright))

        def take(frame: av.VideoFrame) -> bool:
            """Queue one decoded frame; False once past the range's end."""
            pts = frame_pts(frame, state, vin, info)
            if pts < rng.start:
                return True
            if rng.end is not None and pts >= rng.end:
                return False
            interpolation = "AREA" if out_w < frame.width else "BICUBIC"
            rgb = frame.reformat(out_w, out_h, "rgb24", interpolation=interpolation).to_ndarray()
            batch.append((rgb, pts - rng.start))  # output t = 0 at the range start
            return True

        streams = [vin] + ([audio.source] if audio else [])
        finished = False  # past the range's last video frame
        damaged = 0  # undecodable packets skipped
        broken: list[str] = []  # container errors that ended the demuxing early
        for packet in demux(inp, streams, broken):
            if audio is not None and packet.stream is audio.source:
                for p in audio.packets(packet):
                    out.mux(p)
                continue
            if finished:
                # Packets interleave by time: a video packet well past the range end means
                # the range's audio has been read too.
                if audio is None or audio.end_s is None or packet_seconds(packet) > audio.end_s + 1.0:
                    break
                continue
            frames = decode_packet(packet)
            if frames is None:
                damaged += 1
                continue
            for frame in frames:
                if not take(frame):
                    finished = True
                    break
                if len(batch) >= batch_size:
                    flush_batch()
                    yield VideoProgress(state["done"], total, plan)
        if broken and not finished:  # the demuxer gave up: drain what the decoder still holds
            for frame in _drain(vin):
                if not take(frame):
                    break
                if len(batch) >= batch_size:
                    flush_batch()
                    yield VideoProgress(state["done"], total, plan)
        tail = bool(batch or waiting)
        if batch:
            flush_batch()
        if waiting:  # keyframes: the frames held back for a keyframe that never came
            encode(temporal_work.finish())
        if tail:
            yield VideoProgress(state["done"], total, plan)
        if state["done"] == 0:
            if damaged or broken:
                raise VideoError(
                    f"{src}: the video data is damaged: no frame of the requested range could be decoded", "undecodable"
                )
            raise VideoError(
                f"{src}: no frames in the requested range (start {start} s, clip {info.duration or '?'} s)",
                "no_frames",
            )
        for packet in vout.encode(None):
            out.mux(packet)
        if audio is not None:
            for packet in audio.flush():
                out.mux(packet)
    ended_early = not finished and total is not None and state["done"] < total * 0.98 - 1
    return {
        "frames": state["done"],
        "audio": audio.mode if audio else "none",
        "flicker": meter.result() if meter else None,
        "temporal": temporal
        if temporal != "stats" or stabilize is True
        else {"stats": "statistics"}.get(stabilize, stabilize),
        "keyframes": keyframes,
        "network_frames": temporal_work.network_frames,
        "scene_cuts": temporal_work.cuts,
        "network_seconds": timer["network"],
        "complete": not (damaged or broken or ended_early),
        "damaged": damaged,
    }


def _drain(stream) -> list[av.VideoFrame]:
    """The frames a decoder still holds (frame threading, B-frames) when its input stopped early."""
    try:
        return stream.decode(None)
    except av.FFmpegError:
        return []
