"""Files in and out of the app: upload checks, the scratch folder for results, example media,
working sizes, and giving freed memory back to the operating system."""

from __future__ import annotations

import contextlib
import ctypes
import gc
import os
import shutil
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import gradio as gr

from scenimefy.data.images import InvalidImageError, image_header, max_pixels, open_image
from scenimefy.inference.pipeline import MIN_SIDE
from scenimefy.webapp.messages import image_problem, shown_name

VIDEO_SUFFIXES = {".mp4", ".mov", ".mkv", ".webm", ".m4v", ".avi"}
OUTPUT_TTL_S = 3600  # results older than this are removed from the app's scratch folder


def checked_photo_uploads(component: gr.Image) -> gr.Image:
    """Make ``component`` answer an upload it cannot use with a sentence: a photo above the pixel
    limit is named as too large (with its size and the limit) before anything decodes it, a file
    that is not an image as such (Gradio passes a ``gr.Error`` raised in preprocessing through).

    The instance's method is wrapped rather than subclassing ``gr.Image``: Gradio writes a .pyi
    stub next to the module of every Component subclass."""
    preprocess = component.preprocess

    def checked(payload):
        path = getattr(payload, "path", None)
        shown = shown_name(getattr(payload, "orig_name", None) or path, "This file")
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


def check_photo(path: str | os.PathLike) -> tuple[int, int]:
    """The photo's (width, height) once it has decoded in full with the loader the pipeline uses
    (``open_image``: empty, too large, damaged or truncated, not an image), and is at least
    ``MIN_SIDE`` px on each side; raises :class:`InvalidImageError` otherwise ("too_small" with
    ``size`` and ``limit`` = ``MIN_SIDE``).

    ``MIN_SIDE`` (16 px) is the smallest input the pipeline stylizes as it is: a photo with a
    shorter side is first enlarged to it, so the network sees an upscaled blur of a few pixels
    (4 x 4 at the full translator's bottleneck, after its two halvings) rather than a scene, and
    the result, scaled back down, says nothing about the photo. The library still accepts such
    inputs; the app refuses them with a sentence."""
    with open_image(path) as image:
        size = image.size
    check_side(size, str(path))
    return size


def check_side(size: tuple[int, int], name: str) -> None:
    """Raise "too_small" when (width, height) has a side below ``MIN_SIDE`` (see :func:`check_photo`)."""
    if min(size) < MIN_SIDE:
        message = f"{name}: {size[0]}x{size[1]} is below {MIN_SIDE} px"
        raise InvalidImageError(message, "too_small", size=size, limit=MIN_SIDE)


def working_side(requested: float | None, server_cap: int) -> int:
    """The longer side the network works at: the user's choice within [MIN_SIDE, the server's cap]."""
    side = int(requested or server_cap)
    return max(MIN_SIDE, min(side, server_cap))


def scratch_dir() -> Path:
    """The app's folder for results; old ones are removed on each request."""
    folder = Path(tempfile.gettempdir()) / "scenimefy-app"
    folder.mkdir(exist_ok=True)
    now = time.time()
    for old in folder.iterdir():
        try:
            if now - old.stat().st_mtime > OUTPUT_TTL_S:
                shutil.rmtree(old) if old.is_dir() else old.unlink()
        except OSError:
            pass
    return folder


def result_folder(kind: str) -> Path:
    """A new private folder for one result ("image", "video")."""
    return Path(tempfile.mkdtemp(prefix=f"{kind}-", dir=scratch_dir()))


def examples(folders: Sequence[Path], suffixes: set[str]) -> list[str]:
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


def release_memory() -> None:
    """Give freed memory back to the OS (glibc keeps freed heap pages otherwise)."""
    gc.collect()
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)
