"""Scenimefy web app (Gradio): upload a photo, pick a style, get an anime scene.

    python app.py [--host 127.0.0.1] [--port 7860] [--weights shinkai=PATH ...]

Styles come from the registry (``scenimefy styles``); a style whose weights are not available
is shown as such and explains how to provide them instead of failing with a traceback.
"""

from __future__ import annotations

import argparse
import os
import threading

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import scenimefy  # noqa: E402,F401  (torchvision shim before gradio's imports)
import gradio as gr  # noqa: E402

from scenimefy import styles  # noqa: E402
from scenimefy.hub import WeightsUnavailableError  # noqa: E402
from scenimefy.images import InvalidImageError  # noqa: E402
from scenimefy.pipeline import ScenimefyPipeline  # noqa: E402

DEFAULT_MAX_SIDE = 1024


class PipelineCache:
    """One pipeline per style, loaded on first use and shared by all requests."""

    def __init__(self, device: str = "cpu") -> None:
        self.device = device
        self._pipes: dict[str, ScenimefyPipeline] = {}
        self._lock = threading.Lock()

    def get(self, style: str) -> ScenimefyPipeline:
        with self._lock:
            if style not in self._pipes:
                self._pipes[style] = ScenimefyPipeline.from_pretrained(style=style, device=self.device)
            return self._pipes[style]


def style_choices() -> list[tuple[str, str]]:
    labels = {"ready": "", "downloadable": " (downloads on first use)", "needs weights": " (needs weights)"}
    return [(f"{s.title}{labels[styles.style_status(name)]}", name) for name, s in sorted(styles.styles().items())]


def build_demo(device: str = "cpu", max_side: int = DEFAULT_MAX_SIDE) -> gr.Blocks:
    cache = PipelineCache(device)

    def stylize(image, style: str):
        if image is None:
            raise gr.Error("Upload a photo first.")
        try:
            pipe = cache.get(style)
            return pipe(image, max_side=max_side)
        except WeightsUnavailableError as err:
            raise gr.Error(str(err).replace("\n", "<br>")) from None
        except InvalidImageError as err:
            raise gr.Error(f"That image cannot be used: {err}") from None

    with gr.Blocks(title="Scenimefy") as demo:
        gr.Markdown(
            "# Scenimefy\nTurn a real photo into an anime scene "
            "([paper](https://arxiv.org/abs/2308.12968), ICCV 2023)."
        )
        with gr.Row():
            with gr.Column():
                source = gr.Image(label="Photo", type="pil", image_mode=None, sources=["upload", "clipboard"])
                style = gr.Dropdown(choices=style_choices(), value="shinkai", label="Style")
                run = gr.Button("Stylize", variant="primary")
            result = gr.Image(label="Anime scene", type="pil", format="png")
        run.click(stylize, inputs=[source, style], outputs=result, api_name="stylize")
    return demo


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=7860)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--max-side", type=int, default=DEFAULT_MAX_SIDE, help="working resolution cap")
    parser.add_argument(
        "--weights", action="append", default=[], metavar="STYLE=SOURCE", help="weights for a style (folder, .pth, repo id)"
    )
    args = parser.parse_args()
    for item in args.weights:
        name, sep, source = item.partition("=")
        if not sep:
            parser.error(f"--weights takes STYLE=SOURCE, got {item!r}")
        os.environ[styles.env_var(name)] = source
    demo = build_demo(device=args.device, max_side=args.max_side)
    demo.queue(default_concurrency_limit=1, max_size=32).launch(server_name=args.host, server_port=args.port)


if __name__ == "__main__":
    main()
