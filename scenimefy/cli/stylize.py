"""``scenimefy stylize`` (image files and folders) and ``scenimefy video``."""

from __future__ import annotations

import argparse
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path

from scenimefy.cli.common import CommandError, add_model_args, load_pipeline


def expand_inputs(inputs: Sequence[str]) -> list[tuple[Path, Path]]:
    """Files and folders -> (file, path relative to its input root) pairs, folders recursively."""
    from scenimefy.data.images import image_files

    found: list[tuple[Path, Path]] = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            files = image_files(path)
            found += [(p, p.relative_to(path)) for p in files]
        else:
            found.append((path, Path(path.name)))
    return found


def _output_paths(items: list[tuple[Path, Path]], out_dir: Path, suffix: str) -> list[Path]:
    taken: set[Path] = set()
    paths = []
    for _, rel in items:
        target = out_dir / rel.with_suffix(suffix)
        n = 1
        while target in taken:  # photo.jpg and photo.png in one run must not overwrite each other
            target = out_dir / rel.with_name(f"{rel.stem}_{n}{suffix}")
            n += 1
        taken.add(target)
        paths.append(target)
    return paths


def _stylize(args: argparse.Namespace) -> int:
    from tqdm.auto import tqdm

    from scenimefy.data.images import InvalidImageError, load_image

    items = expand_inputs(args.inputs)
    if not items:
        raise CommandError("no input images found")
    suffix = "." + args.format
    outputs = _output_paths(items, Path(args.output), suffix)
    pipe = load_pipeline(args)
    failures: list[tuple[Path, str]] = []
    done = 0
    with tqdm(total=len(items), desc=f"stylize ({pipe.style or 'custom'})", unit="img") as bar:
        for (src, _), dst in zip(items, outputs):
            try:
                with warnings.catch_warnings(record=True) as caught:
                    warnings.simplefilter("always")
                    image = load_image(src)
                for w in caught:
                    tqdm.write(f"warning: {w.message}")
                out = pipe.stylize_loaded([image], mode=args.mode, max_side=args.max_side)[0]
                dst.parent.mkdir(parents=True, exist_ok=True)
                _save(out, dst)
                done += 1
            except InvalidImageError as err:
                failures.append((src, str(err)))
                tqdm.write(f"skipped: {err}")
            except Exception as err:  # one bad file must not stop the batch
                failures.append((src, f"{type(err).__name__}: {err}"))
                tqdm.write(f"failed: {src}: {type(err).__name__}: {err}")
            bar.update(1)
    print(f"{done} stylized, {len(failures)} failed -> {args.output}")
    for src, reason in failures:
        print(f"  FAILED {src}: {reason}", file=sys.stderr)
    return 1 if failures else 0


def _save(array, path: Path) -> None:
    from PIL import Image

    image = Image.fromarray(array)
    if path.suffix.lower() in (".jpg", ".jpeg") and image.mode == "RGBA":
        image = image.convert("RGB")  # JPEG has no alpha; PNG keeps it
    image.save(path, quality=95) if path.suffix.lower() in (".jpg", ".jpeg") else image.save(path)


def add_stylize(sub) -> None:
    p = sub.add_parser(
        "stylize", help="stylize image files or folders", description="Stylize images into anime scenes."
    )
    p.add_argument("inputs", nargs="+", help="image files and/or folders (searched recursively)")
    p.add_argument("-o", "--output", required=True, help="output folder (mirrors input folder structure)")
    add_model_args(p)
    p.add_argument(
        "--max-side", type=int, default=None, help="cap the working resolution (output keeps the input size)"
    )
    p.add_argument("--mode", default="default", choices=["default", "exact", "reference"], help="inference mode")
    p.add_argument("--format", default="png", choices=["png", "jpg", "webp"], help="output format (png keeps alpha)")
    p.set_defaults(handler=_stylize)


def _video(args: argparse.Namespace) -> int:
    from scenimefy.inference.video import stylize_video

    if not Path(args.input).is_file():
        raise CommandError(f"{args.input}: no such file")
    pipe = load_pipeline(args)
    result = stylize_video(
        pipe,
        args.input,
        args.output,
        stabilize=args.stabilize,
        momentum=args.momentum,
        start=args.start,
        duration=args.duration,
        max_side=args.max_side,
        batch_size=args.batch_size,
        crf=args.crf,
        preset=args.preset,
        measure_flicker=args.flicker,
    )
    print(
        f"{result.frames} frames {result.width}x{result.height} in {result.seconds:.1f} s "
        f"({result.frames_per_second:.2f} frames/s), audio {result.audio} -> {result.path}"
    )
    if result.flicker is not None:
        print(f"flicker index {result.flicker.index:.3f} (static regions: {result.flicker.static:.2f} levels/frame)")
    return 0


def add_video(sub) -> None:
    p = sub.add_parser(
        "video",
        help="stylize a video (keeps timing, rotation and the audio track)",
        description="Stylize a video into an H.264 anime clip; the audio is copied (or re-encoded to AAC).",
    )
    p.add_argument("input", help="video file (anything FFmpeg reads)")
    p.add_argument("-o", "--output", required=True, help="output file: .mp4 (default choice), .m4v, .mov or .mkv")
    add_model_args(p)
    p.add_argument(
        "--stabilize",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="against flicker: smoothed InstanceNorm statistics and a motion-gated output filter (default: on)",
    )
    p.add_argument("--momentum", type=float, default=0.9, help="stabilisation: weight of the past frames' statistics")
    p.add_argument("--start", type=float, default=0.0, help="start at this many seconds")
    p.add_argument("--duration", type=float, default=None, help="stylize only this many seconds (a preview)")
    p.add_argument("--max-side", type=int, default=None, help="scale frames so the longer side is at most this")
    p.add_argument("--batch-size", type=int, default=4, help="frames per network call")
    p.add_argument("--crf", type=int, default=18, help="x264 quality: lower is better (18: visually lossless)")
    p.add_argument("--preset", default="medium", help="x264 speed preset (ultrafast .. veryslow)")
    p.add_argument("--flicker", action="store_true", help="also measure and print the flicker index")
    p.set_defaults(handler=_video)
