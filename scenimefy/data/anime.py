"""Rebuild the anime scene dataset of Scenimefy from the authors' frame list and films you own.

The authors cannot release the frames; they publish ``frameList.json`` (film title -> frame
numbers) and ``frame_extract.py``. This module does what that script does, with PyAV:

- **Frame numbers** are 0-based indices of decoded frames. ``frame_extract.py`` sets OpenCV's
  ``CAP_PROP_POS_FRAMES = n`` and reads one frame; OpenCV's FFmpeg backend turns the timestamp of
  each decoded frame into its index as ``round((pts - first_pts) * time_base * fps)``. We compute
  the same index from each frame's timestamp, after seeking to the keyframe before it, so a
  two-hour film is read in minutes, not decoded end to end. ``sequential=True`` instead counts
  every decoded frame (for files whose timestamps are unusable; the two agree on constant-rate
  video, which is what films are).
- **Crops** are ``crop_max_square`` of the script: squares of side H (the frame height) at
  x = 0 (left, crop 0), x = (W - H) // 2 (centre, crop 1) and x = W - H (right, crop 2).
  A 1920x1080 frame gives three 1080x1080 images. Frames of another height (``Children Who Chase
  Lost Voices`` is 1920x1072) are cropped the same way and the squares resized to ``size``
  (default 1080, Lanczos), so the dataset has one size; ``size=None`` keeps the native side.
- **Counts**: the paper's 5,958 images are 1,986 frames x 3 crops — the frame list as first
  published (``Anime_dataset/frameList.json``). The list in the authors' repository now
  (``anime_dataset/frameList.json``) names 2,620 frames (7,860 crops); use whichever you have.

Output, an image dataset ``datasets.load_dataset(OUT)`` reads (imagefolder + metadata)::

    OUT/README.md                                   dataset card (do-not-redistribute notice), written
                                                    by the card writer passed as ``render_card``
    OUT/train/metadata.jsonl                        file_name, film, frame, crop, crop_index, x, ...
    OUT/train/<film-slug>/frame_<frame:06d>_<crop_index>.png

Runs are resumable: frames whose three crops exist are not decoded again, every image is
written under a temporary name and renamed, and the metadata is rewritten after each film.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import numpy as np
from PIL import Image

VIDEO_SUFFIXES = (".mp4", ".mkv", ".avi", ".mov", ".m4v", ".webm", ".ts", ".m2ts", ".wmv")
CROPS = ("left", "centre", "right")
DEFAULT_SIZE = 1080
#: Decode forward instead of seeking when the next wanted frame is at most this many seconds ahead.
SEEK_AHEAD_S = 3.0
#: The card key ``scenimefy publish dataset`` reads to refuse public uploads.
NO_REDISTRIBUTION_KEY = "scenimefy_redistributable"


class AnimeDatasetError(ValueError):
    """A frame list or film folder that cannot be used; the message says what to fix."""


# ------------------------------------------------------------------------------------------------
# Frame list and films.


def read_frame_list(path: str | os.PathLike) -> dict[str, list[int]]:
    """``{film title: sorted unique frame numbers}`` from the authors' ``frameList.json``."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise AnimeDatasetError(f"{path}: no such frame list") from None
    except (OSError, json.JSONDecodeError) as err:
        raise AnimeDatasetError(f"{path}: not a JSON frame list ({err})") from None
    if not isinstance(data, dict) or not data:
        raise AnimeDatasetError(f"{path}: expected a JSON object {{film title: [frame numbers]}}")
    frames: dict[str, list[int]] = {}
    for title, numbers in data.items():
        if not isinstance(numbers, list) or not all(isinstance(n, int) and n >= 0 for n in numbers):
            raise AnimeDatasetError(f"{path}: {title!r} must map to a list of non-negative integers")
        frames[title] = sorted(set(numbers))
    return frames


def normalise_title(title: str) -> str:
    """Case, punctuation and spacing do not matter: "Someone's Gaze" == "Someones Gaze"."""
    return re.sub(r"[^0-9a-z]+", "", title.lower().replace("&", "and"))


def slug(title: str) -> str:
    return re.sub(r"[^0-9a-z]+", "-", title.lower()).strip("-") or "film"


def match_films(titles: Iterable[str], films_dir: str | os.PathLike) -> tuple[dict[str, Path], list[str]]:
    """(title -> video file, unmatched titles): a file matches when its name without extension
    equals the title up to case and punctuation (the authors' script wants ``<title>.mp4|.mkv``)."""
    root = Path(films_dir)
    if not root.is_dir():
        raise AnimeDatasetError(f"{root}: no such folder of films")
    by_key: dict[str, list[Path]] = {}
    for path in sorted(root.rglob("*")):
        if path.is_file() and path.suffix.lower() in VIDEO_SUFFIXES:
            by_key.setdefault(normalise_title(path.stem), []).append(path)
    found, missing = {}, []
    for title in titles:
        candidates = by_key.get(normalise_title(title), [])
        if len(candidates) > 1:
            raise AnimeDatasetError(f"{title!r} matches several files: {', '.join(map(str, candidates))}; keep one")
        if candidates:
            found[title] = candidates[0]
        else:
            missing.append(title)
    return found, missing


# ------------------------------------------------------------------------------------------------
# Decoding exactly the listed frames.


def _index(pts: int, first_pts: int, time_base: Fraction, fps: Fraction) -> int:
    # OpenCV: (int64)(fps * seconds + 0.5), exact here in rationals.
    return math.floor((pts - first_pts) * time_base * fps + Fraction(1, 2))


def read_frames(
    path: str | os.PathLike, frames: Iterable[int], *, sequential: bool = False
) -> Iterator[tuple[int, np.ndarray | None]]:
    """Yield ``(frame number, RGB uint8 (H, W, 3))`` for the wanted frames in increasing order;
    the array is None for a frame past the end of the video."""
    import av

    targets = sorted(set(frames))
    try:
        container = av.open(str(path))
    except av.FFmpegError as err:
        raise AnimeDatasetError(f"{path}: not a video FFmpeg can read ({err})") from None
    with container:
        if not container.streams.video:
            raise AnimeDatasetError(f"{path}: has no video stream")
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        if sequential:
            yield from _read_sequential(container, stream, targets)
        else:
            yield from _read_seeking(container, stream, targets, path)


def _read_sequential(container, stream, targets: list[int]) -> Iterator[tuple[int, np.ndarray | None]]:
    wanted = iter(targets)
    target = next(wanted, None)
    for index, frame in enumerate(container.decode(stream)):
        while target is not None and target == index:
            yield target, frame.to_ndarray(format="rgb24")
            target = next(wanted, None)
        if target is None:
            return
    while target is not None:  # past the end
        yield target, None
        target = next(wanted, None)


def _read_seeking(container, stream, targets: list[int], path) -> Iterator[tuple[int, np.ndarray | None]]:
    fps = Fraction(stream.guessed_rate or stream.average_rate or 0)
    time_base = Fraction(stream.time_base)
    decoder = container.decode(stream)
    current = next(decoder, None)
    if current is None:
        raise AnimeDatasetError(f"{path}: no video frames could be decoded")
    if current.pts is None or not fps:
        raise AnimeDatasetError(f"{path}: frames carry no timestamps or rate; use sequential=True (--sequential)")
    first_pts = current.pts
    index = 0
    ahead = max(1, int(fps * Fraction(SEEK_AHEAD_S)))
    for target in targets:
        if target < index or target > index + ahead:
            # Land on the keyframe before the target; if a demuxer lands after it, go further back.
            for back_s in (0, 10, 120, None):
                start = (
                    first_pts
                    if back_s is None
                    else first_pts + math.floor((Fraction(target) / fps - back_s) / time_base)
                )
                container.seek(max(start, first_pts), stream=stream, backward=True, any_frame=False)
                decoder = container.decode(stream)
                current = next(decoder, None)
                index = _index(current.pts, first_pts, time_base, fps) if current is not None else math.inf
                if index <= target:
                    break
        while current is not None and index < target:
            current = next(decoder, None)
            if current is not None:
                index = _index(current.pts, first_pts, time_base, fps)
        if current is not None and index == target:
            yield target, current.to_ndarray(format="rgb24")
        else:  # past the end, or a hole in a variable-rate stream
            yield target, None


# ------------------------------------------------------------------------------------------------
# Crops and the dataset.


def square_crops(rgb: np.ndarray, size: int | None = DEFAULT_SIZE) -> list[tuple[str, int, Image.Image]]:
    """``[(crop name, x offset, square image)]`` for left, centre and right (``crop_max_square``)."""
    h, w = rgb.shape[:2]
    if w < h:
        raise AnimeDatasetError(f"{w}x{h} frame is portrait: three square crops need a landscape frame")
    out = []
    for name, x in zip(CROPS, (0, (w - h) // 2, w - h)):
        image = Image.fromarray(np.ascontiguousarray(rgb[:, x : x + h]))
        if size is not None and h != size:
            image = image.resize((size, size), Image.LANCZOS)
        out.append((name, x, image))
    return out


@dataclass
class BuildReport:
    out: Path
    images: int = 0  # crops listed in the metadata (written now or by an earlier run)
    decoded_frames: int = 0  # frames decoded by this run
    skipped_frames: int = 0  # frames already complete from an earlier run
    missing_frames: dict[str, list[int]] = field(default_factory=dict)  # past the end of a film
    missing_films: list[str] = field(default_factory=list)  # titles with no file


def _save_atomic(image: Image.Image, path: Path) -> None:
    tmp = path.with_name(path.name + ".part")
    image.save(
        tmp, format="PNG" if path.suffix == ".png" else "JPEG", **({"quality": 95} if path.suffix == ".jpg" else {})
    )
    os.replace(tmp, path)


def _write_text_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".part")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def build_anime_dataset(
    frame_list: str | os.PathLike | dict[str, list[int]],
    films_dir: str | os.PathLike,
    out: str | os.PathLike,
    *,
    size: int | None = DEFAULT_SIZE,
    image_format: str = "png",
    allow_missing_films: bool = False,
    sequential: bool = False,
    progress: bool = True,
    render_card: Callable[..., str],
) -> BuildReport:
    """Extract and crop the listed frames into an image dataset at ``out`` (see module docstring).

    ``render_card`` is the card writer, ``scenimefy.hub.cards.render`` (``data`` does not import
    ``hub``): it turns :func:`dataset_card`'s front matter, title and sections into ``README.md``.

    Raises :class:`AnimeDatasetError` listing the titles without a file in ``films_dir`` unless
    ``allow_missing_films`` (then they are skipped and reported).
    """
    from tqdm.auto import tqdm

    if image_format not in ("png", "jpg"):
        raise AnimeDatasetError(f"image_format must be 'png' or 'jpg', got {image_format!r}")
    frames = frame_list if isinstance(frame_list, dict) else read_frame_list(frame_list)
    films, missing = match_films(frames, films_dir)
    if missing and not allow_missing_films:
        found = sorted(p.name for p in Path(films_dir).rglob("*") if p.suffix.lower() in VIDEO_SUFFIXES)
        raise AnimeDatasetError(
            f"no file in {films_dir} for {len(missing)} film(s): {', '.join(repr(t) for t in missing)}. "
            f"Name each file after its title (case and punctuation do not matter, e.g. 'Your Name.mkv'); "
            f"video files found: {', '.join(found) or 'none'}. To build from the others, allow missing films "
            "(--skip-missing)."
        )
    out = Path(out)
    data_dir = out / "train"
    data_dir.mkdir(parents=True, exist_ok=True)
    report = BuildReport(out=out, missing_films=missing)
    known = _read_metadata(data_dir / "metadata.jsonl")  # file_name -> row, from an earlier run

    def listed() -> list[dict]:
        # Metadata rows in frame-list order, for images that exist (a resumed run adds to them).
        return [known[f] for t in films for n in frames[t] for f in _names(t, n, image_format) if f in known]

    total = sum(len(frames[t]) for t in films)
    with tqdm(total=total, desc="anime frames", unit="frame", disable=not progress) as bar:
        for title, video in films.items():
            bar.set_postfix_str(title[:30])
            (data_dir / slug(title)).mkdir(exist_ok=True)
            names = {n: _names(title, n, image_format) for n in frames[title]}
            todo = [n for n in frames[title] if not all(f in known and (data_dir / f).is_file() for f in names[n])]
            report.skipped_frames += len(frames[title]) - len(todo)
            bar.update(len(frames[title]) - len(todo))
            for count, (n, rgb) in enumerate(read_frames(video, todo, sequential=sequential) if todo else ()):
                if rgb is None:
                    report.missing_frames.setdefault(title, []).append(n)
                else:
                    for name, (crop, x, image) in zip(names[n], square_crops(rgb, size)):
                        _save_atomic(image, data_dir / name)
                        known[name] = _row(name, title, n, crop, x, rgb.shape)
                    report.decoded_frames += 1
                if count % 25 == 24:  # a killed run keeps what it wrote
                    _write_text_atomic(data_dir / "metadata.jsonl", _jsonl(listed()))
                bar.update(1)
            _write_text_atomic(data_dir / "metadata.jsonl", _jsonl(listed()))
    rows = listed()
    report.images = len(rows)
    _write_text_atomic(data_dir / "metadata.jsonl", _jsonl(rows))
    front, title, sections = dataset_card(report, frames, size)
    _write_text_atomic(out / "README.md", render_card(front, title, sections, license=None))
    return report


def _names(title: str, n: int, image_format: str) -> list[str]:
    return [f"{slug(title)}/frame_{n:06d}_{i}.{image_format}" for i in range(len(CROPS))]


def _read_metadata(path: Path) -> dict[str, dict]:
    if not path.is_file():
        return {}
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return {row["file_name"]: row for row in rows}


def _jsonl(rows: list[dict]) -> str:
    return "".join(json.dumps(row) + "\n" for row in rows)


def _row(name: str, title: str, n: int, crop: str, x: int, shape: tuple) -> dict:
    return {
        "file_name": name,
        "film": title,
        "frame": n,
        "crop": crop,
        "crop_index": CROPS.index(crop),
        "x": x,
        "source_width": shape[1],
        "source_height": shape[0],
    }


def dataset_card(report: BuildReport, frames: dict[str, list[int]], size: int | None) -> tuple[dict, str, list[str]]:
    """What the dataset's card says: (front matter with the do-not-redistribute key, title, sections:
    the copyright notice, films used, columns); the card writer renders it."""
    films = [t for t in frames if t not in report.missing_films]
    front = {
        "license": "other",
        "license_name": "film-frames-personal-research-use",
        "pretty_name": "Scenimefy anime scenes (rebuilt locally)",
        "task_categories": ["image-to-image"],
        "tags": ["anime", "scenimefy"],
        NO_REDISTRIBUTION_KEY: False,
    }
    rows = []
    for title in frames:
        state = "no file" if title in report.missing_films else str(len(report.missing_frames.get(title, [])))
        rows.append(f"| {title} | {len(frames[title])} | {state} |")
    sections = [
        "**Copyright.** These images are frames of commercial films. Build this dataset only from copies of the films "
        "you own, use it for research, and do not redistribute it (no public Hub upload: `scenimefy publish dataset` "
        "refuses to make it public).\n",
        "Built by `scenimefy dataset anime` from the frame list of Scenimefy (Jiang et al., ICCV 2023): "
        f"{report.images} images = frames x 3 square crops (left, centre, right; side = frame height"
        + (f", resized to {size}x{size}" if size else "")
        + ").\n",
        "| Film | Frames listed | Frames missing |\n| :--- | ---: | ---: |\n" + "\n".join(rows) + "\n",
        "Columns: `image`, `film`, `frame` (0-based decoded-frame index, as OpenCV's `CAP_PROP_POS_FRAMES`), `crop` "
        "(left / centre / right), `crop_index` (0 / 1 / 2, as in the authors' `frame_<n>_<i>.png`), `x` (crop offset "
        "in the source frame), `source_width`, `source_height`.\n",
        '```python\nimport datasets\n\nds = datasets.load_dataset("<this folder>", split="train")\n```\n',
        f"Films used: {len(films)} of {len(frames)}.\n",
    ]
    return front, "Anime scene dataset of Scenimefy (rebuilt from your own films)", sections
