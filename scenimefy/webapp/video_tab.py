"""The Video tab: a clip -> an anime clip with its sound. A note of the part and size that will be
stylized, progress with the time left, Cancel (stops the work within a frame and removes the
partial file), the Fast option (the style's lite model) where there is one, and the result named
after the clip and the model that ran."""

from __future__ import annotations

import contextlib
import logging
import shutil
import time
from pathlib import Path

import gradio as gr

from scenimefy.hub import styles as registry
from scenimefy.inference.adjust import adjust, needs_adjusting
from scenimefy.inference.pipeline import MIN_SIDE
from scenimefy.inference.video import VideoPlan, VideoResult, iter_stylize_video, plan_video
from scenimefy.inference.video_io import VideoError, probe_video
from scenimefy.webapp.context import AppContext, on_gpu
from scenimefy.webapp.image_tab import FAST_INFO, FAST_LABEL
from scenimefy.webapp.media import VIDEO_SUFFIXES, examples, release_memory, result_folder, working_side
from scenimefy.webapp.messages import Eta, duration, failure, pixels, shown_name, user_error, video_problem

log = logging.getLogger("scenimefy.app")


def _clip_parts(plan: VideoPlan) -> tuple[str, str]:
    """(the part of the clip, the working size) in words."""
    source = pixels(plan.info.width, plan.info.height)
    if plan.info.rotation and (plan.info.rotation // 90) % 2:
        source = pixels(plan.info.height, plan.info.width)
    size = pixels(plan.display_width, plan.display_height)
    scaled = f"at {size}" + (f" (the clip is {source})" if size != source else "")
    if plan.clip_seconds is not None and plan.seconds is not None and plan.seconds < plan.clip_seconds - 0.05:
        part = f"the first {plan.seconds:.1f} s of the {plan.clip_seconds:.1f} s clip"
    elif plan.seconds is not None:
        part = f"the whole clip ({plan.seconds:.1f} s)"
    else:
        part = "the whole clip"
    return part, scaled


def clip_note(plan: VideoPlan, *, speed: tuple[float, int] | None = None) -> str:
    """What a video job will do, in the user's terms: working size, part of the clip, frames."""
    part, scaled = _clip_parts(plan)
    frames = f", {plan.frames} frames" if plan.frames else ""
    sound = "" if plan.info.audio_codec else " The clip has no sound."
    guess = ""
    if speed and plan.frames:
        # The last job's seconds per frame, scaled up for bigger frames (small frames cost mostly overhead).
        per_frame, area = speed
        seconds = plan.frames * per_frame * max(1.0, plan.width * plan.height / area)
        guess = f" On this server that takes about {duration(seconds)}."
    return f"Stylizing {part} {scaled}{frames}.{sound}{guess}"


def result_note(result: VideoResult, plan: VideoPlan) -> str:
    part, scaled = _clip_parts(plan)
    sound = {"copied": "with the clip's sound", "re-encoded": "with the clip's sound (converted to AAC)"}.get(
        result.audio, "without sound (the clip has none)"
    )
    lines = [f"Done in {duration(result.seconds)}: {part} {scaled}, {result.frames} frames, {sound}."]
    if not result.complete:
        expected = f" of the {result.expected_frames} expected" if result.expected_frames else ""
        lines.append(
            f"The video file is damaged or incomplete: {result.frames}{expected} frames could be read, "
            "and the result has those."
        )
    return "\n\n".join(lines)


def sound_label(video_path):
    """The result's label says whether it has sound (a clip without any gives one without)."""
    try:
        has_sound = video_path is not None and probe_video(video_path).audio_codec is not None
    except VideoError:
        has_sound = False
    return gr.update(label="Anime video (with sound)" if has_sound else "Anime video (no sound)")


def build_video_tab(ctx: AppContext, style: gr.Dropdown, example_folders, *, runnable: bool, fast_shown: bool):
    """The tab's components and events (inside a ``gr.Blocks``); returns its (Stylize video, Fast)."""
    limits = ctx.limits
    max_side, max_seconds = min(limits.video_max_side, limits.max_side), limits.video_seconds

    def plan_for(video_path, side, seconds) -> tuple[VideoPlan, float]:
        length = min(float(seconds or max_seconds), max_seconds)
        return plan_video(video_path, duration=length, max_side=working_side(side, max_side)), length

    def describe_clip(video_path, side: float | None = None, seconds: float | None = None):
        if not video_path:
            return ""
        try:
            plan, _ = plan_for(video_path, side, seconds)
        except VideoError as err:
            return video_problem(err, shown_name(video_path, "This file")).message
        return clip_note(plan, speed=ctx.video_speed)

    def stylize_clip(
        video_path,
        style: str,
        strength: float = 1.0,
        colours: bool = False,
        stabilize: bool = True,
        side: float | None = None,
        seconds: float | None = None,
        fast: bool = False,
        progress=gr.Progress(),
    ):
        """A generator: Gradio runs it one step at a time, so the Cancel button (or a client that
        goes away) closes it between two frames; closing stops the decoder and encoder, removes
        the partial file and frees the frames. A problem is shown in the note as well as in a toast."""
        try:
            with ctx.job():
                yield from run_clip(video_path, style, strength, colours, stabilize, side, seconds, fast, progress)
        except gr.Error as problem:
            yield gr.skip(), problem.message
            raise

    def run_clip(video_path, style, strength, colours, stabilize, side, seconds, fast, progress):
        if not video_path:
            raise user_error("Upload a video first.", "No video")
        shown = shown_name(video_path, "This video")
        progress(0.0, desc="Reading the video")
        yield gr.skip(), "Reading the video..."
        try:
            plan, length = plan_for(video_path, side, seconds)
        except VideoError as err:
            raise video_problem(err, shown) from None
        note = clip_note(plan, speed=ctx.video_speed)
        model = registry.styles().get(str(style).lower())
        title = (registry.get_style(model.lite).title if fast and model.lite else model.title) if model else "chosen"
        progress(0.0, desc=f"Loading the {title} style")
        yield gr.skip(), f"{note}\n\nLoading the {title} style..."
        pipe, name = ctx.pipeline(style, "video", fast=bool(fast))
        folder = result_folder("video")
        out = folder / f"{Path(video_path).stem}-{name}.mp4"
        per_frame = None
        if needs_adjusting(float(strength), bool(colours)):

            def per_frame(inputs, outputs):
                return adjust(inputs, outputs, float(strength), bool(colours))

        job = iter_stylize_video(
            pipe,
            video_path,
            out,
            stabilize=bool(stabilize),
            duration=length,
            batch_size=1 if str(pipe.device) == "cpu" else 4,  # a frame per step: prompt progress and Cancel
            adjust=per_frame,
            plan=plan,
        )
        eta, done, last_log = Eta(), 0, time.monotonic()
        log.info("video job %s: %s", out.name, note)
        try:
            with contextlib.closing(job):
                try:
                    while True:
                        update = next(job)
                        done, left = update.done, eta.update(update.done, update.total)
                        progress((update.done, update.total), desc=left, unit="frames")
                        if time.monotonic() - last_log > 5:
                            log.info("video job %s: %d/%s frames", out.name, done, update.total or "?")
                            last_log = time.monotonic()
                        log.debug("video job %s: frame %d done", out.name, done)
                        of = f" of {update.total}" if update.total else ""
                        status = f"Frame {done}{of}: {left}." if done else "Starting the first frame..."
                        yield gr.skip(), f"{note}\n\n{status}"
                except StopIteration as stop:
                    result: VideoResult = stop.value
                except VideoError as err:
                    raise video_problem(err, shown) from None
                except gr.Error:
                    raise
                except Exception as err:
                    raise failure(err, "video", f"stylizing {video_path}") from None
        except GeneratorExit:
            log.info("video job %s cancelled after %d frames; partial output removed", out.name, done)
            raise
        finally:
            if not out.exists():
                shutil.rmtree(folder, ignore_errors=True)
            release_memory()
        if result.frames and result.seconds > 0:
            ctx.video_speed = (result.seconds / result.frames, result.width * result.height)
        log.info("video job %s: done, %d frames in %.1f s", out.name, result.frames, result.seconds)
        yield str(result.path), result_note(result, plan)

    with gr.Tab("Video"):
        with gr.Row():
            with gr.Column():
                clip = gr.Video(label="Video", sources=["upload"], elem_id="clip")
                strength = gr.Slider(0.0, 1.0, value=1.0, step=0.05, label="Stylization strength")
                colours = gr.Checkbox(False, label="Keep the video's colours")
                stabilize = gr.Checkbox(
                    True,
                    label="Stabilise colours across frames",
                    info="less flicker: smoothed per-frame normalisation, steady pixels where nothing moved",
                )
                side = gr.Slider(
                    MIN_SIDE,
                    max_side,
                    value=max_side,
                    step=16,
                    label="Resolution cap (longer side, px)",
                    info=f"frames are scaled down to this; at most {max_side} px on this server",
                )
                seconds = gr.Slider(
                    min(1, max_seconds / 2),
                    max_seconds,
                    value=min(5, max_seconds),
                    step=0.5,
                    label="Stylize the first ... seconds",
                    info=f"at most {max_seconds:g} s on this server",
                )
                fast = gr.Checkbox(False, label=FAST_LABEL, info=FAST_INFO, visible=fast_shown, elem_id="video-fast")
                with gr.Row():
                    run = gr.Button("Stylize video", variant="primary", elem_id="stylize-video", interactive=runnable)
                    cancel = gr.Button("Cancel", variant="stop", elem_id="cancel-video", visible=False)
            with gr.Column():
                result = gr.Video(label="Anime video", buttons=["download"], interactive=False, elem_id="video-result")
                note = gr.Markdown(elem_id="video-note")
        videos = examples(example_folders, VIDEO_SUFFIXES)
        if videos:
            gr.Examples(videos, inputs=clip, label="Example videos")
        for trigger in (clip.change, side.release, seconds.release):
            trigger(
                describe_clip,
                inputs=[clip, side, seconds],
                outputs=note,
                api_visibility="private",
                show_progress="hidden",
            )
        started = run.click(  # a new job: the previous result goes, Cancel appears
            lambda: (gr.update(interactive=False), gr.update(visible=True), gr.update(value=None, label="Anime video")),
            outputs=[run, cancel, result],
            api_visibility="private",
            queue=False,
        )
        job = started.then(
            on_gpu(stylize_clip, seconds=120),
            inputs=[clip, style, strength, colours, stabilize, side, seconds, fast],
            outputs=[result, note],
            api_name="stylize_video",
            concurrency_limit=limits.concurrency,
            concurrency_id="video",
            show_progress_on=[result],
        )

        def finished(style: str):
            now = ctx.states()
            return gr.update(interactive=style in now and now[style].runnable), gr.update(visible=False)

        job.success(sound_label, inputs=result, outputs=result, api_visibility="private", queue=False)
        for after in (job.then, job.failure):  # `then` alone does not follow a failed run
            after(finished, inputs=style, outputs=[run, cancel], api_visibility="private", queue=False)

        def cancelled(style: str):
            log.info("video job: cancel requested")
            return (*finished(style), "Cancelled: the video was not made.")

        cancel.click(
            cancelled,
            inputs=style,
            outputs=[run, cancel, note],
            cancels=[job],
            api_visibility="private",
            queue=False,
        )
    return run, fast
