"""Generated test clips: a moving square over a textured background, encoded with PyAV."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np


def moving_square(n: int, width: int, height: int, seed: int = 0) -> list[np.ndarray]:
    """A textured static background with a bright square sliding across it."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width]
    background = np.stack([xx * 200 // width + 20, yy * 200 // height + 20, np.full_like(xx, 90)], axis=2)
    background = np.clip(background + rng.integers(-12, 12, background.shape), 0, 255).astype(np.uint8)
    frames = []
    side = max(4, min(width, height) // 3)
    for i in range(n):
        frame = background.copy()
        x0 = (i * max(1, (width - side) // max(1, n - 1))) % max(1, width - side)
        frame[height // 3 : height // 3 + side, x0 : x0 + side] = (250, 240, 60)
        frames.append(frame)
    return frames


def write_clip(
    path: Path,
    frames: list[np.ndarray],
    *,
    pts: list[int] | None = None,
    time_base: Fraction = Fraction(1, 1000),
    rate: int = 10,
    rotation: int = 0,
    audio: str | None = None,
    pix_fmt: str = "yuv420p",
    faststart: bool = False,
) -> None:
    """Encode ``frames`` with libx264 (pts in ``time_base``, default every 1/rate s), optional audio."""
    container = "matroska" if path.suffix == ".mkv" else None
    options = {"movflags": "+faststart"} if faststart else {}
    with av.open(str(path), "w", format=container, options=options) as out:
        stream = out.add_stream("libx264", rate=rate)
        stream.height, stream.width = frames[0].shape[:2]
        stream.pix_fmt = pix_fmt
        stream.codec_context.time_base = time_base
        if rotation:
            stream.set_display_rotation(rotation)
        if pts is None:
            pts = [round(i / rate / time_base) for i in range(len(frames))]
        seconds = float(pts[-1] * time_base) + 1 / rate
        sound = None
        if audio:
            sound = out.add_stream(audio, rate=16000)
            sound.layout = "mono"
        for pixels, t in zip(frames, pts):
            frame = av.VideoFrame.from_ndarray(pixels, format="rgb24").reformat(format=pix_fmt)
            frame.pts, frame.time_base = t, time_base
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
        if sound is not None:
            fmt = "s16" if audio.startswith("pcm") else "fltp"
            samples = int(seconds * 16000)
            wave = np.sin(np.arange(samples) * 2 * np.pi * 440 / 16000) * 0.3
            data = (wave * 32767).astype(np.int16) if fmt == "s16" else wave.astype(np.float32)
            for i in range(0, samples, 1024):
                chunk = av.AudioFrame.from_ndarray(data[None, i : i + 1024], format=fmt, layout="mono")
                chunk.sample_rate, chunk.pts = 16000, i
                for packet in sound.encode(chunk):
                    out.mux(packet)
            for packet in sound.encode(None):
                out.mux(packet)
