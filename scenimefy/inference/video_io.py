"""Video files: probing, sizes, time ranges, the audio track and robust demuxing (PyAV)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from scenimefy.inference.pipeline import MIN_SIDE

#: Output container by file suffix.
CONTAINERS = {".mp4": "mp4", ".m4v": "mp4", ".mov": "mov", ".mkv": "matroska"}
#: Audio codecs copied into .mp4 as they are: the ones browsers also play from an mp4.
MP4_COPY_AUDIO = {"aac", "mp3", "opus", "flac"}


class VideoError(ValueError):
    """A video we cannot read or a request we cannot serve; the message says which and why.

    ``kind`` says which, for programs that word it for their own users (the web app): "missing",
    "empty", "unreadable" (not a video), "no_video" (no video track), "undecodable" (no frame
    can be decoded), "no_frames" (nothing in the requested range), "request" (a bad argument).
    """

    def __init__(self, message: str, kind: str = "request") -> None:
        super().__init__(message)
        self.kind = kind


def ffmpeg_reason(err: Exception) -> str:
    """FFmpeg's words for ``err`` without the errno number and file name PyAV adds."""
    return getattr(err, "strerror", None) or str(err)


@dataclass(frozen=True)
class VideoInfo:
    """What :func:`probe_video` finds in a file."""

    width: int  # stored (coded) size, before rotation
    height: int
    rotation: int  # display matrix: degrees counter-clockwise (PyAV ``VideoFrame.rotation``)
    fps: Fraction | None  # average frame rate
    duration: float | None  # seconds
    frames: int  # frame count from the container; 0 when it does not say
    audio_codec: str | None


def open_video(path: str | os.PathLike) -> av.container.InputContainer:
    path = Path(path)
    if not path.is_file():
        raise VideoError(f"{path}: no such file", "missing")
    if path.stat().st_size == 0:
        raise VideoError(f"{path}: the file is empty (0 bytes)", "empty")
    try:
        container = av.open(str(path), metadata_errors="ignore")
    except av.FFmpegError as err:
        raise VideoError(f"{path}: not a video file FFmpeg can read ({ffmpeg_reason(err)})", "unreadable") from None
    if not container.streams.video:
        container.close()
        raise VideoError(f"{path}: the file has no video track", "no_video")
    return container


def _first_frame(container, stream, max_packets: int = 300) -> av.VideoFrame | None:
    """The first decodable frame, skipping damaged packets (at most ``max_packets`` are read)."""
    for i, packet in enumerate(demux(container, [stream])):
        frames = decode_packet(packet)
        if frames:
            return frames[0]
        if i >= max_packets:
            break
    return None


def probe_video(path: str | os.PathLike) -> VideoInfo:
    """Size, rotation, rate, duration and audio codec of ``path`` (decodes one frame)."""
    with open_video(path) as container:
        stream = container.streams.video[0]
        fps = stream.average_rate or stream.guessed_rate
        duration = None
        if stream.duration is not None and stream.time_base is not None:
            duration = float(stream.duration * stream.time_base)
        elif container.duration is not None:
            duration = container.duration / av.time_base
        audio = container.streams.audio[0].codec_context.name if container.streams.audio else None
        frame = _first_frame(container, stream)
        if frame is None:
            raise VideoError(f"{path}: the video track holds no decodable frame", "undecodable")
        return VideoInfo(
            width=frame.width,
            height=frame.height,
            rotation=int(frame.rotation or 0),
            fps=Fraction(fps) if fps else None,
            duration=duration,
            frames=int(stream.frames or 0),
            audio_codec=audio,
        )


def output_size(width: int, height: int, max_side: int | None = None) -> tuple[int, int]:
    """The encoded size: scaled so the longer side is at most ``max_side``, sides made even."""
    scale = 1.0
    if max_side is not None:
        if max_side < MIN_SIDE:
            raise VideoError(f"max_side must be at least {MIN_SIDE}")
        scale = min(1.0, max_side / max(width, height))
    if min(width, height) * scale < MIN_SIDE:  # the network needs a few pixels to pad
        scale = MIN_SIDE / min(width, height)
    w, h = max(MIN_SIDE, round(width * scale)), max(MIN_SIDE, round(height * scale))
    return w - w % 2, h - h % 2


def quarter_turns(rotation: int) -> int:
    """np.rot90 turns (counter-clockwise) that show the stored frame upright; 0 unless a multiple of 90."""
    return (round(rotation / 90) % 4) if rotation % 90 == 0 else 0


@dataclass
class TimeRange:
    """The requested time range in the video stream's time base."""

    origin: int  # pts of t = 0 (the stream's start time)
    start: int  # first pts to keep
    end: int | None  # first pts to drop
    start_s: float = 0.0
    seconds: float | None = None


def time_range(stream, start: float, duration: float | None) -> TimeRange:
    if start < 0:
        raise VideoError(f"start must be >= 0 seconds, got {start}")
    if duration is not None and duration <= 0:
        raise VideoError(f"duration must be > 0 seconds, got {duration}")
    tb = stream.time_base
    origin = int(stream.start_time or 0)
    # floor: a frame exactly at ``start`` is kept, one exactly at the end is not.
    first = origin + int(np.floor(start / tb)) if start else origin
    end = None if duration is None else origin + int(np.floor((start + duration) / tb))
    return TimeRange(origin=origin, start=first, end=end, start_s=start, seconds=duration)


def frame_total(info: VideoInfo, rng: TimeRange) -> int | None:
    fps = float(info.fps) if info.fps else None
    length = info.duration
    if length is not None:
        length = max(0.0, length - rng.start_s)
    if rng.seconds is not None:
        length = rng.seconds if length is None else min(length, rng.seconds)
    if fps and length is not None:
        return max(1, round(length * fps))
    return info.frames or None


class AudioTrack:
    """The output's audio: packets copied, or decoded and re-encoded to AAC; trimmed to the range."""

    def __init__(
        self, output, source, start_s: float, seconds: float | None, origin_s: float, container_format: str
    ) -> None:
        self.source = source
        self.begin_s = origin_s + start_s  # input time of output t = 0
        self.end_s = None if seconds is None else self.begin_s + seconds
        name = source.codec_context.name
        copy = name in output.supported_codecs and (container_format != "mp4" or name in MP4_COPY_AUDIO)
        if copy:
            self.stream = output.add_stream_from_template(source)
            self.mode = "copied"
        else:
            rate = source.codec_context.sample_rate or 48000
            self.stream = output.add_stream("aac", rate=rate)
            # Named layouts only (a decoder may report "1 channels"); browsers play mono and stereo AAC.
            channels = source.codec_context.layout.nb_channels if source.codec_context.layout else 2
            self.stream.layout = "mono" if channels == 1 else "stereo"
            self.mode = "re-encoded"

    def _in_range(self, t: float) -> bool:
        return t >= self.begin_s - 1e-6 and (self.end_s is None or t < self.end_s)

    def packets(self, packet: av.Packet) -> Iterator[av.Packet]:
        """Output packets for one input packet (none when it falls outside the range)."""
        if packet.dts is None or packet.pts is None:
            return
        tb = self.source.time_base
        if self.mode == "copied":
            if not self._in_range(float(packet.pts * tb)):
                return
            shift = int(round(self.begin_s / tb))
            packet.pts -= shift
            packet.dts -= shift
            packet.stream = self.stream
            yield packet
            return
        try:
            frames = packet.decode()
        except av.FFmpegError:
            return  # a damaged audio packet costs a few ms of sound, not the video
        for frame in frames:
            if frame.pts is None or not self._in_range(frame.time):
                continue
            frame.pts = int(round((frame.time - self.begin_s) * frame.sample_rate))
            frame.time_base = Fraction(1, frame.sample_rate)
            yield from self.stream.encode(frame)

    def flush(self) -> Iterator[av.Packet]:
        if self.mode == "re-encoded":
            yield from self.stream.encode(None)


def demux(container, streams, errors: list[str] | None = None) -> Iterator[av.Packet]:
    """The packets of ``streams``. Damaged container data ends the stream where it is (what was
    read so far is kept) instead of raising; FFmpeg's reason is appended to ``errors``."""
    try:
        yield from container.demux(streams)
    except av.FFmpegError as err:
        if errors is not None:
            errors.append(ffmpeg_reason(err))


def decode_packet(packet: av.Packet) -> list[av.VideoFrame] | None:
    """The frames of one packet, or None when its data is damaged (the caller skips it)."""
    try:
        return packet.decode()
    except av.FFmpegError:
        return None


def packet_seconds(packet: av.Packet) -> float:
    return float("-inf") if packet.pts is None else float(packet.pts * packet.time_base)


def frame_pts(frame: av.VideoFrame, state: dict, stream, info: VideoInfo) -> int:
    """The frame's pts, made strictly increasing (missing or repeated pts in damaged files)."""
    pts = frame.pts
    last = state["last_pts"]
    if pts is None:
        step = int(round(1 / (float(info.fps or 30) * stream.time_base)))
        pts = (last + max(step, 1)) if last is not None else int(stream.start_time or 0)
    elif last is not None and pts <= last:
        pts = last + 1
    state["last_pts"] = pts
    return pts


def mux_options(container_format: str) -> dict[str, str]:
    # The index at the front lets browsers start playing before the whole file has arrived.
    return {"movflags": "+faststart"} if container_format in ("mp4", "mov") else {}


def video_frames(path: str | os.PathLike, size: tuple[int, int] | None = None, limit: int | None = None) -> Iterator:
    """(H, W, 3) uint8 RGB frames of a video file in stored orientation, scaled (area) to ``size`` (w, h)."""
    with open_video(path) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        for n, frame in enumerate(container.decode(stream)):
            if limit is not None and n >= limit:
                return
            if size is not None and (frame.width, frame.height) != size:
                frame = frame.reformat(size[0], size[1], "rgb24", interpolation="AREA")
            yield frame.to_ndarray(format="rgb24")
