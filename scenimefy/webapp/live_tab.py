"""The Live tab: the webcam in, the stylized stream out.

- The player (a ``gr.HTML`` running ``live_player.js``): the page's camera, frames sent as JPEGs
  over the app's WebSocket (``live_socket``) at the server's working size, one (or two) at a time,
  the stylized frames shown as they come back, the rate the server reaches under them.
- Gradio's streaming ``gr.Image`` is the fallback, shown only when the socket cannot connect (a
  proxy that does not pass WebSockets): the browser sends a frame every ``STREAM_EVERY_S`` and
  the server always works on the newest, so frames are dropped, never queued, when it is behind.
- Both run every frame through ``live_frames`` (model, working size, refusal said once, giving
  way to photo and video jobs, rate) and share the live slots (``LiveTurns``: ``Limits.live_sessions``
  streams at once, turns of ``Limits.live_seconds`` while someone waits).
- A style that cannot run: no Start (nor the fallback's Record), like Stylize; a stream that is
  running when its style stops working stops, said once, never in a toast a frame.
"""

from __future__ import annotations

import base64
from importlib import resources

import gradio as gr
import numpy as np

from scenimefy.webapp.context import AppContext, Limits, on_gpu
from scenimefy.webapp.live_frames import LiveSession, jpeg_bytes, live_step, waiting_sentence
from scenimefy.webapp.styles import StyleState, fast_style, unavailable_message

# Gradio's stream: the browser's frame interval, shorter than the model's time per frame at the
# working size (1/12 s or less), so a new frame is always waiting when the server finishes one (the
# newest replaces older ones), and not much shorter: every frame sent costs the browser a JPEG
# encode and the server a 50-100 kB request, even when it is dropped.
STREAM_EVERY_S = 0.05
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
PLAYER_JS = resources.files("scenimefy.webapp").joinpath("live_player.js").read_text(encoding="utf-8")
PLAYER_HTML = """<div class="live-player">
  <div class="live-views">
    <figure><video data-live="camera" muted playsinline></video><figcaption>Webcam</figcaption></figure>
    <figure><img data-live="result" id="live-frame" alt="The stylized webcam" hidden>
      <figcaption>Anime (live)</figcaption></figure>
  </div>
  <button data-live="button" id="live-start" disabled>Start</button>
  <p data-live="rate" id="live-rate"></p>
  <p data-live="state" id="live-state"></p>
</div>"""
PLAYER_CSS = f"""
.live-views {{ display: flex; gap: var(--spacing-lg); }}
figure {{ flex: 1; margin: 0; height: {HEIGHT}px; background: var(--block-background-fill);
  border: 1px solid var(--block-border-color); border-radius: var(--block-radius); position: relative; }}
video, img {{ width: 100%; height: calc(100% - 2em); object-fit: contain; display: block; }}
figcaption {{ position: absolute; bottom: 0.3em; left: 0.6em; color: var(--block-label-text-color); }}
button {{ margin-top: var(--spacing-lg); padding: 0.5em 2em; border-radius: var(--button-large-radius);
  background: var(--button-primary-background-fill); color: var(--button-primary-text-color); }}
button:disabled {{ opacity: 0.5; }}
p {{ margin: var(--spacing-md) 0 0; }}
"""


def live_note(style: str, states: dict[str, StyleState], limits: Limits, *, socket: bool = True) -> str:
    """What the Live tab will run for ``style``, and its limits (``socket``: the page's player is
    there, else Gradio's stream alone)."""
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
    button = "Start" if socket else "Record"
    return (
        f"{model} Press **{button}**. Each live turn lasts at most {limits.live_seconds:g} s: then, if "
        f"someone else is waiting for the live view ({sessions} at a time on this server), they get their turn "
        "and yours continues after it. The live view slows down while a photo or video is being stylized."
    )


def live_frame(ctx: AppContext, frame, style: str, session: LiveSession | None):
    """Gradio's stream: one webcam frame -> (the stylized frame, the rate sentence, the session)
    (:func:`live_frames.live_step` once this stream holds a live slot), ``gr.skip()`` for what does
    not change: the frame when it did not run, the sentence between its updates."""
    if frame is None:
        return gr.skip(), gr.skip(), session
    session = session or LiveSession()
    place = ctx.live_turns.admit(session.key)
    if place:
        said, session.place = session.place, place
        return gr.skip(), (gr.skip() if place == said else waiting_sentence(place)), session
    session.place = 0
    step = live_step(ctx, frame, style, session)
    out = step.frame if step.frame is not None else gr.skip()
    return out, (step.sentence if step.sentence is not None else gr.skip()), session


def jpeg_data(rgb: np.ndarray) -> dict:
    """An (H, W, 3) uint8 frame as the image value the page shows, a JPEG data URL: sent with the
    event's reply, where Gradio's own output path would write a file into its cache for every
    frame (hashed, kept an hour) that the page then fetches with a request of its own."""
    url = "data:image/jpeg;base64," + base64.b64encode(jpeg_bytes(rgb)).decode("ascii")
    return {"path": None, "url": url, "orig_name": "live.jpg", "mime_type": "image/jpeg", "is_stream": False}


def stream_frame(ctx: AppContext, frame, style: str, session: LiveSession | None):
    """The stream event's handler: :func:`live_frame` with the frame returned as a JPEG data URL
    (the event runs without Gradio's postprocessing)."""
    out, text, session = live_frame(ctx, frame, style, session)
    return (jpeg_data(out) if isinstance(out, np.ndarray) else out), text, session


def build_live_tab(ctx: AppContext, style: gr.Dropdown, *, opening: str, runnable: bool):
    """The tab's components and events (inside a ``gr.Blocks``); returns its (note, player, camera,
    rate): they follow the style (no Start or Record and no rate while it cannot run). Without the
    socket (``ctx.live_socket`` off: ZeroGPU, where a GPU is lent only inside Gradio's events) the
    page has Gradio's stream alone."""
    limits = ctx.limits

    with gr.Tab("Live"):
        note = gr.Markdown(live_note(opening, ctx.states(), limits, socket=ctx.live_socket), elem_id="live-note")
        player = gr.HTML(
            opening if runnable else "",  # the style it streams; "" while that cannot run (no Start)
            html_template=PLAYER_HTML,
            css_template=PLAYER_CSS,
            js_on_load=PLAYER_JS,
            visible=ctx.live_socket,
            elem_id="live-player",
        )
        with gr.Group(visible=not ctx.live_socket, elem_id="live-fallback") as fallback:
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
        use_stream = gr.Button("Use Gradio's stream", visible="hidden", elem_id="live-use-stream")
        use_stream.click(lambda: gr.update(visible=True), outputs=fallback, queue=False, api_visibility="private")
        stopped = gr.Button("Stopped", visible="hidden", elem_id="live-stopped")

        def stop(session: LiveSession | None):
            if session is not None:
                ctx.live_turns.leave(session.key)
            return "", None

        stopped.click(stop, inputs=session, outputs=[rate, session], queue=False, api_visibility="private")

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
            preprocess=False,  # the browser's JPEG is decoded in live_frames, straight at the working size
            postprocess=False,  # ... and the result goes back inside the reply (stream_frame)
            show_progress="hidden",
            show_progress_on=[result],
            api_visibility="private",
        )
    return note, player, camera, rate
