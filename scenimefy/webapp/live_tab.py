"""The Live tab: the webcam in, the stylized stream out (Gradio's streaming ``gr.Image``).

- Model: the selected style's fast (lite) variant when its weights can run here, at up to
  ``Limits.live_max_side`` px; otherwise the full model at ``Limits.live_full_side`` px.
- Rate: the browser sends a frame every 0.1 s; the server always works on the newest one, so
  frames are dropped, never queued, when it is behind. The frames per second it reaches are
  measured on the server over the last frames and shown under the result.
- Fairness: live streams have their own queue (``concurrency_id="live"``,
  ``Limits.live_sessions`` at once) and a turn lasts at most ``Limits.live_seconds``; then a viewer
  waiting for the live view gets the slot and the stream rejoins the queue. While a photo or a
  video is being stylized the live view drops to about one frame a second, leaving the CPU to it.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from dataclasses import dataclass, field

import gradio as gr
import numpy as np
from PIL import Image

from scenimefy.webapp.context import AppContext, Limits, on_gpu
from scenimefy.webapp.messages import pixels
from scenimefy.webapp.styles import StyleState, fast_style, unavailable_message

log = logging.getLogger("scenimefy.app")

STREAM_EVERY_S = 0.1  # the browser's frame interval (at most 10 frames a second go up)
YIELD_INTERVAL_S = 1.0  # while an image / video job runs: at most one live frame per this
FPS_WINDOW = 10  # frames per second over this many frames ...
FPS_SECONDS = 5.0  # ... and no older than this
HEIGHT = 400  # px on the page, for the camera and the result alike
CAMERA = {"video": {"width": {"ideal": 640}, "height": {"ideal": 480}}}  # asked of the browser


@dataclass
class LiveSession:
    """One viewer's stream: when its last frames were done (server time) and at what size."""

    done: deque = field(default_factory=lambda: deque(maxlen=FPS_WINDOW))
    last: float = 0.0

    def tick(self, now: float) -> None:
        self.done.append(now)
        self.last = now

    def fps(self, now: float) -> float | None:
        recent = [t for t in self.done if now - t <= FPS_SECONDS]
        if len(recent) < 2 or recent[-1] <= recent[0]:
            return None
        return (len(recent) - 1) / (recent[-1] - recent[0])


def working_size(height: int, width: int, side: int) -> tuple[int, int]:
    """(H, W) at most ``side`` on the longer side, multiples of 8 (any lite depth up to 3 levels)."""
    scale = min(1.0, side / max(height, width))
    return max(16, round(height * scale / 8) * 8), max(16, round(width * scale / 8) * 8)


def live_note(style: str, states: dict[str, StyleState], limits: Limits) -> str:
    """What the Live tab will run for ``style``, and its limits."""
    state = states.get(style)
    if state is None:
        return "Choose a style."
    if not state.runnable:
        return f"**Not available.** {unavailable_message(style, states)}"
    fast = fast_style(style, states)
    if fast:
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


def live_frame(ctx: AppContext, frame: np.ndarray | None, style: str, session: LiveSession | None):
    """One webcam frame -> (the stylized frame, the frame-rate sentence, the session), or
    ``gr.skip()`` for the first two when the frame is dropped (an image or video job runs and
    this stream had a frame less than ``YIELD_INTERVAL_S`` ago)."""
    if frame is None:
        return gr.skip(), gr.skip(), session
    session = session or LiveSession()
    now = time.monotonic()
    if ctx.jobs_running and now - session.last < YIELD_INTERVAL_S:
        return gr.skip(), gr.skip(), session  # photos and videos first
    states, limits = ctx.states(), ctx.limits
    fast = fast_style(style, states) is not None
    pipe, model = ctx.pipeline(style, "live view", fast=fast)
    h, w = working_size(*frame.shape[:2], limits.live_max_side if fast else limits.live_full_side)
    rgb = frame[..., :3]
    if (h, w) != rgb.shape[:2]:
        rgb = Image.fromarray(np.ascontiguousarray(rgb)).resize((w, h), Image.BILINEAR)
    rgb = np.array(rgb, dtype=np.uint8)  # a writable copy (torch wants one)
    out = pipe.stylize_frames(rgb[None])[0]
    session.tick(time.monotonic())
    log.debug("live frame %s: %d x %d in %.0f ms", model, w, h, 1000 * (session.last - now))
    rate = session.fps(session.last)
    speed = f"**{rate:.1f} frames per second**" if rate is not None else "**measuring the frame rate**"
    which = f"the fast model ({states[model].title})" if fast else f"the full {states[model].title} model"
    slow = " Slowed down while a photo or video is being stylized." if ctx.jobs_running else ""
    return out, f"{speed} with {which} at {pixels(w, h)}.{slow}", session


def build_live_tab(ctx: AppContext, style: gr.Dropdown, *, opening: str) -> gr.Markdown:
    """The tab's components and events (inside a ``gr.Blocks``); returns its note (it follows the style)."""
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

        def next_frame(frame, style: str, session: LiveSession | None):
            return live_frame(ctx, frame, style, session)

        camera.stream(
            on_gpu(next_frame, seconds=10),
            inputs=[camera, style, session],
            outputs=[result, rate, session],
            time_limit=limits.live_seconds,
            stream_every=STREAM_EVERY_S,
            concurrency_limit=limits.live_sessions,
            concurrency_id="live",
            show_progress="hidden",
            show_progress_on=[result],
            api_visibility="private",
        )
    return note
