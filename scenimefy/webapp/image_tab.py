"""The Image tab: a photo (upload, webcam or paste) -> an anime scene, with strength, keep the
photo's colours, a resolution cap, the Fast option (the style's lite model) where there is one, a
before / after slider and a PNG named after the photo and the model that ran."""

from __future__ import annotations

import itertools
import logging
import time
from pathlib import Path

import gradio as gr
from PIL import Image

from scenimefy.data.images import IMAGE_SUFFIXES, InvalidImageError, load_image, read_image_size
from scenimefy.inference.adjust import adjust
from scenimefy.inference.outputs import save_image
from scenimefy.inference.pipeline import MIN_SIDE
from scenimefy.webapp.context import AppContext, on_gpu
from scenimefy.webapp.media import check_photo, check_side, checked_photo_uploads, examples, result_folder, working_side
from scenimefy.webapp.messages import failure, image_problem, pixels, shown_name, user_error

log = logging.getLogger("scenimefy.app")

IMAGE_JOBS = itertools.count(1)  # numbers the image jobs in the server log
BROWSER_IMAGES = {".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp"}  # shown as they are in the slider
FAST_LABEL = "Fast (lite model)"
FAST_INFO = "a small model distilled from the style: many times faster, a little less detail"


def describe_photo(image_path, side: float | None, server_cap: int) -> str:
    """The note under the result: the photo's size and the size the style works at."""
    if not image_path:
        return ""
    try:
        size = read_image_size(image_path)
    except OSError:
        size = None
    if size is None:
        return ""
    cap = working_side(side, server_cap)
    w, h = size
    if max(w, h) <= cap:
        return f"{pixels(w, h)}: the style works at full size."
    scale = cap / max(w, h)
    work = pixels(round(w * scale), round(h * scale))
    src = pixels(w, h)
    return f"{src}: the style works at {work} (the resolution cap); the result is scaled back to {src}."


def build_image_tab(ctx: AppContext, style: gr.Dropdown, example_folders, *, runnable: bool, fast_shown: bool):
    """The tab's components and events (inside a ``gr.Blocks``); returns its (Stylize, Fast)."""
    max_side = ctx.limits.max_side

    def runnable(style: str) -> bool:
        state = ctx.states().get(style)
        return state is not None and state.runnable

    def check_upload(payload, side, style: str):
        """On upload: the photo decoded in full (the loader Stylize uses) and its size checked. A
        photo the app cannot use is removed again, the note says why (and a toast) and Stylize is
        off until a usable photo comes; a usable one gets the note of its size."""
        path = (payload or {}).get("path")
        if not path:
            return gr.skip(), "", gr.update(interactive=runnable(style))
        shown = shown_name(payload.get("orig_name") or path, "This file")
        try:
            check_photo(path)
        except InvalidImageError as err:
            problem = image_problem(err, shown)
            log.info("upload refused: %s", problem.message)
            gr.Warning(problem.message, title=problem.title)
            return None, problem.message, gr.update(interactive=False)
        return gr.skip(), describe_photo(path, side, max_side), gr.update(interactive=runnable(style))

    def stylize(
        image_path,
        style: str,
        strength: float = 1.0,
        colours: bool = False,
        side: float | None = None,
        fast: bool = False,
    ):
        if image_path is None:
            raise user_error("Upload a photo first (or take one with the webcam, or paste one).", "No photo")
        job, began = next(IMAGE_JOBS), time.monotonic()
        cap = working_side(side, max_side)
        log.info(
            "image job %d: %s, style %s%s, strength %g%s, cap %d px",
            job,
            Path(image_path).name,
            style,
            " (fast)" if fast else "",
            float(strength),
            ", photo's colours" if colours else "",
            cap,
        )
        try:
            path = run_image_job(image_path, style, float(strength), bool(colours), cap, bool(fast))
        except gr.Error as problem:
            log.info("image job %d: not done after %.1f s: %s", job, time.monotonic() - began, problem.message)
            raise
        log.info("image job %d: done in %.1f s: %s", job, time.monotonic() - began, path.name)
        # The pair also goes to a server-side State (not part of the API) for the before / after
        # slider: the follow-up event reads it there rather than the result's value in the page.
        return str(path), describe_photo(image_path, side, max_side), (image_path, str(path))

    def run_image_job(image_path, style: str, strength: float, colours: bool, cap: int, fast: bool) -> Path:
        shown = shown_name(image_path, "This photo")
        pipe, model = ctx.pipeline(style, "picture", fast=fast)
        try:
            loaded = load_image(image_path)
            check_side((loaded.rgb.shape[1], loaded.rgb.shape[0]), shown)
        except InvalidImageError as err:
            raise image_problem(err, shown) from None
        try:
            with ctx.job():
                styled = pipe.stylize_loaded([loaded], max_side=cap)[0]
            out = adjust(loaded.rgb, styled, strength, colours)
            return save_image(out, result_folder("image") / f"{Path(image_path).stem}-{model}.png")
        except Exception as err:
            raise failure(err, "picture", f"stylizing {image_path}") from None

    def compare(pair):
        """(before, after) for the slider: the photo (as uploaded when a browser shows that format,
        else decoded), and the result's PNG itself, so that the slider's download button gives the
        full-size PNG under the result's name, as the result's own button does."""
        if pair is None:
            return None
        image_path, result = pair
        if Path(image_path).suffix.lower() in BROWSER_IMAGES:
            return image_path, result
        try:
            before = Image.fromarray(load_image(image_path).rgb)
        except InvalidImageError:
            return None
        return before, result

    with gr.Tab("Image"):
        with gr.Row():
            with gr.Column():
                photo = checked_photo_uploads(
                    gr.Image(
                        label="Photo",
                        type="filepath",
                        image_mode=None,
                        sources=["upload", "webcam", "clipboard"],
                        elem_id="photo",
                    )
                )
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
                fast = gr.Checkbox(False, label=FAST_LABEL, info=FAST_INFO, visible=fast_shown, elem_id="fast")
                run = gr.Button("Stylize", variant="primary", elem_id="stylize", interactive=runnable)
            with gr.Column():
                slider = gr.ImageSlider(label="Before / after", type="pil", elem_id="before-after")
                result = gr.Image(
                    label="Anime scene",
                    type="filepath",
                    format="png",
                    buttons=["download", "fullscreen"],
                    interactive=False,
                    elem_id="result",
                )
                note = gr.Markdown(elem_id="image-note")
                pair = gr.State(None)  # (photo, result) of the last run, for the slider
        photos = examples(example_folders, IMAGE_SUFFIXES - {".tif", ".tiff"})  # browsers show no TIFF
        if photos:
            gr.Examples(photos, inputs=photo, label="Example photos")
        photo.upload(
            check_upload,
            inputs=[photo, side, style],
            outputs=[photo, note, run],
            preprocess=False,  # the handler checks the file itself and says what is wrong in the note
            api_visibility="private",
        )
        photo.clear(
            lambda style: ("", gr.update(interactive=runnable(style))),
            inputs=style,
            outputs=[note, run],
            api_visibility="private",
            queue=False,
        )
        run.click(
            on_gpu(stylize, seconds=60),
            inputs=[photo, style, strength, colours, side, fast],
            outputs=[result, note, pair],
            api_name="stylize",
            concurrency_limit=ctx.limits.concurrency,
            concurrency_id="image",
            show_progress_on=[result],
        ).success(compare, inputs=pair, outputs=slider, api_visibility="private", queue=False)
    return run, fast
