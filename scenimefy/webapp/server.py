"""The page and its server: ``build_demo`` (the style selector above the Image, Video and Live
tabs), ``launch`` (queue and upload limits), and the command line (``parse_args``, ``main``)."""

from __future__ import annotations

import argparse
import logging
import os
from collections.abc import Sequence
from pathlib import Path

import gradio as gr

from scenimefy.hub import styles as registry
from scenimefy.webapp.context import AppContext, Limits
from scenimefy.webapp.image_tab import build_image_tab
from scenimefy.webapp.live_socket import live_socket_route
from scenimefy.webapp.live_tab import WATCH_STOP_JS, build_live_tab, live_note
from scenimefy.webapp.media import examples_dirs
from scenimefy.webapp.styles import (
    PANEL_TITLE,
    default_style,
    fast_style,
    style_choices,
    style_note,
    style_states,
    styles_panel,
)
from scenimefy.webapp.video_tab import build_video_tab

log = logging.getLogger("scenimefy.app")

DEFAULTS = Limits()
DEFAULT_MAX_FILE_SIZE = "200mb"
DEFAULT_MAX_QUEUE = 32
HEADER = (
    "# Scenimefy\nTurn real photos and videos into anime scenes "
    "([paper](https://arxiv.org/abs/2308.12968), ICCV 2023). "
    "Weights derived from the authors' release are for non-commercial use (S-Lab License 1.0)."
)


def build_demo(
    device: str = "cpu",
    max_side: int = DEFAULTS.max_side,
    *,
    video_max_side: int = DEFAULTS.video_max_side,
    video_seconds: float = DEFAULTS.video_seconds,
    live_max_side: int = DEFAULTS.live_max_side,
    live_fps: float = DEFAULTS.live_fps,
    live_full_side: int = DEFAULTS.live_full_side,
    live_seconds: float = DEFAULTS.live_seconds,
    live_sessions: int = DEFAULTS.live_sessions,
    examples: str | os.PathLike | Sequence[str | os.PathLike] | None = None,
    concurrency_limit: int = 1,
    preload: bool = False,
) -> gr.Blocks:
    """The app. ``max_side`` / ``video_max_side`` cap the working resolution of images / video
    frames, ``video_seconds`` the clip length per request, ``live_*`` the Live tab (the largest
    working size with the fast model and the rate it must reach there, 0 for always that size; the
    size with the full model; seconds per turn; streams at once), ``concurrency_limit``
    the requests of each tab run at once (images, videos and live streams queue separately),
    ``preload`` loads the opening style (and its fast variant) in the background at once. Queue
    size and upload limits are set at launch (:func:`launch`)."""
    limits = Limits(
        max_side=max_side,
        video_max_side=min(video_max_side, max_side),
        video_seconds=video_seconds,
        live_max_side=live_max_side,
        live_fps=live_fps,
        live_full_side=live_full_side,
        live_seconds=live_seconds,
        live_sessions=live_sessions,
        concurrency=concurrency_limit,
    )
    ctx = AppContext(device, limits, style_states())
    states = ctx.states()
    example_folders = examples_dirs(examples)
    opening = default_style(states)
    for state in states.values():
        if state.runnable:
            continue
        operator = state.operator.replace("`", "")
        if state.variant_of:  # the app still works without it: Live runs the full model, smaller
            log.info("fast variant %r of %r %s", state.name, state.variant_of, operator)
        else:
            log.warning("style %r (%s) %s", state.name, state.title, operator)
    if preload:
        for name in (opening, fast_style(opening, states)):
            if name and states[name].status == "ready":
                ctx.cache.preload(name)
    runnable, fast_shown = states[opening].runnable, fast_style(opening, states) is not None

    with gr.Blocks(title="Scenimefy", delete_cache=(3600, 3600)) as demo:
        gr.Markdown(HEADER)
        with gr.Row(equal_height=True):
            style = gr.Dropdown(choices=style_choices(states), value=opening, label="Style", elem_id="style", scale=1)
            with gr.Column(scale=2):
                note = gr.Markdown(style_note(opening, states), elem_id="style-note")
        with gr.Accordion(PANEL_TITLE, open=False):
            panel = gr.Markdown(styles_panel(states), elem_id="style-status")
        run, fast = build_image_tab(ctx, style, example_folders, runnable=runnable, fast_shown=fast_shown)
        vrun, vfast = build_video_tab(ctx, style, example_folders, runnable=runnable, fast_shown=fast_shown)
        lnote, player, camera, rate = build_live_tab(ctx, style, opening=opening, runnable=runnable)

        def refresh_styles(name: str):
            now = ctx.states()
            can_run = name in now and now[name].runnable
            has_fast = fast_style(name, now) is not None
            fast_update = gr.update(visible=has_fast, value=False)
            return (
                gr.update(choices=style_choices(now)),
                style_note(name, now),
                styles_panel(now),
                gr.update(interactive=can_run),
                gr.update(interactive=can_run),
                fast_update,
                fast_update,
                live_note(name, now, limits, socket=ctx.live_socket),
                name if can_run else "",  # the live player: no Start while the style cannot run
                gr.update(interactive=can_run),  # nor Record on Gradio's stream
                gr.skip() if can_run else "",  # nor a rate from a stream that stopped with it
            )

        followers = [note, panel, run, vrun, fast, vfast, lnote, player, camera, rate]
        style.change(
            lambda name: refresh_styles(name)[1:],
            inputs=style,
            outputs=followers,
            api_visibility="private",
            show_progress="hidden",
        )
        demo.load(None, js=WATCH_STOP_JS)  # after Stop, the Live rate is cleared
        demo.load(  # the styles' availability now, not when the server started
            refresh_styles,
            inputs=style,
            outputs=[style, *followers],
            api_visibility="private",
            queue=False,
            show_progress="hidden",
        )
    demo.scenimefy_allowed_paths = [str(p) for p in example_folders]  # for launch()
    demo.scenimefy_routes = [live_socket_route(ctx)] if ctx.live_socket else []  # ... served beside the page
    return demo


def launch(
    demo: gr.Blocks,
    *,
    host: str = "127.0.0.1",
    port: int | None = 7860,
    max_queue: int = DEFAULT_MAX_QUEUE,
    max_file_size: str | int | None = DEFAULT_MAX_FILE_SIZE,
    block: bool = True,
    live_socket: bool = True,
    **kwargs,
):
    """Queue (``max_queue`` waiting requests; more are told the queue is full) and serve, with the
    Live tab's WebSocket beside the page (``live_socket=False``: without it, as behind a proxy that
    does not pass WebSockets; the page then uses Gradio's stream)."""
    demo.queue(max_size=max_queue, default_concurrency_limit=1)
    routes = getattr(demo, "scenimefy_routes", []) if live_socket else []
    return demo.launch(
        app_kwargs={"routes": routes},  # FastAPI(routes=...): in place before the server starts
        server_name=host,
        server_port=port,
        max_file_size=max_file_size,
        show_error=True,
        allowed_paths=getattr(demo, "scenimefy_allowed_paths", []),
        prevent_thread_lock=not block,
        **kwargs,
    )


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Scenimefy web app (Gradio): photos, videos and the webcam into anime scenes."
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=7860)
    parser.add_argument("--device", default="cpu", help="torch device, e.g. cpu, cuda")
    parser.add_argument("--max-side", type=int, default=DEFAULTS.max_side, help="image working resolution cap (px)")
    parser.add_argument("--video-max-side", type=int, default=DEFAULTS.video_max_side, help="video frame size cap (px)")
    parser.add_argument(
        "--video-seconds", type=float, default=DEFAULTS.video_seconds, help="longest clip part per request"
    )
    parser.add_argument(
        "--live-max-side",
        type=int,
        default=DEFAULTS.live_max_side,
        help="Live tab: largest frame size with a fast model (px)",
    )
    parser.add_argument(
        "--live-fps",
        type=float,
        default=DEFAULTS.live_fps,
        help="Live tab: the largest frame size (up to --live-max-side) at which the fast model alone reaches "
        "this rate here, measured on the first frame; 0: always --live-max-side",
    )
    parser.add_argument(
        "--live-full-side",
        type=int,
        default=DEFAULTS.live_full_side,
        help="Live tab frame size when the style has no fast model (the full model runs; px)",
    )
    parser.add_argument(
        "--live-seconds", type=float, default=DEFAULTS.live_seconds, help="longest live turn before others get theirs"
    )
    parser.add_argument("--live-sessions", type=int, default=DEFAULTS.live_sessions, help="live streams at once")
    parser.add_argument(
        "--examples",
        action="append",
        default=[],
        help="folder of example photos / videos, repeatable (default: $SCENIMEFY_EXAMPLES)",
    )
    parser.add_argument("--max-queue", type=int, default=DEFAULT_MAX_QUEUE, help="waiting requests before 'queue full'")
    parser.add_argument("--max-file-size", default=DEFAULT_MAX_FILE_SIZE, help="upload limit, e.g. 200mb")
    parser.add_argument("--concurrency", type=int, default=1, help="requests per tab running at once")
    parser.add_argument(
        "--weights",
        action="append",
        default=[],
        metavar="STYLE=PATH",
        help="weights for a style: a translator folder, an authors' *_net_G.pth file or a Hub repo id "
        "(repeatable; shinkai-lite=PATH gives the fast model)",
    )
    parser.add_argument("--no-preload", action="store_true", help="load the opening style on first use, not at start")
    parser.add_argument(
        "--log-level",
        default="info",
        choices=["debug", "info", "warning"],
        help="server log detail (debug: every frame)",
    )
    args = parser.parse_args(argv)
    known = registry.styles()
    for item in args.weights:
        name, sep, source = item.partition("=")
        if not sep or not name or not source:
            parser.error(f"--weights takes STYLE=PATH, e.g. --weights shinkai=path/to/Shinkai_net_G.pth; got {item!r}")
        if name.lower() not in known:
            parser.error(f"--weights {item}: {name!r} is not a style (known: {', '.join(sorted(known))})")
        os.environ[registry.env_var(name)] = source
    for folder in args.examples:
        if not Path(folder).is_dir():
            parser.error(f"--examples {folder}: not a folder")
    return args


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for noisy in ("httpx", "httpcore", "urllib3"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLogger().level))
    demo = build_demo(
        device=args.device,
        max_side=args.max_side,
        video_max_side=args.video_max_side,
        video_seconds=args.video_seconds,
        live_max_side=args.live_max_side,
        live_fps=args.live_fps,
        live_full_side=args.live_full_side,
        live_seconds=args.live_seconds,
        live_sessions=args.live_sessions,
        examples=args.examples,
        concurrency_limit=args.concurrency,
        preload=not args.no_preload,
    )
    launch(demo, host=args.host, port=args.port, max_queue=args.max_queue, max_file_size=args.max_file_size)
