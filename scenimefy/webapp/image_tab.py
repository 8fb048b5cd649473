"""The Image tab: a photo (upload, webcam or paste) -> an anime scene, with strength, keep the
photo's colours, a resolution cap, the Fast option (the style's lite model) where there is one, a
before / after slider and a PNG named after the photo and the model that ran."""

from __future__ import annotations

from pathlib import Path

import gradio as gr
from PIL import Image

from scenimefy.data.images import IMAGE_SUFFIXES, InvalidImageError, load_image, read_image_size
from scenimefy.inference.adjust import adjust
from scenimefy.inference.outputs import save_image
from scenimefy.inference.pipeline import MIN_SIDE
from scenimefy.webapp.context import AppContext, on_gpu
from scenimefy.webapp.media import checked_photo_uploads, examples, result_folder, working_side
from scenimefy.webapp.messages import failure, image_problem, pixels, shown_name, user_error

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
        shown = shown_name(image_path, "This photo")
        pipe, model = ctx.pipeline(style, "picture", fast=bool(fast))
        try:
            loaded = load_image(image_path)
        except InvalidImageError as err:
            raise image_problem(err, shown) from None
        try:
            with ctx.job():
                styled = pipe.stylize_loaded([loaded], max_side=working_side(side, max_side))[0]
            out = adjust(loaded.rgb, styled, float(strength), bool(colours))
            path = save_image(out, result_folder("image") / f"{Path(image_path).stem}-{model}.png")
        except Exception as err:
            raise failure(err, "picture", f"stylizing {image_path}") from None
        # The pair also goes to a server-side State (not part of the API) for the before / after
        # slider: the follow-up event reads it there rather than the result's value in the page.
        return str(path), describe_photo(image_path, side, max_side), (image_path, str(path))

    def compare(pair):
        if pair is None:
            return None
        image_path, result = pair
        try:
            before = Image.fromarray(load_image(image_path).rgb)
        except InvalidImageError:
            return None
        with Image.open(result) as after:
            return before, after.copy()

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
            lambda path, side: describe_photo(path, side, max_side),
            inputs=[photo, side],
            outputs=note,
            api_visibility="private",
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
