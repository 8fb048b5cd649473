"""``scenimefy dataset anime | photos``: build training datasets."""

from __future__ import annotations

import argparse
import sys


def _dataset_anime(args: argparse.Namespace) -> int:
    from scenimefy.data.anime import build_anime_dataset
    from scenimefy.hub.cards import render

    report = build_anime_dataset(
        args.frame_list,
        args.films,
        args.output,
        size=args.size or None,
        image_format=args.format,
        allow_missing_films=args.skip_missing,
        sequential=args.sequential,
        render_card=render,
    )
    done = f"{report.decoded_frames} frames decoded, {report.skipped_frames} already done"
    print(f"{report.images} images ({done}) -> {report.out}")
    for title in report.missing_films:
        print(f"warning: {title}: no film file, skipped", file=sys.stderr)
    for title, frames in report.missing_frames.items():
        print(f"warning: {title}: {len(frames)} frame(s) past the end of the film, e.g. {frames[0]}", file=sys.stderr)
    return 1 if report.missing_frames else 0


def _dataset_photos(args: argparse.Namespace) -> int:
    from scenimefy.data.photos import export_photos

    n = export_photos(args.source, args.output, split=args.split, limit=args.limit)
    print(f"{n} photos -> {args.output}")
    return 0


def add_dataset(sub) -> None:
    p = sub.add_parser("dataset", help="build training datasets: the anime scenes from your films, real photos")
    kinds = p.add_subparsers(dest="kind", required=True, metavar="KIND")
    a = kinds.add_parser(
        "anime",
        help="extract the authors' frame list from films you own into an image dataset",
        description="Decode the frames listed in the authors' frameList.json from your own copies of the films "
        "(files named after the titles) and crop each into left/centre/right squares (docs/datasets.md).",
    )
    a.add_argument("--frame-list", required=True, help="the authors' frameList.json (film title -> frame numbers)")
    a.add_argument("--films", required=True, help="folder holding the films, named after their titles")
    a.add_argument("-o", "--output", required=True, help="output dataset folder (resumable)")
    a.add_argument("--size", type=int, default=1080, help="side of the square crops (0: the frame height, unresized)")
    a.add_argument("--format", default="png", choices=["png", "jpg"])
    a.add_argument("--skip-missing", action="store_true", help="build from the films found, skip titles without a file")
    a.add_argument("--sequential", action="store_true", help="count every decoded frame instead of seeking (slow)")
    a.set_defaults(handler=_dataset_anime)
    ph = kinds.add_parser("photos", help="write real photos (a Hub dataset such as LHQ, or a folder) as image files")
    ph.add_argument("source", help="Hub dataset id, datasets folder, or image folder")
    ph.add_argument("-o", "--output", required=True, help="output image folder")
    ph.add_argument("--split", default="train")
    ph.add_argument("--limit", type=int, default=None, help="at most this many photos")
    ph.set_defaults(handler=_dataset_photos)
