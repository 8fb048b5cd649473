"""Video stylization: PyAV decode -> batched frames through the translator -> H.264 encode.

    from scenimefy import ScenimefyPipeline
    from scenimefy.video import stylize_video
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
* Stabilisation (``stabilize=True``): smoothed InstanceNorm statistics and a motion-gated output
  filter (``stabilize``); ``stabilize="stats"`` / ``"filter"`` select one part.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Literal

import av
import numpy as np
from tqdm.auto import tqdm

from scenimefy.inference.pipeline import ScenimefyPipeline
from scenimefy.inference.stabilize import (
    DEFAULT_MOMENTUM,
    FlickerMeter,
    FlickerStats,
    NormStatsSmoother,
    TemporalFilter,
)
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

    @property
    def frames_per_second(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else float("inf")


def stylize_video(
    pipe: ScenimefyPipeline,
    src: str | os.PathLike,
    dst: str | os.PathLike,
    *,
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
    progress: bool = True,
    on_progress: Callable[[int, int | None], None] | None = None,
) -> VideoResult:
    """Stylize the video ``src`` into ``dst`` (.mp4, .m4v, .mov or .mkv; H.264 + the audio).

    Args:
        stabilize: True: smoothed InstanceNorm statistics (EMA ``momentum``) and the motion-gated
            output filter; "stats" or "filter": one of them; False: frames independent.
        start, duration: seconds; only this part of the clip is stylized (a preview).
        max_side: scale frames so the longer side is at most this (output at that size).
        batch_size: frames per network call.
        crf, preset: x264 quality (lower crf = better, 18 is visually lossless) and speed.
        exact: ``translate``'s fp32 mode (the reference numbers) instead of the fast dtype.
        measure_flicker: compute :class:`FlickerStats` (costs a little per frame).
        adjust: ``adjust(frames, stylized) -> frames`` on (B, H, W, 3) uint8 upright batches,
            e.g. the app's strength blend; the flicker index measures its result.
        progress: a tqdm bar; ``on_progress(done, total)`` is also called after each batch.

    The output is written to a temporary file next to ``dst`` and renamed when complete.
    """
    if batch_size < 1:
        raise VideoError("batch_size must be >= 1")
    dst = Path(dst)
    container_format = CONTAINERS.get(dst.suffix.lower())
    if container_format is None:
        raise VideoError(f"{dst}: output must end in one of {', '.join(CONTAINERS)}")
    info = probe_video(src)
    dst.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=dst.parent, prefix=f".{dst.stem}.", suffix=".partial" + dst.suffix)
    os.close(fd)
    tmp = Path(tmp_name)
    began = time.perf_counter()
    try:
        done, audio_mode, (w, h), flicker = _transcode(
            pipe,
            src,
            tmp,
            container_format,
            info,
            stabilize=stabilize,
            momentum=momentum,
            start=start,
            duration=duration,
            max_side=max_side,
            batch_size=batch_size,
            crf=crf,
            preset=preset,
            exact=exact,
            measure_flicker=measure_flicker,
            adjust=adjust,
            progress=progress,
            on_progress=on_progress,
        )
        os.replace(tmp, dst)
    finally:
        tmp.unlink(missing_ok=True)
    return VideoResult(
        path=dst,
        frames=done,
        width=w,
        height=h,
        fps=info.fps,
        audio=audio_mode,
        seconds=time.perf_counter() - began,
        flicker=flicker,
    )


def _transcode(
    pipe,
    src,
    tmp: Path,
    container_format: str,
    info: VideoInfo,
    *,
    stabilize,
    momentum,
    start,
    duration,
    max_side,
    batch_size,
    crf,
    preset,
    exact,
    measure_flicker,
    adjust,
    progress,
    on_progress,
):
    turns = quarter_turns(info.rotation)
    out_w, out_h = output_size(info.width, info.height, max_side)
    if stabilize not in (True, False, "stats", "filter"):
        raise VideoError(f"stabilize must be True, False, 'stats' or 'filter', got {stabilize!r}")
    smoother = NormStatsSmoother(momentum) if stabilize in (True, "stats") else None
    deflicker = TemporalFilter() if stabilize in (True, "filter") else None
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
        total = frame_total(info, rng)
        bar = tqdm(total=total, desc="video", unit="frame", disable=not progress)
        batch: list[tuple[np.ndarray, int]] = []
        state = {"done": 0, "last_pts": None}

        def flush_batch() -> None:
            frames = np.stack([f for f, _ in batch])
            upright = np.rot90(frames, turns, axes=(1, 2)) if turns else frames
            styled = pipe.stylize_frames(upright, mode="exact" if exact else "default", norm_stats=smoother)
            if adjust is not None:
                styled = adjust(upright, styled)
            if deflicker is not None:
                styled = deflicker(upright, styled)
            if meter is not None:
                meter.update(upright, styled)
            if turns:
                styled = np.rot90(styled, -turns, axes=(1, 2))
            for pixels, pts in zip(styled, (p for _, p in batch)):
                frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(pixels), format="rgb24")
                frame.pts, frame.time_base = pts, vin.time_base
                for packet in vout.encode(frame.reformat(format="yuv420p")):
                    out.mux(packet)
            state["done"] += len(batch)
            bar.update(len(batch))
            if on_progress is not None:
                on_progress(state["done"], total)
            batch.clear()

        streams = [vin] + ([audio.source] if audio else [])
        finished = False  # past the range's last video frame
        try:
            for packet in demux(inp, streams, src):
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
                for frame in decode_packet(packet, src, state["done"]):
                    pts = frame_pts(frame, state, vin, info)
                    if pts < rng.start:
                        continue
                    if rng.end is not None and pts >= rng.end:
                        finished = True
                        break
                    interpolation = "AREA" if out_w < frame.width else "BICUBIC"
                    rgb = frame.reformat(out_w, out_h, "rgb24", interpolation=interpolation).to_ndarray()
                    batch.append((rgb, pts - rng.start))  # output t = 0 at the range start
                    if len(batch) >= batch_size:
                        flush_batch()
            if batch:
                flush_batch()
        finally:
            bar.close()
        if state["done"] == 0:
            raise VideoError(
                f"{src}: no frames in the requested range (start {start} s, clip {info.duration or '?'} s)"
            )
        for packet in vout.encode(None):
            out.mux(packet)
        if audio is not None:
            for packet in audio.flush():
                out.mux(packet)
    return state["done"], audio.mode if audio else "none", (out_w, out_h), meter.result() if meter else None
