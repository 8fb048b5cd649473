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
* Stabilisation (``stabilize=True``), two complementary parts:
  - statistics (:class:`NormStatsSmoother`): InstanceNorm normalises every frame by its own
    per-channel statistics, so a moving object or a small exposure change shifts every colour
    of the frame and the output "pulses". The layers normalise instead with an exponential
    moving average of the statistics across frames, reset at scene cuts;
  - output (:class:`TemporalFilter`): the network also amplifies the small frame-to-frame noise
    of a compressed video into visible shimmer. Where the input did not change, the output
    leans on the previous output (a motion-gated moving average); where it moved, it does not.
  ``stabilize="stats"`` / ``"filter"`` select one part.
* Flicker index (:class:`FlickerMeter`): the mean absolute change between consecutive output
  frames divided by the same for the input frames. 1.0 = the output changes exactly as much as
  the video itself does; the excess is flicker the stylization adds. Lower is steadier.
"""

from __future__ import annotations

import os
import tempfile
import time
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Callable, Iterator, Literal

import av
import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from .inference import NormStatsHook, translate
from .pipeline import MIN_SIDE, ScenimefyPipeline

#: Output container by file suffix.
CONTAINERS = {".mp4": "mp4", ".m4v": "mp4", ".mov": "mov", ".mkv": "matroska"}
#: Audio codecs copied into .mp4 as they are: the ones browsers also play from an mp4.
MP4_COPY_AUDIO = {"aac", "mp3", "opus", "flac"}
DEFAULT_CRF = 18  # visually lossless for x264; the network output is smooth and compresses well
DEFAULT_MOMENTUM = 0.9  # EMA weight of the past: ~10 frames (1/3 s at 30 fps) of memory
Stabilize = Literal[True, False, "stats", "filter"]


class VideoError(ValueError):
    """A video we cannot read or a request we cannot serve; the message says which and why."""


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


@dataclass
class FlickerStats:
    """See :class:`FlickerMeter`."""

    index: float  # output change / input change, over all pixels
    static: float  # mean output change (8-bit levels) where the input did not change
    pairs: int  # consecutive frame pairs measured


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


# --------------------------------------------------------------------------- stabilisation


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


# --------------------------------------------------------------------------- measurement


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


# --------------------------------------------------------------------------- probing


def _open(path: str | os.PathLike) -> av.container.InputContainer:
    path = Path(path)
    if not path.is_file():
        raise VideoError(f"{path}: no such file")
    if path.stat().st_size == 0:
        raise VideoError(f"{path}: the file is empty (0 bytes)")
    try:
        container = av.open(str(path), metadata_errors="ignore")
    except av.FFmpegError as err:
        raise VideoError(f"{path}: not a video file FFmpeg can read ({err})") from None
    if not container.streams.video:
        container.close()
        raise VideoError(f"{path}: the file has no video track")
    return container


def _first_frame(container, stream) -> av.VideoFrame | None:
    try:
        for frame in container.decode(stream):
            return frame
    except av.FFmpegError:
        return None
    return None


def probe_video(path: str | os.PathLike) -> VideoInfo:
    """Size, rotation, rate, duration and audio codec of ``path`` (decodes one frame)."""
    with _open(path) as container:
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
            raise VideoError(f"{path}: the video track holds no decodable frame")
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


# --------------------------------------------------------------------------- the frame loop


def _quarter_turns(rotation: int) -> int:
    """np.rot90 turns (counter-clockwise) that show the stored frame upright; 0 unless a multiple of 90."""
    return (round(rotation / 90) % 4) if rotation % 90 == 0 else 0


@torch.inference_mode()
def stylize_frames(
    pipe: ScenimefyPipeline,
    frames: np.ndarray,
    *,
    norm_stats: NormStatsHook | None = None,
    exact: bool = False,
) -> np.ndarray:
    """(B, H, W, 3) uint8 frames -> stylized (B, H, W, 3) uint8, H and W any size >= 16."""
    device = pipe.device
    x = torch.from_numpy(np.ascontiguousarray(frames)).to(device).permute(0, 3, 1, 2).float()
    x = x / 127.5 - 1.0  # the pipeline's x / 255 * 2 - 1
    h, w = x.shape[-2:]
    pad_h, pad_w = -h % 4, -w % 4
    if pad_h or pad_w:
        x = F.pad(x, (0, pad_w, 0, pad_h), mode="reflect")
    y = translate(pipe.translator, x, exact=exact, norm_stats=norm_stats)[:, :, :h, :w]
    y = ((y.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return y.permute(0, 2, 3, 1).cpu().numpy()


@dataclass
class _Range:
    """The requested time range in the video stream's time base."""

    origin: int  # pts of t = 0 (the stream's start time)
    start: int  # first pts to keep
    end: int | None  # first pts to drop
    start_s: float = 0.0
    seconds: float | None = None


def _time_range(stream, start: float, duration: float | None) -> _Range:
    if start < 0:
        raise VideoError(f"start must be >= 0 seconds, got {start}")
    if duration is not None and duration <= 0:
        raise VideoError(f"duration must be > 0 seconds, got {duration}")
    tb = stream.time_base
    origin = int(stream.start_time or 0)
    # floor: a frame exactly at ``start`` is kept, one exactly at the end is not.
    first = origin + int(np.floor(start / tb)) if start else origin
    end = None if duration is None else origin + int(np.floor((start + duration) / tb))
    return _Range(origin=origin, start=first, end=end, start_s=start, seconds=duration)


def _frame_total(info: VideoInfo, rng: _Range) -> int | None:
    fps = float(info.fps) if info.fps else None
    length = info.duration
    if length is not None:
        length = max(0.0, length - rng.start_s)
    if rng.seconds is not None:
        length = rng.seconds if length is None else min(length, rng.seconds)
    if fps and length is not None:
        return max(1, round(length * fps))
    return info.frames or None


class _AudioTrack:
    """The output's audio: packets copied, or decoded and re-encoded to AAC; trimmed to the range."""

    def __init__(self, output, source, start_s: float, seconds: float | None, origin_s: float, container_format: str) -> None:
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
            pipe, src, tmp, container_format, info,
            stabilize=stabilize, momentum=momentum, start=start, duration=duration, max_side=max_side,
            batch_size=batch_size, crf=crf, preset=preset, exact=exact, measure_flicker=measure_flicker,
            adjust=adjust, progress=progress, on_progress=on_progress,
        )  # fmt: skip
        os.replace(tmp, dst)
    finally:
        tmp.unlink(missing_ok=True)
    return VideoResult(
        path=dst, frames=done, width=w, height=h, fps=info.fps, audio=audio_mode,
        seconds=time.perf_counter() - began, flicker=flicker,
    )  # fmt: skip


def _transcode(pipe, src, tmp: Path, container_format: str, info: VideoInfo, *, stabilize, momentum, start, duration,
               max_side, batch_size, crf, preset, exact, measure_flicker, adjust, progress, on_progress):  # fmt: skip
    turns = _quarter_turns(info.rotation)
    out_w, out_h = output_size(info.width, info.height, max_side)
    if stabilize not in (True, False, "stats", "filter"):
        raise VideoError(f"stabilize must be True, False, 'stats' or 'filter', got {stabilize!r}")
    smoother = NormStatsSmoother(momentum) if stabilize in (True, "stats") else None
    deflicker = TemporalFilter() if stabilize in (True, "filter") else None
    meter = FlickerMeter() if measure_flicker else None
    with _open(src) as inp, av.open(str(tmp), "w", format=container_format, options=_mux_options(container_format)) as out:
        vin = inp.streams.video[0]
        vin.thread_type = "AUTO"  # frame-threaded decoding
        rng = _time_range(vin, start, duration)
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
            audio = _AudioTrack(out, inp.streams.audio[0], start, duration, origin_s, container_format)
        if rng.start > rng.origin:
            inp.seek(rng.start, stream=vin)  # lands on the keyframe before; earlier frames are skipped
        total = _frame_total(info, rng)
        bar = tqdm(total=total, desc="video", unit="frame", disable=not progress)
        batch: list[tuple[np.ndarray, int]] = []
        state = {"done": 0, "last_pts": None}

        def flush_batch() -> None:
            frames = np.stack([f for f, _ in batch])
            upright = np.rot90(frames, turns, axes=(1, 2)) if turns else frames
            styled = stylize_frames(pipe, upright, norm_stats=smoother, exact=exact)
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
            for packet in _demux(inp, streams, src):
                if audio is not None and packet.stream is audio.source:
                    for p in audio.packets(packet):
                        out.mux(p)
                    continue
                if finished:
                    # Packets interleave by time: a video packet well past the range end means
                    # the range's audio has been read too.
                    if audio is None or audio.end_s is None or _seconds(packet) > audio.end_s + 1.0:
                        break
                    continue
                for frame in _decode(packet, src, state["done"]):
                    pts = _frame_pts(frame, state, vin, info)
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
            raise VideoError(f"{src}: no frames in the requested range (start {start} s, clip {info.duration or '?'} s)")
        for packet in vout.encode(None):
            out.mux(packet)
        if audio is not None:
            for packet in audio.flush():
                out.mux(packet)
    return state["done"], audio.mode if audio else "none", (out_w, out_h), meter.result() if meter else None


def _demux(container, streams, src) -> Iterator[av.Packet]:
    try:
        yield from container.demux(streams)
    except av.FFmpegError as err:
        raise VideoError(f"{src}: the file is broken ({err})") from None


def _decode(packet: av.Packet, src, done: int) -> list[av.VideoFrame]:
    try:
        return packet.decode()
    except av.FFmpegError as err:
        raise VideoError(f"{src}: the video data is broken after {done} frames ({err})") from None


def _seconds(packet: av.Packet) -> float:
    return float("-inf") if packet.pts is None else float(packet.pts * packet.time_base)


def _frame_pts(frame: av.VideoFrame, state: dict, stream, info: VideoInfo) -> int:
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


def _mux_options(container_format: str) -> dict[str, str]:
    # The index at the front lets browsers start playing before the whole file has arrived.
    return {"movflags": "+faststart"} if container_format in ("mp4", "mov") else {}
