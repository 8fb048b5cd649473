"""The Video tab: a clip -> an anime clip with its sound. A note of what the job will do (the part
and size of the clip, the model, the smoothness method, the frames the network runs on, the time it
should take), progress with the time left, Cancel (stops the work within a frame and removes the
partial file), the Fast option (the style's lite model) where there is one, the smoothness choice
and "reuse frames" (keyframes), and the result named after the clip and the model that ran.

The note, its time estimate and the job are computed from one :class:`VideoJob`, built from the
same inputs by the same function, so they cannot disagree; the note follows every change of an
input (typed values, arrow keys, ticks), not only a released slider."""

from __future__ import annotations

import contextlib
import logging
import math
import shutil
import time
from dataclasses import dataclass
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
from scenimefy.webapp.styles import fast_style

#: The smoothness choice: (label, value of ``iter_stylize_video``'s ``temporal``).
SMOOTHNESS = [
    ("Smooth (optical flow)", "flow"),
    ("Steady colours only", "stats"),
    ("Off (every frame on its own)", "off"),
]
SMOOTHNESS_INFO = (
    "optical flow: each frame is blended with the previous one where the motion is tracked, keeping its "
    "line art; steady colours: smoothed colours and still pixels; off: less steady, the network's raw output"
)
#: What each choice does, in the note.
SMOOTHNESS_NOTE = {
    "flow": "smoothed with optical flow",
    "stats": "with steady colours (no optical flow)",
    "off": "every frame on its own (no smoothing)",
}
#: "Faster: reuse frames": the network runs on every REUSE-th frame (docs/video.md: the measurements).
REUSE = 2
REUSE_LABEL = "Faster: reuse frames"
REUSE_INFO = (
    f"the network runs on every {REUSE}nd frame (and wherever the picture changes too much); the frames "
    "between are warped from their neighbours with optical flow: nearly twice as fast"
)

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


@dataclass(frozen=True)
class VideoJob:
    """Everything a video job will do, decided once from the tab's inputs: the note describes it,
    the estimate prices it and the job runs it."""

    plan: VideoPlan
    length: float  # seconds asked for (capped by the server)
    style: str  # the style chosen
    model: str  # the style that runs (its fast variant with Fast)
    title: str  # the model's name in words
    fast: bool
    temporal: str  # "flow", "stats" or "off"
    keyframes: int  # 1, or REUSE with "reuse frames"
    fast_missing: bool = False  # Fast ticked for a style without a fast model here: the job refuses

    @property
    def network_frames(self) -> int | None:
        """Frames the network will stylize (at least: scene cuts and unreliable flow add some)."""
        n = self.plan.frames
        if n is None:
            return None
        return n if self.keyframes == 1 else 1 + math.ceil((n - 1) / self.keyframes)


@dataclass
class Speeds:
    """Measured on this server by finished jobs: seconds per megapixel-frame of each model's network,
    and of the rest of the work (decoding, the smoothing, encoding) per method."""

    network: dict[str, float]
    rest: dict[tuple[str, bool], float]

    def record(self, job: VideoJob, result: VideoResult) -> None:
        mpx = result.width * result.height / 1e6
        if not result.frames or mpx <= 0:
            return
        if result.network_frames:
            self.network[job.model] = result.network_seconds / (result.network_frames * mpx)
        rest = max(0.0, result.seconds - result.network_seconds)
        self.rest[(job.temporal, job.keyframes > 1)] = rest / (result.frames * mpx)

    def estimate(self, job: VideoJob) -> float | None:
        """Seconds the job should take, or None until this model has run here."""
        frames, network = job.plan.frames, job.network_frames
        per_network = self.network.get(job.model)
        if frames is None or network is None or per_network is None:
            return None
        rest = self.rest.get((job.temporal, job.keyframes > 1))
        if rest is None:  # this method has not run yet: the others' overhead, the most of them
            rest = max(self.rest.values(), default=0.0)
        mpx = job.plan.width * job.plan.height / 1e6
        return (network * per_network + frames * rest) * mpx


def clip_note(job: VideoJob, *, seconds: float | None = None) -> str:
    """What a video job will do, in the user's terms: working size, part of the clip, frames, the
    model, the smoothing, the frames the network runs on, and the time it takes (``seconds``)."""
    plan = job.plan
    if job.fast_missing:
        return f"The {job.title} style has no fast model on this server. Untick Fast to stylize this clip."
    part, scaled = _clip_parts(plan)
    frames = f", {plan.frames} frames" if plan.frames else ""
    sound = "" if plan.info.audio_codec else " The clip has no sound."
    model = f"the fast model ({job.title})" if job.fast else f"the {job.title} model"
    runs = f" With {model}, {SMOOTHNESS_NOTE[job.temporal]}"
    if job.keyframes > 1:
        about = f"about {job.network_frames} of the {plan.frames} frames" if plan.frames else "part of the frames"
        runs += (
            f"; reusing frames: the network runs on {about} (more where the motion is hard to follow), "
            "the others are warped from them"
        )
    runs += "."
    if seconds is not None:
        guess = f" On this server that takes about {duration(seconds)}."
    else:
        guess = f" The time is estimated once the {job.title} model has made a video on this server."
    return f"Stylizing {part} {scaled}{frames}.{sound}{runs}{guess}"


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

    speeds = Speeds({}, {})

    def job_for(video_path, style, side, seconds, temporal, reuse, fast) -> VideoJob:
        """The one place a job's settings are decided (the note and the job both call it)."""
        length = min(float(seconds or max_seconds), max_seconds)
        plan = plan_video(video_path, duration=length, max_side=working_side(side, max_side))
        now = ctx.states()
        model = (fast_style(str(style), now) if fast else None) or str(style)
        state = now.get(model)
        title = state.title if state is not None else str(style)
        temporal = temporal if temporal in SMOOTHNESS_NOTE else "flow"
        keyframes = REUSE if reuse else 1
        fast_missing = bool(fast) and model == str(style)
        return VideoJob(plan, length, str(style), model, title, model != str(style), temporal, keyframes, fast_missing)

    def describe_clip(video_path, style=None, side=None, seconds=None, temporal="flow", reuse=False, fast=False):
        if not video_path:
            return ""
        try:
            job = job_for(video_path, style, side, seconds, temporal, reuse, fast)
        except VideoError as err:
            return video_problem(err, shown_name(video_path, "This file")).message
        return clip_note(job, seconds=speeds.estimate(job))

    def stylize_clip(
        video_path,
        style: str,
        strength: float = 1.0,
        colours: bool = False,
        temporal: str = "flow",
        side: float | None = None,
        seconds: float | None = None,
        fast: bool = False,
        reuse: bool = False,
        progress=gr.Progress(),
    ):
        """A generator: Gradio runs it one step at a time, so the Cancel button (or a client that
        goes away) closes it between two frames; closing stops the decoder and encoder, removes
        the partial file and frees the frames. A problem is shown in the note as well as in a toast."""
        try:
            with ctx.job():
                yield from run_clip(
                    video_path, style, strength, colours, temporal, side, seconds, fast, reuse, progress
                )
        except gr.Error as problem:
            yield gr.skip(), problem.message
            raise

    def run_clip(video_path, style, strength, colours, temporal, side, seconds, fast, reuse, progress):
        if not video_path:
            raise user_error("Upload a video first.", "No video")
        shown = shown_name(video_path, "This video")
        progress(0.0, desc="Reading the video")
        yield gr.skip(), "Reading the video..."
        try:
            spec = job_for(video_path, style, side, seconds, temporal, reuse, fast)
        except VideoError as err:
            raise video_problem(err, shown) from None
        plan = spec.plan
        note = clip_note(spec, seconds=speeds.estimate(spec))
        title = spec.title
        if registry.styles().get(str(style).lower()) is None:
            title = "chosen"
        progress(0.0, desc=f"Loading the {title} style")
        yield gr.skip(), f"{note}\n\nLoading the {title} style..."
        pipe, name = ctx.pipeline(style, "video", fast=bool(fast))  # refuses Fast without a fast model
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
            temporal=spec.temporal,
            keyframes=spec.keyframes,
            duration=spec.length,
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
        speeds.record(spec, result)
        log.info(
            "video job %s: done, %d frames in %.1f s (network on %d of %d frames, temporal %s)",
            out.name,
            result.frames,
            result.seconds,
            result.network_frames,
            result.frames,
            result.temporal,
        )
        yield str(result.path), result_note(result, plan)

    with gr.Tab("Video"):
        with gr.Row():
            with gr.Column():
                clip = gr.Video(label="Video", sources=["upload"], elem_id="clip")
                strength = gr.Slider(0.0, 1.0, value=1.0, step=0.05, label="Stylization strength")
                colours = gr.Checkbox(False, label="Keep the video's colours")
                temporal = gr.Radio(
                    SMOOTHNESS,
                    value="flow",
                    label="Smoothness across frames",
                    info=SMOOTHNESS_INFO,
                    elem_id="smoothness",
                )
                reuse = gr.Checkbox(False, label=REUSE_LABEL, info=REUSE_INFO, elem_id="video-reuse")
                side = gr.Slider(
                    MIN_SIDE,
                    max_side,
                    value=max_side,
                    step=16,
                    label="Resolution cap (longer side, px)",
                    info=f"frames are scaled down to this; at most {max_side} px on this server",
                    elem_id="video-side",
                )
                seconds = gr.Slider(
                    min(1, max_seconds / 2),
                    max_seconds,
                    value=min(5, max_seconds),
                    step=0.5,
                    label="Stylize the first ... seconds",
                    info=f"at most {max_seconds:g} s on this server",
                    elem_id="video-seconds",
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
        # Every input the job reads: any change of one (typed + Enter, arrow keys, a drag, a tick)
        # redraws the note, so it always describes the job a click would start.
        for component in (clip, style, side, seconds, temporal, reuse, fast):
            component.change(
                describe_clip,
                inputs=[clip, style, side, seconds, temporal, reuse, fast],
                outputs=note,
                api_visibility="private",
                show_progress="hidden",
                trigger_mode="always_last",
                queue=False,
            )
        started = run.click(  # a new job: the previous result goes, Cancel appears
            lambda: (gr.update(interactive=False), gr.update(visible=True), gr.update(value=None, label="Anime video")),
            outputs=[run, cancel, result],
            api_visibility="private",
            queue=False,
        )
        job = started.then(
            on_gpu(stylize_clip, seconds=120),
            inputs=[clip, style, strength, colours, temporal, side, seconds, fast, reuse],
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
