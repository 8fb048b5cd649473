"""The frame loop of ``scenimefy video`` (``scenimefy.inference.video``): decode, stylize in batches,
temporal work (statistics smoothing, flow-guided blending, keyframe reuse), encode; progress as it goes."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Generator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import av
import numpy as np

from scenimefy.inference.stabilize import (
    FlickerMeter,
    NormStatsSmoother,
    TemporalFilter,
)
from scenimefy.inference.temporal import TemporalProcessor
from scenimefy.inference.video_io import (
    AudioTrack,
    VideoError,
    decode_packet,
    demux,
    frame_pts,
    frame_total,
    mux_options,
    open_video,
    packet_seconds,
    quarter_turns,
    time_range,
)

if TYPE_CHECKING:
    from scenimefy.inference.video import VideoPlan


@dataclass(frozen=True)
class VideoProgress:
    done: int  # frames stylized and encoded so far
    total: int | None  # expected frames (None: unknown)
    plan: VideoPlan


def transcode(
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
        network, method=method, keyframes=keyframes, reset=smoother.reset if smoother else None, batch=batch_size
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
        # x264's macroblock-tree rate control made a different file on each run of the same frames
        # (every run of hanami.mp4, 2026-12-07): off, the same input gives the same bytes.
        vout.options = {"crf": str(crf), "preset": preset, "x264-params": "mbtree=0"}
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
