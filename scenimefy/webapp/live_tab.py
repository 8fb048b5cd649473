"""The Live tab: the webcam in, the stylized stream out (Gradio's streaming ``gr.Image``).

- Model: the selected style's fast (lite) variant when its weights can run here, at the largest
  size at which the model alone runs at ``Limits.live_fps`` frames a second on this server (timed
  on the first live frame, ``live_size``), at most ``Limits.live_max_side`` px; otherwise the full
  model at ``Limits.live_full_side`` px.
- Rate: the browser sends a frame every ``STREAM_EVERY_S``; the server always works on the newest
  one, so frames are dropped, never queued, when it is behind. The frames per second it reaches
  are measured on the server over the last frames and shown under the result.
- Lean: what is not the model is kept small. The browser's JPEG is decoded straight at the
  working size (``Image.draft``: the JPEG decoder scales by 1/2, 1/4 or 1/8 itself), not decoded
  at full size and then shrunk; the result goes back inside the reply as a JPEG data URL (no
  cache file, no request to fetch it); the rate sentence is updated once a second, not with every
  frame; the model runs on PyTorch's threads or on one, whichever measured faster here.
- Fairness: live streams have their own queue (``concurrency_id="live"``,
  ``Limits.live_sessions`` at once) and a turn lasts at most ``Limits.live_seconds``; then a viewer
  waiting for the live view gets the slot and the stream rejoins the queue. While a photo or a
  video is being stylized the live view drops to about one frame a second, leaving the CPU to it.
- A style that cannot run: the camera is disabled (like Stylize); a stream that is already
  running when its style stops working says so once under the result, never in a toast a frame.
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

from scenimefy.webapp.context import AppContext, Limits, on_gpu
from scenimefy.webapp.live_size import threads, working_size
from scenimefy.webapp.messages import pixels
from scenimefy.webapp.styles import StyleState, fast_style, unavailable_message

log = logging.getLogger("scenimefy.app")

# The browser's frame interval: shorter than the model's time per frame at the working size
# (1/12 s or less), so a new frame is always waiting when the server finishes one (the newest
# replaces older ones), and not much shorter: every frame sent costs the browser a JPEG encode and
# the server a 50-100 kB request, even when it is dropped.
STREAM_EVERY_S = 0.05
YIELD_INTERVAL_S = 1.0  # while an image / video job runs: at most one live frame per this
FPS_WINDOW = 10  # frames per second over this many frames ...
FPS_SECONDS = 5.0  # ... and no older than this
RATE_EVERY_S = 1.0  # the rate sentence changes at most this often (each change redraws it)
HEIGHT = 400  # px on the page, for the camera and the result alike
CAMERA = {"video": {"width": {"ideal": 640}, "height": {"ideal": 480}}}  # asked of the browser
# Gradio sends nothing to the server when the webcam's Stop is pressed: the page tells it (the
# hidden #live-stopped button), a moment later so that a frame still on its way cannot bring
# the last rate back.
WATCH_STOP_JS = """() => {
  document.addEventListener("click", (event) => {
    const button = event.target.closest("#live-camera button");
    if (button && button.innerText.trim().toLowerCase().startsWith("stop")) {
      setTimeout(() => document.querySelector("#live-stopped")?.click(), 600);
    }
  }, true);
}"""


@dataclass
class LiveSession:
    """One viewer's stream: when its last frames were done (server time), when the rate sentence
    was last sent, and whether a refusal was already logged."""

    done: deque = field(default_factory=lambda: deque(maxlen=FPS_WINDOW))
    last: float = 0.0
    said: float = 0.0
    refused: str = ""

    def tick(self, now: float) -> None:
        self.done.append(now)
        self.last = now

    def fps(self, now: float) -> float | None:
        recent = [t for t in self.done if now - t <= FPS_SECONDS]
        if len(recent) < 2 or recent[-1] <= recent[0]:
            return None
        return (len(recent) - 1) / (recent[-1] - recent[0])


def camera_frame(frame, side: int) -> tuple[np.ndarray, tuple[int, int]]:
    """A webcam frame at most ``side`` px on its longer side: an (H, W, 3+) array (tests, the
    library), or what the browser sends (``{"url": "data:image/jpeg;base64,..."}``), decoded
    straight at the working size. Returns (RGB uint8 (h, w, 3), the frame's own (W, H))."""
    if isinstance(frame, np.ndarray):
        rgb = frame[..., :3]
        h, w = working_size(*rgb.shape[:2], side)
        if (h, w) != rgb.shape[:2]:
            rgb = np.asarray(Image.fromarray(np.ascontiguousarray(rgb)).resize((w, h), Image.BILINEAR))
        return np.array(rgb, dtype=np.uint8), (frame.shape[1], frame.shape[0])  # a writable copy (torch wants one)
    url = frame.get("url") or ""
    if url.startswith("data:"):
        data = io.BytesIO(base64.b64decode(url.partition(",")[2]))
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


def live_note(style: str, states: dict[str, StyleState], limits: Limits) -> str:
    """What the Live tab will run for ``style``, and its limits."""
    state = states.get(style)
    if state is None:
        return "Choose a style."
    if not state.runnable:
        return f"**Not available.** {unavailable_message(style, states)}"
    fast = fast_style(style, states)
    if fast and limits.live_fps > 0:
        model = (
            f"Live runs the fast model of the {state.title} style, at the largest size this server runs at "
            f"{limits.live_fps:g} frames per second or more (up to {limits.live_max_side} px)."
        )
    elif fast:
        model = f"Live runs the fast model of the {state.title} style at up to {limits.live_max_side} px."
    else:
        model = (
            f"The {state.title} style has no fast model on this server, so Live runs the full model at "
            f"{limits.live_full_side} px: expect a few frames per second at most."
        )
    sessions = "one stream" if limits.live_sessions == 1 else f"{limits.live_sessions} streams"
    return (
        f"{model} Press **Record** to start. Each live turn lasts at most {limits.live_seconds:g} s: then, if "
        f"someone else is waiting for the live view ({sessions} at a time on this server), they get their turn "
        "and yours continues after it. The live view slows down while a photo or video is being stylized."
    )


def live_frame(ctx: AppContext, frame, style: str, session: LiveSession | None):
    """One webcam frame -> (the stylized frame, the frame-rate sentence, the session), with
    ``gr.skip()`` for what does not change: the frame when it is dropped (an image or video job
    runs and this stream had a frame less than ``YIELD_INTERVAL_S`` ago), the sentence between
    its updates. A style that cannot run is said once in the sentence (no toast per frame)."""
    if frame is None:
        return gr.skip(), gr.skip(), session
    session = session or LiveSession()
    now = time.monotonic()
    if ctx.jobs_running and now - session.last < YIELD_INTERVAL_S:
        return gr.skip(), gr.skip(), session  # photos and videos first
    states, limits = ctx.states(), ctx.limits
    fast = fast_style(style, states) is not None
    try:
        pipe, model = ctx.pipeline(style, "live view", fast=fast)
    except gr.Error as refusal:
        if session.refused == refusal.message:
            return gr.skip(), gr.skip(), session
        log.info("live stream refused: %s", refusal.message)
        session.refused = refusal.message
        return gr.skip(), f"**The live view stopped.** {refusal.message}", session
    session.refused = ""
    side, single = limits.live_full_side, False  # the full model: a fixed size
    if fast:
        side, single = ctx.live_sides.get(model, pipe, limits.live_max_side, limits.live_fps)
    rgb, camera = camera_frame(frame, side)
    decoded = time.monotonic()
    with threads(single):
        out = pipe.stylize_frames(rgb[None])[0]
    session.tick(time.monotonic())
    h, w = rgb.shape[:2]
    log.debug(
        "live frame %s: %d x %d from %d x %d in %.0f ms (decode and resize %.0f ms, model %.0f ms)",
        model,
        w,
        h,
        *camera,
        1000 * (session.last - now),
        1000 * (decoded - now),
        1000 * (session.last - decoded),
    )
    if session.last - session.said < RATE_EVERY_S and not ctx.jobs_running:
        return out, gr.skip(), session
    session.said = session.last
    rate = session.fps(session.last)
    speed = f"**{rate:.1f} frames per second**" if rate is not None else "**measuring the frame rate**"
    which = f"the fast model ({states[model].title})" if fast else f"the full {states[model].title} model"
    slow = " Slowed down while a photo or video is being stylized." if ctx.jobs_running else ""
    return out, f"{speed} with {which} at {pixels(w, h)}.{slow}", session


def jpeg_data(rgb: np.ndarray, quality: int = 85) -> dict:
    """An (H, W, 3) uint8 frame as the image value the page shows, a JPEG data URL: sent with the
    event's reply, where Gradio's own output path would write a file into its cache for every
    frame (hashed, kept an hour) that the page then fetches with a request of its own."""
    data = io.BytesIO()
    Image.fromarray(rgb).save(data, "JPEG", quality=quality)
    url = "data:image/jpeg;base64," + base64.b64encode(data.getvalue()).decode("ascii")
    return {"path": None, "url": url, "orig_name": "live.jpg", "mime_type": "image/jpeg", "is_stream": False}


def stream_frame(ctx: AppContext, frame, style: str, session: LiveSession | None):
    """The stream event's handler: :func:`live_frame` with the frame returned as a JPEG data URL
    (the event runs without Gradio's postprocessing)."""
    out, text, session = live_frame(ctx, frame, style, session)
    return (jpeg_data(out) if isinstance(out, np.ndarray) else out), text, session


def build_live_tab(ctx: AppContext, style: gr.Dropdown, *, opening: str, runnable: bool):
    """The tab's components and events (inside a ``gr.Blocks``); returns its (note, camera, rate):
    the three follow the style (the camera is disabled and the rate cleared while it cannot run)."""
    limits = ctx.limits

    with gr.Tab("Live"):
        note = gr.Markdown(live_note(opening, ctx.states(), limits), elem_id="live-note")
        with gr.Row():
            camera = gr.Image(
                label="Webcam",
                sources=["webcam"],
                streaming=True,
                type="numpy",
                webcam_options=gr.WebcamOptions(mirror=False, constraints=CAMERA),  # the scene as it is
                height=HEIGHT,
                interactive=runnable,
                elem_id="live-camera",
            )
            result = gr.Image(
                label="Anime (live)",
                format="jpeg",
                interactive=False,
                buttons=["fullscreen"],
                height=HEIGHT,
                elem_id="live-result",
            )
        rate = gr.Markdown(elem_id="live-fps")
        session = gr.State(None)
        stopped = gr.Button("Stopped", visible="hidden", elem_id="live-stopped")
        stopped.click(lambda: ("", None), outputs=[rate, session], queue=False, api_visibility="private")

        def next_frame(frame, style: str, session: LiveSession | None):
            return stream_frame(ctx, frame, style, session)

        camera.stream(
            on_gpu(next_frame, seconds=10),
            inputs=[camera, style, session],
            outputs=[result, rate, session],
            time_limit=limits.live_seconds,
            stream_every=STREAM_EVERY_S,
            concurrency_limit=limits.live_sessions,
            concurrency_id="live",
            preprocess=False,  # the browser's JPEG is decoded in live_frame, straight at the working size
            postprocess=False,  # ... and the result goes back inside the reply (stream_frame)
            show_progress="hidden",
            show_progress_on=[result],
            api_visibility="private",
        )
    return note, camera, rate
