"""Every sentence the page shows about a problem: plain words about the user's file or choice and
what they can do in the app. No server paths, error numbers or exception names; what whoever runs
the server needs (the traceback, the path) goes to the log.

Also the small formatters the notes share (sizes, durations, the time left of a frame loop).
"""

from __future__ import annotations

import html
import logging
import os
import time
from pathlib import Path

import gradio as gr

from scenimefy.data.images import InvalidImageError
from scenimefy.inference.outputs import DiskFullError, is_disk_full
from scenimefy.inference.video_io import VideoError

log = logging.getLogger("scenimefy.app")

IMAGE_FORMATS = "JPEG, PNG, WebP, BMP, GIF or TIFF"
VIDEO_FORMATS = "MP4, MOV, WebM or MKV"


def user_error(message: str, title: str) -> gr.Error:
    """A toast with ``message`` (no traceback in the server log: it is not a server fault)."""
    return gr.Error(message, title=title, print_exception=False)


def shown_name(path: str | os.PathLike | None, fallback: str) -> str:
    """A file's name for a message: the name it had on the user's machine, never a server path."""
    name = Path(path).name if path else ""
    return html.escape(name) if name else fallback


def image_problem(err: InvalidImageError, shown: str) -> gr.Error:
    if err.kind == "too_large":
        limit = f"{err.limit / 1e6:.0f} megapixels" if err.limit else "the size limit"
        if err.size:
            w, h = err.size
            size = f"{w} x {h} pixels ({w * h / 1e6:.0f} megapixels)"
            return user_error(
                f"{shown} is too large: {size}. The largest photo this app takes is {limit}; "
                "make it smaller and upload it again.",
                "Photo too large",
            )
        return user_error(f"{shown} is too large: the largest photo this app takes is {limit}.", "Photo too large")
    if err.kind == "too_small":
        w, h = err.size or (0, 0)
        return user_error(
            f"{shown} is too small: {w} x {h} pixels. The style needs at least {err.limit} pixels on each side "
            "(below that the network only sees an enlarged blur, and the result says nothing about the photo); "
            "upload a larger photo.",
            "Photo too small",
        )
    if err.kind == "empty":
        return user_error(f"{shown} is empty (0 bytes). Upload the photo again.", "Empty file")
    if err.kind == "broken":
        return user_error(
            f"{shown} is damaged or incomplete, so it cannot be read: the file may not have finished "
            "saving or uploading. Try another copy of the photo.",
            "Damaged photo",
        )
    if err.kind == "missing":
        return user_error("The photo is no longer on the server. Upload it again.", "Photo missing")
    return user_error(f"{shown} is not a photo this app can read. Upload a {IMAGE_FORMATS} image.", "Not a photo")


def video_problem(err: VideoError, shown: str) -> gr.Error:
    messages = {
        "empty": (f"{shown} is empty (0 bytes). Upload the video again.", "Empty file"),
        "unreadable": (f"{shown} is not a video this app can read. Upload an {VIDEO_FORMATS} clip.", "Not a video"),
        "no_video": (f"{shown} has no picture, only sound. Upload a clip with video.", "No video track"),
        "undecodable": (
            f"{shown} cannot be read as a video: none of its frames decode. It may be damaged, or not a "
            "video at all; try another clip.",
            "Damaged video",
        ),
        "no_frames": (
            f"{shown} has no frames in the part you chose. Choose a longer part or another clip.",
            "Nothing to stylize",
        ),
        "missing": ("The video is no longer on the server. Upload it again.", "Video missing"),
    }
    message, title = messages.get(
        err.kind, (f"{shown} cannot be stylized with these settings. Try other settings.", "Bad video")
    )
    return user_error(message, title)


def failure(err: BaseException, what: str, context: str) -> gr.Error:
    """A sentence for a failure that is not the user's file: logged in full for the operator."""
    if isinstance(err, DiskFullError) or is_disk_full(err):
        log.error("%s: disk full: %s", context, err)
        return user_error(
            f"The server's disk is full, so the {what} could not be saved. Please try again later.", "Server full"
        )
    if isinstance(err, MemoryError):
        log.error("%s: out of memory", context)
        return user_error(
            f"The server ran out of memory for this {what}. Lower the resolution cap and try again.", "Out of memory"
        )
    log.exception("%s failed", context)
    return user_error(
        f"Something went wrong on the server while making the {what}. Please try again; if it happens again, "
        "the server's log says what failed.",
        "Something went wrong",
    )


def pixels(w: int, h: int) -> str:
    return f"{w} x {h} px"


def duration(seconds: float) -> str:
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
        return f"about {duration(rate * max(0, total - done))} left"
