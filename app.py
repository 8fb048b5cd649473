"""Scenimefy web app (Gradio): photos and videos into anime scenes.

    python app.py [--host 127.0.0.1] [--port 7860] [--weights shinkai=PATH ...] [--examples DIR]

Image tab: upload / webcam / clipboard, style, stylization strength, keep-original-colours,
resolution cap, a before/after slider and a PNG download. Video tab: upload, the same options
plus temporal stabilisation and a preview length, a frame progress bar, the result with its
sound. Styles come from the registry (``scenimefy styles``); one whose weights are missing is
shown as such and explains how to provide them. ``build_demo`` is the factory the tests and the
Hugging Face Space (``spaces/``) call; docs/app.md describes the options and limits.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import gradio as gr
import numpy as np
from PIL import Image

import scenimefy  # noqa: F401  (torchvision shim before gradio's imports)
from scenimefy.data.images import IMAGE_SUFFIXES, InvalidImageError, load_image
from scenimefy.hub import styles
from scenimefy.hub.convert import CheckpointError
from scenimefy.hub.download import WeightsUnavailableError
from scenimefy.inference.pipeline import MIN_SIDE, ScenimefyPipeline
from scenimefy.inference.video import stylize_video
from scenimefy.inference.video_io import VideoError, probe_video

DEFAULT_MAX_SIDE = 1024  # image working resolution cap (longer side)
DEFAULT_VIDEO_MAX_SIDE = 512  # video frames are scaled to this; every frame runs the network
DEFAULT_VIDEO_SECONDS = 10  # longest part of a clip one request may stylize
DEFAULT_MAX_FILE_SIZE = "200mb"
DEFAULT_MAX_QUEUE = 32
VIDEO_SUFFIXES = {".mp4", ".mov", ".mkv", ".webm", ".m4v", ".avi"}
_OUTPUT_TTL_S = 3600  # rendered videos older than this are removed from the app's scratch folder


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


def style_status_markdown() -> str:
    """One line per style: ready / downloads on first use / how to provide its weights."""
    lines = []
    for name, style in sorted(styles.styles().items()):
        status = styles.style_status(name)
        if status == "ready":
            lines.append(f"- **{style.title}**: ready")
        elif status == "downloadable":
            lines.append(f"- **{style.title}**: downloads on first use")
        else:
            lines.append(
                f"- **{style.title}**: needs weights: start the app with `--weights {name}=<folder | .pth | repo id>` "
                f"or set `{styles.env_var(name)}`"
            )
    return "\n".join(lines)


# --------------------------------------------------------------------------- image adjustments


def keep_colours(original: np.ndarray, stylized: np.ndarray) -> np.ndarray:
    """The stylized luminance with the original's colour: Y of ``stylized``, Cb/Cr of ``original``.

    Both are (..., H, W, 3) uint8 RGB of one size; YCbCr is JPEG's full-range BT.601, so the
    anime shading and line work stay while hues and saturation are the photo's.
    """
    rgb2ycc = np.array([[0.299, 0.587, 0.114], [-0.168736, -0.331264, 0.5], [0.5, -0.418688, -0.081312]])
    ycc2rgb = np.linalg.inv(rgb2ycc)
    y = stylized.astype(np.float32) @ rgb2ycc[0].astype(np.float32)
    chroma = original.astype(np.float32) @ rgb2ycc[1:].T.astype(np.float32)
    ycc = np.concatenate([y[..., None], chroma], axis=-1)
    return np.clip(np.rint(ycc @ ycc2rgb.T.astype(np.float32)), 0, 255).astype(np.uint8)


def blend(original: np.ndarray, stylized: np.ndarray, strength: float) -> np.ndarray:
    """``strength`` 1 = the stylized image, 0 = the original, linear in between."""
    if strength >= 1.0:
        return stylized
    mixed = original.astype(np.float32) * (1.0 - strength) + stylized.astype(np.float32) * strength
    return np.clip(np.rint(mixed), 0, 255).astype(np.uint8)


def adjust(original: np.ndarray, stylized: np.ndarray, strength: float, colours: bool) -> np.ndarray:
    """Keep-colours then strength, on RGB; an alpha channel of ``stylized`` is kept as it is."""
    alpha = stylized[..., 3:] if stylized.shape[-1] == 4 else None
    rgb = stylized[..., :3]
    if colours:
        rgb = keep_colours(original[..., :3], rgb)
    rgb = blend(original[..., :3], rgb, strength)
    return np.concatenate([rgb, alpha], axis=-1) if alpha is not None else rgb


# --------------------------------------------------------------------------- handlers


def readable_uploads(component: gr.Image) -> gr.Image:
    """Make ``component`` answer an unreadable upload with a sentence instead of Gradio's
    "could not preprocess" error (Gradio passes a ``gr.Error`` from preprocessing through as is).

    The instance's method is wrapped rather than subclassing ``gr.Image``: Gradio writes a .pyi
    stub next to the module of every Component subclass."""
    preprocess = component.preprocess

    def checked(payload):
        try:
            return preprocess(payload)
        except gr.Error:
            raise
        except Exception:  # PIL could not open it
            name = getattr(payload, "orig_name", None) or "the file"
            raise gr.Error(
                f"{name} is not an image this app can read (JPEG, PNG, WebP, BMP, ...).", title="Bad image"
            ) from None

    component.preprocess = checked
    return component


def _friendly(err: Exception) -> gr.Error:
    """A user-facing message for a known failure (never a traceback)."""
    if isinstance(err, (WeightsUnavailableError, CheckpointError)):
        return gr.Error(str(err).replace("\n", "<br>"), title="Weights needed")
    if isinstance(err, InvalidImageError):
        return gr.Error(f"That image cannot be used: {err}", title="Bad image")
    if isinstance(err, VideoError):
        return gr.Error(f"That video cannot be used: {err}", title="Bad video")
    if isinstance(err, KeyError):  # unknown style name through the API
        return gr.Error(str(err.args[0] if err.args else err), title="Unknown style")
    return gr.Error(f"Something went wrong: {type(err).__name__}: {err}")


def _working_side(requested: float | None, server_cap: int) -> int:
    side = int(requested or server_cap)
    return max(MIN_SIDE, min(side, server_cap))


def _scratch_dir() -> Path:
    """The app's folder for rendered videos; old renders are removed on each request."""
    folder = Path(tempfile.gettempdir()) / "scenimefy-app"
    folder.mkdir(exist_ok=True)
    now = time.time()
    for old in folder.iterdir():
        try:
            if now - old.stat().st_mtime > _OUTPUT_TTL_S:
                shutil.rmtree(old) if old.is_dir() else old.unlink()
        except OSError:
            pass
    return folder


def _examples(folder: Path | None, suffixes: set[str]) -> list[str]:
    if folder is None or not folder.is_dir():
        return []
    return [str(p) for p in sorted(folder.iterdir()) if p.suffix.lower() in suffixes]


def examples_dir(explicit: str | os.PathLike | None = None) -> Path | None:
    """``--examples`` / ``build_demo(examples=...)``, else ``$SCENIMEFY_EXAMPLES``, else none."""
    value = explicit or os.environ.get("SCENIMEFY_EXAMPLES")
    return Path(value).resolve() if value else None


def build_demo(
    device: str = "cpu",
    max_side: int = DEFAULT_MAX_SIDE,
    *,
    video_max_side: int = DEFAULT_VIDEO_MAX_SIDE,
    video_seconds: float = DEFAULT_VIDEO_SECONDS,
    examples: str | os.PathLike | None = None,
    concurrency_limit: int = 1,
) -> gr.Blocks:
    """The app. ``max_side`` / ``video_max_side`` cap the working resolution of images / video
    frames, ``video_seconds`` the clip length per request, ``concurrency_limit`` the requests of
    each tab run at once (images and videos queue separately). Queue size and upload limits are
    set at launch (:func:`launch`)."""
    cache = PipelineCache(device)
    example_folder = examples_dir(examples)
    video_max_side = min(video_max_side, max_side)

    def stylize(image_path, style: str, strength: float = 1.0, colours: bool = False, side: float | None = None):
        if image_path is None:
            raise gr.Error("Upload a photo first (or take one with the webcam / paste one).", title="No photo")
        try:
            loaded = load_image(image_path)
            pipe = cache.get(style)
            cap = _working_side(side, max_side)
            if max(loaded.rgb.shape[:2]) > cap:
                gr.Warning(f"Stylized at {cap} px on the longer side, then scaled back to the photo's size.")
            styled = pipe.stylize_loaded([loaded], max_side=cap)[0]
        except Exception as err:  # every failure becomes a message in the page
            raise _friendly(err) from None
        return Image.fromarray(adjust(loaded.rgb, styled, float(strength), bool(colours)))

    def compare(image_path, result):
        if image_path is None or result is None:
            return None
        try:
            before = Image.fromarray(load_image(image_path).rgb)
        except InvalidImageError:
            return None
        return before, result

    def stylize_clip(
        video_path,
        style: str,
        strength: float = 1.0,
        colours: bool = False,
        stabilize: bool = True,
        side: float | None = None,
        seconds: float | None = None,
        progress=gr.Progress(),
    ):
        if not video_path:
            raise gr.Error("Upload a video first.", title="No video")
        try:
            info = probe_video(video_path)
            pipe = cache.get(style)
            length = min(float(seconds or video_seconds), video_seconds)
            if info.duration is not None and info.duration > length + 0.05:
                gr.Warning(f"The clip is {info.duration:.1f} s long: stylizing the first {length:g} s.")
            out_dir = Path(tempfile.mkdtemp(prefix="video-", dir=_scratch_dir()))
            out = out_dir / f"{Path(video_path).stem}-{style}.mp4"
            progress(0, desc="Starting")

            def report(done: int, total: int | None) -> None:
                progress((done, total), desc="Stylizing frames", unit="frames")

            def per_frame(inputs: np.ndarray, outputs: np.ndarray) -> np.ndarray:
                return adjust(inputs, outputs, float(strength), bool(colours))

            needs_adjust = float(strength) < 1.0 or bool(colours)
            result = stylize_video(
                pipe,
                video_path,
                out,
                stabilize=bool(stabilize),
                duration=length,
                max_side=_working_side(side, video_max_side),
                progress=False,
                on_progress=report,
                adjust=per_frame if needs_adjust else None,
            )
        except Exception as err:
            raise _friendly(err) from None
        if result.audio == "re-encoded":
            gr.Info("The audio track was re-encoded to AAC (its codec does not fit an MP4 file).")
        return str(result.path)

    with gr.Blocks(title="Scenimefy", delete_cache=(3600, 3600)) as demo:
        gr.Markdown(
            "# Scenimefy\nTurn real photos and videos into anime scenes "
            "([paper](https://arxiv.org/abs/2308.12968), ICCV 2023). "
            "Weights derived from the authors' release are for non-commercial use (S-Lab License 1.0)."
        )
        with gr.Accordion("Styles", open=False):
            gr.Markdown(style_status_markdown(), elem_id="style-status")
        with gr.Tab("Image"):
            with gr.Row():
                with gr.Column():
                    photo = readable_uploads(
                        gr.Image(
                            label="Photo",
                            type="filepath",
                            image_mode=None,
                            sources=["upload", "webcam", "clipboard"],
                            elem_id="photo",
                        )
                    )
                    style = gr.Dropdown(choices=style_choices(), value="shinkai", label="Style")
                    strength = gr.Slider(
                        0.0,
                        1.0,
                        value=1.0,
                        step=0.05,
                        label="Stylization strength",
                        info="1 = full anime style, 0 = the photo",
                    )
                    colours = gr.Checkbox(
                        False, label="Keep the photo's colours", info="anime shading and lines, the photo's hues"
                    )
                    side = gr.Slider(
                        MIN_SIDE,
                        max_side,
                        value=max_side,
                        step=16,
                        label="Resolution cap (longer side, px)",
                        info="lower is faster; the result keeps the photo's size",
                    )
                    run = gr.Button("Stylize", variant="primary", elem_id="stylize")
                with gr.Column():
                    slider = gr.ImageSlider(label="Before / after", type="pil", elem_id="before-after")
                    result = gr.Image(
                        label="Anime scene",
                        type="pil",
                        format="png",
                        buttons=["download", "fullscreen"],
                        interactive=False,
                        elem_id="result",
                    )
            photos = _examples(example_folder, IMAGE_SUFFIXES - {".tif", ".tiff"})  # browsers show no TIFF
            if photos:
                gr.Examples(photos, inputs=photo, label="Example photos")
            run.click(
                stylize,
                inputs=[photo, style, strength, colours, side],
                outputs=result,
                api_name="stylize",
                concurrency_limit=concurrency_limit,
                concurrency_id="image",
            ).success(compare, inputs=[photo, result], outputs=slider, api_visibility="private", queue=False)
        with gr.Tab("Video"):
            with gr.Row():
                with gr.Column():
                    clip = gr.Video(label="Video", sources=["upload"], elem_id="clip")
                    vstyle = gr.Dropdown(choices=style_choices(), value="shinkai", label="Style")
                    vstrength = gr.Slider(0.0, 1.0, value=1.0, step=0.05, label="Stylization strength")
                    vcolours = gr.Checkbox(False, label="Keep the video's colours")
                    stabilize = gr.Checkbox(
                        True,
                        label="Stabilise colours across frames",
                        info="less flicker: smoothed per-frame normalisation, steady pixels where nothing moved",
                    )
                    vside = gr.Slider(
                        MIN_SIDE,
                        video_max_side,
                        value=video_max_side,
                        step=16,
                        label="Resolution cap (longer side, px)",
                    )
                    seconds = gr.Slider(
                        min(1, video_seconds / 2),
                        video_seconds,
                        value=min(5, video_seconds),
                        step=0.5,
                        label="Stylize the first ... seconds",
                    )
                    vrun = gr.Button("Stylize video", variant="primary", elem_id="stylize-video")
                with gr.Column():
                    vresult = gr.Video(
                        label="Anime video (with sound)",
                        buttons=["download"],
                        interactive=False,
                        elem_id="video-result",
                    )
            videos = _examples(example_folder, VIDEO_SUFFIXES)
            if videos:
                gr.Examples(videos, inputs=clip, label="Example videos")
            vrun.click(
                stylize_clip,
                inputs=[clip, vstyle, vstrength, vcolours, stabilize, vside, seconds],
                outputs=vresult,
                api_name="stylize_video",
                concurrency_limit=concurrency_limit,
                concurrency_id="video",
            )
    demo.scenimefy_allowed_paths = [str(example_folder)] if example_folder else []  # for launch()
    return demo


def launch(
    demo: gr.Blocks,
    *,
    host: str = "127.0.0.1",
    port: int | None = 7860,
    max_queue: int = DEFAULT_MAX_QUEUE,
    max_file_size: str | int | None = DEFAULT_MAX_FILE_SIZE,
    block: bool = True,
    **kwargs,
):
    """Queue (``max_queue`` waiting requests; more are told the queue is full) and serve."""
    demo.queue(max_size=max_queue, default_concurrency_limit=1)
    return demo.launch(
        server_name=host,
        server_port=port,
        max_file_size=max_file_size,
        show_error=True,
        allowed_paths=getattr(demo, "scenimefy_allowed_paths", []),
        prevent_thread_lock=not block,
        **kwargs,
    )


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=7860)
    parser.add_argument("--device", default="cpu", help="torch device, e.g. cpu, cuda")
    parser.add_argument("--max-side", type=int, default=DEFAULT_MAX_SIDE, help="image working resolution cap (px)")
    parser.add_argument("--video-max-side", type=int, default=DEFAULT_VIDEO_MAX_SIDE, help="video frame size cap (px)")
    parser.add_argument(
        "--video-seconds", type=float, default=DEFAULT_VIDEO_SECONDS, help="longest clip part per request"
    )
    parser.add_argument(
        "--examples", default=None, help="folder of example photos / videos (default: $SCENIMEFY_EXAMPLES)"
    )
    parser.add_argument("--max-queue", type=int, default=DEFAULT_MAX_QUEUE, help="waiting requests before 'queue full'")
    parser.add_argument("--max-file-size", default=DEFAULT_MAX_FILE_SIZE, help="upload limit, e.g. 200mb")
    parser.add_argument("--concurrency", type=int, default=1, help="requests per tab running at once")
    parser.add_argument(
        "--weights",
        action="append",
        default=[],
        metavar="STYLE=SOURCE",
        help="weights for a style (folder, .pth, repo id)",
    )
    args = parser.parse_args(argv)
    for item in args.weights:
        name, sep, source = item.partition("=")
        if not sep:
            parser.error(f"--weights takes STYLE=SOURCE, got {item!r}")
        os.environ[styles.env_var(name)] = source
    if args.examples and not Path(args.examples).is_dir():
        parser.error(f"--examples {args.examples}: not a folder")
    return args


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    demo = build_demo(
        device=args.device,
        max_side=args.max_side,
        video_max_side=args.video_max_side,
        video_seconds=args.video_seconds,
        examples=args.examples,
        concurrency_limit=args.concurrency,
    )
    launch(demo, host=args.host, port=args.port, max_queue=args.max_queue, max_file_size=args.max_file_size)


if __name__ == "__main__":
    main()
