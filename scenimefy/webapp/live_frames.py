"""One live frame, whatever carried it (the page's socket, ``live_socket``, or Gradio's stream,
``live_tab``): the model that runs for a style and its working size, the refusal said once, giving
way to photo and video jobs, decoding straight at the working size, the model, the rate sentence.

- Model: the selected style's fast (lite) variant when its weights can run here, at the largest
  size at which the model alone runs at ``Limits.live_fps`` frames a second on this server (timed
  on the first live frame, ``live_size``), at most ``Limits.live_max_side`` px; otherwise the full
  model at ``Limits.live_full_side`` px.
- Lean: what is not the model is kept small. A JPEG is decoded straight at the working size
  (``Image.draft``: the JPEG decoder scales by 1/2, 1/4 or 1/8 itself), not decoded at full size
  and then shrunk; the rate sentence changes once a second, not with every frame; the model runs
  on PyTorch's threads or on one, whichever measured faster here.
- While a photo or a video is being stylized a stream gets about one frame a second, leaving the
  CPU to that job. A style that cannot run is said once per stream, never a toast a frame.
"""

from __future__ import annotations

import base64
import io
import logging
import time
from collections import deque
from dataclasses import dataclass, field

import gradio as gr
import numpy as np
from PIL import Image

from scenimefy.webapp.context import AppContext
from scenimefy.webapp.live_size import threads, working_size
from scenimefy.webapp.messages import pixels
from scenimefy.webapp.styles import fast_style

log = logging.getLogger("scenimefy.app")

YIELD_INTERVAL_S = 1.0  # while an image / video job runs: at most one live frame per this
FPS_WINDOW = 10  # frames per second over this many frames ...
FPS_SECONDS = 5.0  # ... and no older than this
RATE_EVERY_S = 1.0  # the rate sentence changes at most this often (each change redraws it)
JPEG_QUALITY = 80  # the stylized frames sent back


@dataclass
class LiveSession:
    """One viewer's stream: when its last frames were done (server time), when the rate sentence
    was last sent, the refusal already said, its place in the line for a live slot (``LiveTurns``)."""

    done: deque = field(default_factory=lambda: deque(maxlen=FPS_WINDOW))
    last: float = 0.0
    said: float = 0.0
    refused: str = ""
    place: int = 0
    key: object = field(default_factory=object)  # the stream's name in ``LiveTurns``

    def tick(self, now: float) -> None:
        self.done.append(now)
        self.last = now

    def fps(self, now: float) -> float | None:
        recent = [t for t in self.done if now - t <= FPS_SECONDS]
        if len(recent) < 2 or recent[-1] <= recent[0]:
            return None
        return (len(recent) - 1) / (recent[-1] - recent[0])

    def wait(self, jobs_running: int, now: float) -> float:
        """Seconds until this stream may run its next frame: 0, or while a photo or video is being
        stylized, what is left of ``YIELD_INTERVAL_S`` since its last frame."""
        return max(0.0, YIELD_INTERVAL_S - (now - self.last)) if jobs_running else 0.0


@dataclass
class LiveModel:
    """What runs a style's live frames here: the pipeline, the style it is (a fast variant is a
    style of its own), whether it is the fast one, the working side (px) and its threading."""

    pipe: object
    name: str
    fast: bool
    side: int
    single: bool

    def frame_size(self, width: int, height: int) -> tuple[int, int]:
        """(W, H) a camera frame of ``width`` x ``height`` is stylized at."""
        h, w = working_size(height, width, self.side)
        return w, h


def live_model(ctx: AppContext, style: str) -> LiveModel:
    """The model a live frame of ``style`` runs, or ``gr.Error`` with the sentence why it cannot."""
    states, limits = ctx.states(), ctx.limits
    fast = fast_style(style, states) is not None
    pipe, name = ctx.pipeline(style, "live view", fast=fast)
    side, single = limits.live_full_side, False  # the full model: a fixed size
    if fast:
        side, single = ctx.live_sides.get(name, pipe, limits.live_max_side, limits.live_fps)
    return LiveModel(pipe, name, fast, side, single)


def camera_frame(frame, side: int) -> tuple[np.ndarray, tuple[int, int]]:
    """A webcam frame at most ``side`` px on its longer side: an (H, W, 3+) array (tests, the
    library), a JPEG's bytes (the page's socket), or what Gradio's stream sends
    (``{"url": "data:image/jpeg;base64,..."}``); a JPEG is decoded straight at the working size.
    Returns (RGB uint8 (h, w, 3), the frame's own (W, H))."""
    if isinstance(frame, np.ndarray):
        rgb = frame[..., :3]
        h, w = working_size(*rgb.shape[:2], side)
        if (h, w) != rgb.shape[:2]:
            rgb = np.asarray(Image.fromarray(np.ascontiguousarray(rgb)).resize((w, h), Image.BILINEAR))
        return np.array(rgb, dtype=np.uint8), (frame.shape[1], frame.shape[0])  # a writable copy (torch wants one)
    if isinstance(frame, bytes | bytearray):
        data = io.BytesIO(frame)
    elif (frame.get("url") or "").startswith("data:"):
        data = io.BytesIO(base64.b64decode(frame["url"].partition(",")[2]))
    else:
        data = frame.get("path")
    with Image.open(data) as image:
        size = image.size
        h, w = working_size(size[1], size[0], side)
        image.draft("RGB", (w, h))  # JPEG: decode at 1/2, 1/4 or 1/8 scale if that is still >= (w, h)
        image = image.convert("RGB")
        if image.size != (w, h):
            image = image.resize((w, h), Image.BILINEAR)
        return np.array(image), size


def jpeg_bytes(rgb: np.ndarray, quality: int = JPEG_QUALITY) -> bytes:
    """An (H, W, 3) uint8 frame as a JPEG (4 ms at 320 x 240 here; WebP would cost 20)."""
    data = io.BytesIO()
    Image.fromarray(rgb).save(data, "JPEG", quality=quality)
    return data.getvalue()


@dataclass
class LiveStep:
    """What became of one frame: the stylized frame (None when it did not run), the rate line's
    new text (None: unchanged), whether the stream must stop (its style cannot run: the text says
    why, once), and when it gave way to a photo or video job, the seconds until the next may run."""

    frame: np.ndarray | None = None
    sentence: str | None = None
    stopped: bool = False
    again_in: float = 0.0


def session_model(ctx: AppContext, style: str, session: LiveSession) -> LiveModel | LiveStep:
    """:func:`live_model` for a stream, or when ``style`` cannot run, the step that stops it: with
    the sentence why the first time, without it after that (never a toast a frame)."""
    try:
        model = live_model(ctx, style)
    except gr.Error as refusal:
        if session.refused == refusal.message:
            return LiveStep(stopped=True)
        log.info("live stream refused: %s", refusal.message)
        session.refused = refusal.message
        return LiveStep(sentence=f"**The live view stopped.** {refusal.message}", stopped=True)
    session.refused = ""
    return model


def live_step(ctx: AppContext, frame, style: str, session: LiveSession) -> LiveStep:
    """One webcam frame of ``session`` in ``style`` (see :func:`camera_frame` for what ``frame``
    may be)."""
    now = time.monotonic()
    again_in = session.wait(ctx.jobs_running, now)
    if again_in > 0:
        return LiveStep(again_in=again_in)  # photos and videos first
    model = session_model(ctx, style, session)
    if isinstance(model, LiveStep):
        return model
    rgb, camera = camera_frame(frame, model.side)
    decoded = time.monotonic()
    with threads(model.single):
        out = model.pipe.stylize_frames(rgb[None])[0]
    session.tick(time.monotonic())
    h, w = rgb.shape[:2]
    log.debug(
        "live frame %s: %d x %d from %d x %d in %.0f ms (decode and resize %.0f ms, model %.0f ms)",
        model.name,
        w,
        h,
        *camera,
        1000 * (session.last - now),
        1000 * (decoded - now),
        1000 * (session.last - decoded),
    )
    if session.last - session.said < RATE_EVERY_S and not ctx.jobs_running:
        return LiveStep(frame=out)
    session.said = session.last
    return LiveStep(frame=out, sentence=rate_sentence(ctx, model, session, w, h))


def rate_sentence(ctx: AppContext, model: LiveModel, session: LiveSession, width: int, height: int) -> str:
    """ "**11.8 frames per second** with the fast model (Makoto Shinkai (fast)) at 320 x 240 px."
    (Markdown), and whether the stream is slowed down for a photo or video job."""
    rate = session.fps(session.last)
    speed = f"**{rate:.1f} frames per second**" if rate is not None else "**Measuring the frame rate**"
    title = ctx.states()[model.name].title
    which = f"the fast model ({title})" if model.fast else f"the full {title} model"
    slow = " Slowed down while a photo or video is being stylized." if ctx.jobs_running else ""
    return f"{speed} with {which} at {pixels(width, height)}.{slow}"


def waiting_sentence(place: int) -> str:
    """The rate line while a stream waits for a live slot (``LiveTurns``)."""
    where = "you are next" if place == 1 else f"you are number {place} in line"
    return f"**Waiting for the live view:** {where}; your turn starts when the current one ends."
