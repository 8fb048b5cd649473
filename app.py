"""Scenimefy web app (Gradio): photos and videos into anime scenes.

    python app.py [--host 127.0.0.1] [--port 7860] [--weights shinkai=PATH ...] [--examples DIR ...]

One style selector for every tab; next to it, whether the style can run on this server and, if
not, why in plain words (Stylize is disabled then). Image tab: upload / webcam / clipboard,
stylization strength, keep-original-colours, resolution cap, a before/after slider and a PNG
download named after the photo and the style. Video tab: upload or an example clip, the same
options plus temporal stabilisation and the part of the clip to stylize; a note of the working
size and duration, progress with the time left, a Cancel button that stops the work, and the
result with or without sound as the clip had it.

Every message the page shows is a plain sentence about the user's file or choice and what they
can do in the app; instructions for whoever runs the server (flags, environment variables) go to
the server log and to the Styles panel. ``build_demo`` is the factory the tests and the Hugging
Face Space (``spaces/``) call; docs/app.md describes the options and limits.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import gc
import html
import logging
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import gradio as gr
from PIL import Image

import scenimefy  # noqa: F401  (torchvision shim before gradio's imports)
from scenimefy.data.images import (
    IMAGE_SUFFIXES,
    InvalidImageError,
    image_header,
    load_image,
    max_pixels,
    read_image_size,
)
from scenimefy.hub import styles
from scenimefy.hub.convert import CheckpointError
from scenimefy.hub.download import WeightsUnavailableError
from scenimefy.inference.adjust import adjust, blend, keep_colours, needs_adjusting  # noqa: F401  (re-exported)
from scenimefy.inference.outputs import DiskFullError, is_disk_full, save_image
from scenimefy.inference.pipeline import MIN_SIDE, ScenimefyPipeline
from scenimefy.inference.video import VideoPlan, VideoResult, iter_stylize_video, plan_video
from scenimefy.inference.video_io import VideoError, probe_video

log = logging.getLogger("scenimefy.app")

DEFAULT_MAX_SIDE = 1024  # image working resolution cap (longer side)
DEFAULT_VIDEO_MAX_SIDE = 512  # video frames are scaled to this; every frame runs the network
DEFAULT_VIDEO_SECONDS = 10  # longest part of a clip one request may stylize
DEFAULT_MAX_FILE_SIZE = "200mb"
DEFAULT_MAX_QUEUE = 32
VIDEO_SUFFIXES = {".mp4", ".mov", ".mkv", ".webm", ".m4v", ".avi"}
_OUTPUT_TTL_S = 3600  # results older than this are removed from the app's scratch folder
_IMAGE_FORMATS = "JPEG, PNG, WebP, BMP, GIF or TIFF"
_VIDEO_FORMATS = "MP4, MOV, WebM or MKV"


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

    def preload(self, style: str) -> None:
        """Load ``style`` in the background so the first request does not wait for it."""

        def load() -> None:
            try:
                self.get(style)
                log.info("style %r loaded", style)
            except Exception as err:  # reported again, in words, when someone uses it
                log.warning("could not preload style %r: %s", style, err)

        threading.Thread(target=load, name=f"preload-{style}", daemon=True).start()


# --------------------------------------------------------------------------- styles: what can run here


@dataclass(frozen=True)
class StyleState:
    """Whether a style can run on this server, in words for users and for whoever runs it."""

    name: str
    title: str
    status: str  # "ready", "downloadable" (fetched on first use) or "unavailable"
    why: str  # unavailable: the reason in a user's words ("" otherwise)
    operator: str  # the Styles panel / log line: where the weights come from, how to add them

    @property
    def runnable(self) -> bool:
        return self.status != "unavailable"


def _operator_advice(style: styles.Style) -> str:
    name = style.name
    advice = f"start the app with `--weights {name}=PATH` or set `{styles.env_var(name)}=PATH`"
    if styles.is_released(style):
        advice = f"run `scenimefy download {name}` once with internet access, or {advice}"
    return advice + " (PATH: a translator folder, an authors' `*_net_G.pth` file or a Hub repo id)"


def style_state(name: str) -> StyleState:
    style = styles.get_style(name)
    status = styles.style_status(name)
    source = styles.style_source(name)
    if status == "ready":
        return StyleState(name, style.title, "ready", "", f"ready (`{source}`)")
    if status == "downloadable":
        return StyleState(name, style.title, "downloadable", "", f"downloads on first use (`{source}`)")
    if styles.is_released(style):
        why = "this server has not downloaded its weights and cannot download them now (it has no internet access)"
        reason = "its weights are not in the local cache and downloads are disabled or the Hub is unreachable"
    else:
        why = "no weights for it have been published yet, and this server has none of its own"
        reason = "no weights found (nothing published or cached)"
    return StyleState(name, style.title, "unavailable", why, f"not available: {reason}; {_operator_advice(style)}")


def style_states() -> dict[str, StyleState]:
    """Every registered style, the authors' Shinkai first."""
    return {name: style_state(name) for name in sorted(styles.styles(), key=lambda n: (n != "shinkai", n))}


def default_style(states: dict[str, StyleState]) -> str:
    """The style the page opens on: shinkai when it can run, else the first one that can, else shinkai."""
    order = sorted(states, key=lambda n: (n != "shinkai", n))
    return next((n for n in order if states[n].runnable), order[0] if order else "shinkai")


def style_choices(states: dict[str, StyleState] | None = None) -> list[tuple[str, str]]:
    states = states or style_states()
    labels = {"ready": "", "downloadable": " (downloads on first use)", "unavailable": " (not available)"}
    return [(f"{s.title}{labels[s.status]}", name) for name, s in states.items()]


def unavailable_message(name: str, states: dict[str, StyleState]) -> str:
    """The sentence a user reads when ``name`` cannot run: what happened, and what to do in the app."""
    state = states[name]
    others = [s.title for s in states.values() if s.runnable and s.name != name]
    if others:
        todo = f"Choose {' or '.join(others)} instead."
    else:
        todo = "No style can run on this server at the moment; please come back later."
    return f"The {state.title} style cannot be used: {state.why}. {todo}"


def style_note(name: str, states: dict[str, StyleState]) -> str:
    state = states.get(name)
    if state is None:
        return "Choose a style."
    if state.status == "ready":
        return f"**{state.title}**: ready."
    if state.status == "downloadable":
        return f"**{state.title}**: ready; its weights download the first time it is used, so that result takes longer."
    return f"**Not available.** {unavailable_message(name, states)}"


def styles_panel(states: dict[str, StyleState]) -> str:
    """The Styles panel: every style and, for whoever runs the server, how to add missing weights."""
    lines = [f"- **{s.title}** (`{s.name}`): {s.operator}" for s in states.values()]
    return "\n".join(lines)


# --------------------------------------------------------------------------- messages for the page


def _user_error(message: str, title: str) -> gr.Error:
    return gr.Error(message, title=title, print_exception=False)


def _name(path: str | os.PathLike | None, fallback: str) -> str:
    """A file's name for a message: the name it had on the user's machine, never a server path."""
    name = Path(path).name if path else ""
    return html.escape(name) if name else fallback


def image_problem(err: InvalidImageError, shown_name: str) -> gr.Error:
    if err.kind == "too_large":
        limit = f"{err.limit / 1e6:.0f} megapixels" if err.limit else "the size limit"
        if err.size:
            w, h = err.size
            size = f"{w} x {h} pixels ({w * h / 1e6:.0f} megapixels)"
            return _user_error(
                f"{shown_name} is too large: {size}. The largest photo this app takes is {limit}; "
                "make it smaller and upload it again.",
                "Photo too large",
            )
        return _user_error(
            f"{shown_name} is too large: the largest photo this app takes is {limit}.", "Photo too large"
        )
    if err.kind == "empty":
        return _user_error(f"{shown_name} is empty (0 bytes). Upload the photo again.", "Empty file")
    if err.kind == "broken":
        return _user_error(
            f"{shown_name} is damaged or incomplete, so it cannot be read: the file may not have finished "
            "saving or uploading. Try another copy of the photo.",
            "Damaged photo",
        )
    if err.kind == "missing":
        return _user_error("The photo is no longer on the server. Upload it again.", "Photo missing")
    return _user_error(
        f"{shown_name} is not a photo this app can read. Upload a {_IMAGE_FORMATS} image.", "Not a photo"
    )


def video_problem(err: VideoError, shown_name: str) -> gr.Error:
    messages = {
        "empty": (f"{shown_name} is empty (0 bytes). Upload the video again.", "Empty file"),
        "unreadable": (
            f"{shown_name} is not a video this app can read. Upload an {_VIDEO_FORMATS} clip.",
            "Not a video",
        ),
        "no_video": (f"{shown_name} has no picture, only sound. Upload a clip with video.", "No video track"),
        "undecodable": (
            f"{shown_name} cannot be read as a video: none of its frames decode. It may be damaged, or not a "
            "video at all; try another clip.",
            "Damaged video",
        ),
        "no_frames": (
            f"{shown_name} has no frames in the part you chose. Choose a longer part or another clip.",
            "Nothing to stylize",
        ),
        "missing": ("The video is no longer on the server. Upload it again.", "Video missing"),
    }
    message, title = messages.get(
        err.kind, (f"{shown_name} cannot be stylized with these settings. Try other settings.", "Bad video")
    )
    return _user_error(message, title)


def failure(err: BaseException, what: str, context: str) -> gr.Error:
    """A sentence for a failure that is not the user's file: logged in full for the operator."""
    if isinstance(err, DiskFullError) or is_disk_full(err):
        log.error("%s: disk full: %s", context, err)
        return _user_error(
            f"The server's disk is full, so the {what} could not be saved. Please try again later.", "Server full"
        )
    if isinstance(err, MemoryError):
        log.error("%s: out of memory", context)
        return _user_error(
            f"The server ran out of memory for this {what}. Lower the resolution cap and try again.", "Out of memory"
        )
    log.exception("%s failed", context)
    return _user_error(
        f"Something went wrong on the server while making the {what}. Please try again; if it happens again, "
        "the server's log says what failed.",
        "Something went wrong",
    )


def _pixels(w: int, h: int) -> str:
    return f"{w} x {h} px"


def _duration(seconds: float) -> str:
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    minutes, rest = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {rest:02d} s" if rest else f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


class Eta:
    """Time left of a frame loop, from the frames done so far (the first one, which warms up, excluded)."""

    def __init__(self) -> None:
        self.began = time.monotonic()
        self._first: tuple[float, int] | None = None

    def update(self, done: int, total: int | None) -> str:
        now = time.monotonic()
        if done and self._first is None:
            self._first = (now, done)
            return "estimating the time left"
        if self._first is None or total is None:
            return "estimating the time left" if total else "stylizing"
        t0, d0 = self._first
        if done <= d0:
            return "estimating the time left"
        rate = (now - t0) / (done - d0)
        return f"about {_duration(rate * max(0, total - done))} left"


def _release_memory() -> None:
    """Give freed memory back to the OS (glibc keeps freed heap pages otherwise)."""
    gc.collect()
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


# --------------------------------------------------------------------------- uploads


def checked_photo_uploads(component: gr.Image) -> gr.Image:
    """Make ``component`` answer an upload it cannot use with a sentence: a photo above the pixel
    limit is named as too large (with its size and the limit) before anything decodes it, a file
    that is not an image as such (Gradio passes a ``gr.Error`` raised in preprocessing through).

    The instance's method is wrapped rather than subclassing ``gr.Image``: Gradio writes a .pyi
    stub next to the module of every Component subclass."""
    preprocess = component.preprocess

    def checked(payload):
        path = getattr(payload, "path", None)
        shown = _name(getattr(payload, "orig_name", None) or path, "This file")
        fmt = None
        if path:
            try:
                if os.path.getsize(path) == 0:
                    raise image_problem(InvalidImageError("empty", "empty"), shown)
                fmt, size = image_header(path)
            except OSError:
                size = None
            limit = max_pixels()
            if size is not None and size[0] * size[1] > limit:
                raise image_problem(InvalidImageError("too large", "too_large", size=size, limit=limit), shown)
        try:
            return preprocess(payload)
        except gr.Error:
            raise
        except Exception:  # PIL could not open it: a damaged file of a known format, or no image at all
            raise image_problem(InvalidImageError("", "broken" if fmt else "unreadable"), shown) from None

    component.preprocess = checked
    return component


def _working_side(requested: float | None, server_cap: int) -> int:
    side = int(requested or server_cap)
    return max(MIN_SIDE, min(side, server_cap))


def _scratch_dir() -> Path:
    """The app's folder for results; old ones are removed on each request."""
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


def _examples(folders: Sequence[Path], suffixes: set[str]) -> list[str]:
    found = []
    for folder in folders:
        if folder.is_dir():
            found += [str(p) for p in sorted(folder.iterdir()) if p.suffix.lower() in suffixes]
    return found


def examples_dirs(explicit: str | os.PathLike | Sequence[str | os.PathLike] | None = None) -> list[Path]:
    """``--examples`` / ``build_demo(examples=...)`` (one folder or several), else
    ``$SCENIMEFY_EXAMPLES`` (``os.pathsep``-separated), else none."""
    if explicit is None or explicit == []:
        value = os.environ.get("SCENIMEFY_EXAMPLES")
        explicit = [p for p in value.split(os.pathsep) if p] if value else []
    elif isinstance(explicit, (str, os.PathLike)):
        explicit = [explicit]
    return [Path(p).resolve() for p in explicit]


def examples_dir(explicit: str | os.PathLike | None = None) -> Path | None:
    """The first examples folder (see :func:`examples_dirs`)."""
    folders = examples_dirs(explicit)
    return folders[0] if folders else None


def _clip_parts(plan: VideoPlan) -> tuple[str, str]:
    """(the part of the clip, the working size) in words."""
    source = _pixels(plan.info.width, plan.info.height)
    if plan.info.rotation and (plan.info.rotation // 90) % 2:
        source = _pixels(plan.info.height, plan.info.width)
    size = _pixels(plan.display_width, plan.display_height)
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
        per_frame, pixels = speed
        seconds = plan.frames * per_frame * max(1.0, plan.width * plan.height / pixels)
        guess = f" On this server that takes about {_duration(seconds)}."
    return f"Stylizing {part} {scaled}{frames}.{sound}{guess}"


def result_note(result: VideoResult, plan: VideoPlan) -> str:
    part, scaled = _clip_parts(plan)
    sound = {"copied": "with the clip's sound", "re-encoded": "with the clip's sound (converted to AAC)"}.get(
        result.audio, "without sound (the clip has none)"
    )
    lines = [f"Done in {_duration(result.seconds)}: {part} {scaled}, {result.frames} frames, {sound}."]
    if not result.complete:
        expected = f" of the {result.expected_frames} expected" if result.expected_frames else ""
        lines.append(
            f"The video file is damaged or incomplete: {result.frames}{expected} frames could be read, "
            "and the result has those."
        )
    return "\n\n".join(lines)


def build_demo(
    device: str = "cpu",
    max_side: int = DEFAULT_MAX_SIDE,
    *,
    video_max_side: int = DEFAULT_VIDEO_MAX_SIDE,
    video_seconds: float = DEFAULT_VIDEO_SECONDS,
    examples: str | os.PathLike | Sequence[str | os.PathLike] | None = None,
    concurrency_limit: int = 1,
    preload: bool = False,
) -> gr.Blocks:
    """The app. ``max_side`` / ``video_max_side`` cap the working resolution of images / video
    frames, ``video_seconds`` the clip length per request, ``concurrency_limit`` the requests of
    each tab run at once (images and videos queue separately), ``preload`` loads the opening
    style in the background at once. Queue size and upload limits are set at launch
    (:func:`launch`)."""
    cache = PipelineCache(device)
    example_folders = examples_dirs(examples)
    video_max_side = min(video_max_side, max_side)
    states = style_states()
    opening = default_style(states)
    for state in states.values():
        if not state.runnable:
            log.warning("style %r (%s) %s", state.name, state.title, state.operator.replace("`", ""))
    if preload and states[opening].status == "ready":
        cache.preload(opening)
    speed = {"last": None}  # (seconds per frame, pixels per frame) of the last video job: estimates

    checked = {"at": time.monotonic(), "states": states}

    def current_states() -> dict[str, StyleState]:
        """The styles' availability, checked again at most every 30 s (online it asks the Hub)."""
        if time.monotonic() - checked["at"] > 30:
            checked["states"], checked["at"] = style_states(), time.monotonic()
        return checked["states"]

    def pipeline(style: str, what: str) -> ScenimefyPipeline:
        """The style's pipeline, or a sentence saying why it cannot run (and a log line for the operator)."""
        now = current_states()
        if style not in now:
            raise _user_error(f"There is no style called {html.escape(str(style))}. Choose one from the list.", "Style")
        if not now[style].runnable:
            raise _user_error(unavailable_message(style, now), "Style not available")
        try:
            return cache.get(style)
        except (WeightsUnavailableError, CheckpointError) as err:
            log.error("style %r could not be loaded:\n%s", style, err)
            raise _user_error(
                f"The {now[style].title} style could not be loaded on this server: its weights could not be "
                f"downloaded or read. Choose another style or try again later.",
                "Style not available",
            ) from None
        except Exception as err:
            raise failure(err, what, f"loading style {style!r}") from None

    def refresh_styles(style: str):
        now = current_states()
        runnable = style in now and now[style].runnable
        return (
            gr.update(choices=style_choices(now)),
            style_note(style, now),
            styles_panel(now),
            gr.update(interactive=runnable),
            gr.update(interactive=runnable),
        )

    def describe_photo(image_path, side: float | None = None):
        if not image_path:
            return ""
        try:
            size = read_image_size(image_path)
        except OSError:
            size = None
        if size is None:
            return ""
        cap = _working_side(side, max_side)
        w, h = size
        if max(w, h) <= cap:
            return f"{_pixels(w, h)}: the style works at full size."
        scale = cap / max(w, h)
        work = _pixels(round(w * scale), round(h * scale))
        src = _pixels(w, h)
        return f"{src}: the style works at {work} (the resolution cap); the result is scaled back to {src}."

    def stylize(image_path, style: str, strength: float = 1.0, colours: bool = False, side: float | None = None):
        if image_path is None:
            raise _user_error("Upload a photo first (or take one with the webcam, or paste one).", "No photo")
        shown = _name(image_path, "This photo")
        pipe = pipeline(style, "picture")
        try:
            loaded = load_image(image_path)
        except InvalidImageError as err:
            raise image_problem(err, shown) from None
        try:
            cap = _working_side(side, max_side)
            styled = pipe.stylize_loaded([loaded], max_side=cap)[0]
            out = adjust(loaded.rgb, styled, float(strength), bool(colours))
            folder = Path(tempfile.mkdtemp(prefix="image-", dir=_scratch_dir()))
            path = save_image(out, folder / f"{Path(image_path).stem}-{style}.png")
        except Exception as err:
            raise failure(err, "picture", f"stylizing {image_path}") from None
        return str(path), describe_photo(image_path, side)

    def compare(image_path, result):
        if image_path is None or result is None:
            return None
        try:
            before = Image.fromarray(load_image(image_path).rgb)
        except InvalidImageError:
            return None
        with Image.open(result) as after:
            return before, after.copy()

    def describe_clip(video_path, side: float | None = None, seconds: float | None = None):
        if not video_path:
            return ""
        length = min(float(seconds or video_seconds), video_seconds)
        try:
            plan = plan_video(video_path, duration=length, max_side=_working_side(side, video_max_side))
        except VideoError as err:
            return video_problem(err, _name(video_path, "This file")).message
        return clip_note(plan, speed=speed["last"])

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
        """A generator: Gradio runs it one step at a time, so the Cancel button (or a client that
        goes away) closes it between two frames; closing stops the decoder and encoder, removes
        the partial file and frees the frames. A problem is shown in the note as well as in a toast."""
        try:
            yield from run_clip(video_path, style, strength, colours, stabilize, side, seconds, progress)
        except gr.Error as problem:
            yield gr.skip(), problem.message
            raise

    def run_clip(video_path, style, strength, colours, stabilize, side, seconds, progress):
        if not video_path:
            raise _user_error("Upload a video first.", "No video")
        shown = _name(video_path, "This video")
        progress(0.0, desc="Reading the video")
        yield gr.skip(), "Reading the video..."
        length = min(float(seconds or video_seconds), video_seconds)
        try:
            plan = plan_video(video_path, duration=length, max_side=_working_side(side, video_max_side))
        except VideoError as err:
            raise video_problem(err, shown) from None
        note = clip_note(plan, speed=speed["last"])
        title = styles.get_style(style).title if style in styles.styles() else "chosen"
        progress(0.0, desc=f"Loading the {title} style")
        yield gr.skip(), f"{note}\n\nLoading the {title} style..."
        pipe = pipeline(style, "video")
        folder = Path(tempfile.mkdtemp(prefix="video-", dir=_scratch_dir()))
        out = folder / f"{Path(video_path).stem}-{style}.mp4"
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
            _release_memory()
        if result.frames and result.seconds > 0:
            speed["last"] = (result.seconds / result.frames, result.width * result.height)
        log.info("video job %s: done, %d frames in %.1f s", out.name, result.frames, result.seconds)
        yield str(result.path), result_note(result, plan)

    def sound_label(video_path):
        """The result's label says whether it has sound (a clip without any gives one without)."""
        try:
            has_sound = video_path is not None and probe_video(video_path).audio_codec is not None
        except VideoError:
            has_sound = False
        return gr.update(label="Anime video (with sound)" if has_sound else "Anime video (no sound)")

    with gr.Blocks(title="Scenimefy", delete_cache=(3600, 3600)) as demo:
        gr.Markdown(
            "# Scenimefy\nTurn real photos and videos into anime scenes "
            "([paper](https://arxiv.org/abs/2308.12968), ICCV 2023). "
            "Weights derived from the authors' release are for non-commercial use (S-Lab License 1.0)."
        )
        with gr.Row(equal_height=True):
            style = gr.Dropdown(choices=style_choices(states), value=opening, label="Style", elem_id="style", scale=1)
            with gr.Column(scale=2):
                note = gr.Markdown(style_note(opening, states), elem_id="style-note")
        with gr.Accordion("Styles: where their weights come from", open=False):
            panel = gr.Markdown(styles_panel(states), elem_id="style-status")
        runnable = states[opening].runnable
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
                    image_note = gr.Markdown(elem_id="image-note")
            photos = _examples(example_folders, IMAGE_SUFFIXES - {".tif", ".tiff"})  # browsers show no TIFF
            if photos:
                gr.Examples(photos, inputs=photo, label="Example photos")
            photo.upload(describe_photo, inputs=[photo, side], outputs=image_note, api_visibility="private")
            run.click(
                stylize,
                inputs=[photo, style, strength, colours, side],
                outputs=[result, image_note],
                api_name="stylize",
                concurrency_limit=concurrency_limit,
                concurrency_id="image",
                show_progress_on=[result],
            ).success(compare, inputs=[photo, result], outputs=slider, api_visibility="private", queue=False)
        with gr.Tab("Video"):
            with gr.Row():
                with gr.Column():
                    clip = gr.Video(label="Video", sources=["upload"], elem_id="clip")
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
                        info=f"frames are scaled down to this; at most {video_max_side} px on this server",
                    )
                    seconds = gr.Slider(
                        min(1, video_seconds / 2),
                        video_seconds,
                        value=min(5, video_seconds),
                        step=0.5,
                        label="Stylize the first ... seconds",
                        info=f"at most {video_seconds:g} s on this server",
                    )
                    with gr.Row():
                        vrun = gr.Button(
                            "Stylize video", variant="primary", elem_id="stylize-video", interactive=runnable
                        )
                        vcancel = gr.Button("Cancel", variant="stop", elem_id="cancel-video", visible=False)
                with gr.Column():
                    vresult = gr.Video(
                        label="Anime video",
                        buttons=["download"],
                        interactive=False,
                        elem_id="video-result",
                    )
                    vnote = gr.Markdown(elem_id="video-note")
            videos = _examples(example_folders, VIDEO_SUFFIXES)
            if videos:
                gr.Examples(videos, inputs=clip, label="Example videos")
            for trigger in (clip.change, vside.release, seconds.release):
                trigger(
                    describe_clip,
                    inputs=[clip, vside, seconds],
                    outputs=vnote,
                    api_visibility="private",
                    show_progress="hidden",
                )
            started = vrun.click(  # a new job: the previous result goes, Cancel appears
                lambda: (
                    gr.update(interactive=False),
                    gr.update(visible=True),
                    gr.update(value=None, label="Anime video"),
                ),
                outputs=[vrun, vcancel, vresult],
                api_visibility="private",
                queue=False,
            )
            job = started.then(
                stylize_clip,
                inputs=[clip, style, vstrength, vcolours, stabilize, vside, seconds],
                outputs=[vresult, vnote],
                api_name="stylize_video",
                concurrency_limit=concurrency_limit,
                concurrency_id="video",
                show_progress_on=[vresult],
            )

            def finished(style: str):
                now = current_states()
                return gr.update(interactive=style in now and now[style].runnable), gr.update(visible=False)

            job.success(sound_label, inputs=vresult, outputs=vresult, api_visibility="private", queue=False)
            for after in (job.then, job.failure):  # `then` alone does not follow a failed run
                after(finished, inputs=style, outputs=[vrun, vcancel], api_visibility="private", queue=False)

            def cancelled(style: str):
                log.info("video job: cancel requested")
                return (*finished(style), "Cancelled: the video was not made.")

            vcancel.click(
                cancelled,
                inputs=style,
                outputs=[vrun, vcancel, vnote],
                cancels=[job],
                api_visibility="private",
                queue=False,
            )
        style.change(
            lambda name: refresh_styles(name)[1:],
            inputs=style,
            outputs=[note, panel, run, vrun],
            api_visibility="private",
            show_progress="hidden",
        )
        demo.load(refresh_styles, inputs=style, outputs=[style, note, panel, run, vrun], api_visibility="private")
    demo.scenimefy_allowed_paths = [str(p) for p in example_folders]  # for launch()
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
        help="weights for a style: a translator folder, an authors' *_net_G.pth file or a Hub repo id (repeatable)",
    )
    parser.add_argument("--no-preload", action="store_true", help="load the opening style on first use, not at start")
    parser.add_argument(
        "--log-level",
        default="info",
        choices=["debug", "info", "warning"],
        help="server log detail (debug: every frame)",
    )
    args = parser.parse_args(argv)
    known = styles.styles()
    for item in args.weights:
        name, sep, source = item.partition("=")
        if not sep or not name or not source:
            parser.error(f"--weights takes STYLE=PATH, e.g. --weights shinkai=path/to/Shinkai_net_G.pth; got {item!r}")
        if name.lower() not in known:
            parser.error(f"--weights {item}: {name!r} is not a style (known: {', '.join(sorted(known))})")
        os.environ[styles.env_var(name)] = source
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
        examples=args.examples,
        concurrency_limit=args.concurrency,
        preload=not args.no_preload,
    )
    launch(demo, host=args.host, port=args.port, max_queue=args.max_queue, max_file_size=args.max_file_size)


if __name__ == "__main__":
    main()
