"""The Live tab's own transport: a WebSocket on the app's server (``LIVE_SOCKET_PATH``) that carries
binary JPEG frames both ways, without Gradio's queue, event stream and base64 data URLs (about
100 ms a frame on a 2-core CPU; docs/app.md). The page's player (``live_player.js``) falls back
to Gradio's stream when it cannot connect.

The conversation, one socket per stream:

- page: ``{"style": NAME, "width": W, "height": H}`` (the camera's size), at the start and when
  the style changes; server: ``{"size": [w, h]}``, the working size to send frames at, or
  ``{"stopped": SENTENCE}`` when the style cannot run.
- page: a frame, a JPEG of ``w`` x ``h``; server: the stylized frame (a JPEG), or
  ``{"again_in": SECONDS}`` when it did not run (it gave way to a photo or video job, or waited for
  a live slot): send a fresh frame then. Between them ``{"rate": SENTENCE}`` (once a second),
  ``{"waiting": SENTENCE}`` (in line for a live slot) and ``{"stopped": SENTENCE}``.

The page sends a frame when the reply to one arrives (``IN_FLIGHT`` at a time), so frames never
queue: each one shown is at most one frame old. Everything about a frame (model, size, refusal,
giving way, rate) is ``live_frames``, as for Gradio's stream; the live slots are ``LiveTurns``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time

from starlette.concurrency import run_in_threadpool
from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from scenimefy.webapp.context import AppContext
from scenimefy.webapp.live_frames import LiveSession, LiveStep, jpeg_bytes, live_step, session_model, waiting_sentence

log = logging.getLogger("scenimefy.app")

LIVE_SOCKET_PATH = "/scenimefy/live"  # beside Gradio's own routes (/gradio_api/...), never among them
WAIT_POLL_S = 0.2  # in line for a live slot: how often it is checked ...
WAIT_SAY_S = 1.0  # ... and said again (a send also notices a page that went away)


def live_socket_route(ctx: AppContext) -> WebSocketRoute:
    """The route, for the FastAPI app that serves the page (``launch`` hands it to Gradio's)."""

    async def endpoint(socket: WebSocket) -> None:
        await socket.accept()
        stream = LiveStream(ctx, socket)
        try:
            await stream.run()
        except (WebSocketDisconnect, OSError, RuntimeError):  # the page went away mid-send
            pass
        finally:
            ctx.live_turns.leave(stream.session.key)
            stream.log_end()

    return WebSocketRoute(LIVE_SOCKET_PATH, endpoint)


class LiveStream:
    """One page's stream over the socket."""

    def __init__(self, ctx: AppContext, socket: WebSocket) -> None:
        self.ctx, self.socket = ctx, socket
        self.session = LiveSession()
        self.style = ""
        self.frames = 0
        self.began = time.monotonic()

    async def run(self) -> None:
        while True:
            message = await self.socket.receive()
            if message["type"] == "websocket.disconnect":
                return
            if message.get("text") is not None:
                await self.hello(json.loads(message["text"]))
            elif message.get("bytes") is not None:
                await self.frame(message["bytes"])

    async def hello(self, hello: dict) -> None:
        """The style and the camera's size: the working size, or why the style cannot run."""
        self.style = str(hello.get("style", ""))
        model = await run_in_threadpool(session_model, self.ctx, self.style, self.session)
        if isinstance(model, LiveStep):
            await self.socket.send_json({"stopped": model.sentence or ""})
            return
        w, h = model.frame_size(int(hello.get("width") or 640), int(hello.get("height") or 480))
        log.info("live stream (socket) of %s: %s, frames at %d x %d", self.style, model.name, w, h)
        await self.socket.send_json({"size": [w, h]})

    async def frame(self, data: bytes) -> None:
        if not await self.my_turn():
            await self.socket.send_json({"again_in": 0})  # this frame waited: a fresh one instead
            return
        step, jpeg = await run_in_threadpool(self.stylize, data)
        if jpeg is not None:
            self.frames += 1
            await self.socket.send_bytes(jpeg)
        if step.stopped:
            await self.socket.send_json({"stopped": step.sentence or ""})
        elif step.sentence:
            await self.socket.send_json({"rate": step.sentence})
        if jpeg is None and not step.stopped:
            await self.socket.send_json({"again_in": round(step.again_in, 3)})

    def stylize(self, data: bytes) -> tuple[LiveStep, bytes | None]:
        step = live_step(self.ctx, data, self.style, self.session)
        return step, (jpeg_bytes(step.frame) if step.frame is not None else None)

    async def my_turn(self) -> bool:
        """True when this stream holds a live slot at once; else it waits in line (saying so) until
        it gets one, and returns False."""
        turns, key = self.ctx.live_turns, self.session.key
        place = turns.admit(key)
        if place == 0:
            return True
        said = 0.0
        while place:
            if place != self.session.place or time.monotonic() - said > WAIT_SAY_S:
                await self.socket.send_json({"waiting": waiting_sentence(place)})
                said, self.session.place = time.monotonic(), place
            await asyncio.sleep(WAIT_POLL_S)
            place = turns.admit(key)
        self.session.place = 0
        return False

    def log_end(self) -> None:
        seconds = time.monotonic() - self.began
        style = self.style or "no style"
        log.info("live stream (socket) of %s ended: %d frames in %.0f s", style, self.frames, seconds)
