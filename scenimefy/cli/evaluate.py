"""``scenimefy evaluate``: FID/KID tables (the paper's Table 1) and L_BCE."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from scenimefy.cli.common import CommandError

if TYPE_CHECKING:
    from scenimefy.evaluation.temporal import WarpReport


def _segmenter(args: argparse.Namespace):
    """The Mask2Former of ``--segmenter`` (a folder or Hub id) on ``--device`` in ``--dtype`` (auto: fp32)."""
    import torch

    from scenimefy.hub.download import DEFAULT_SEGMENTER, load_segmenter

    dtype = torch.float32 if args.dtype == "auto" else getattr(torch, args.dtype)
    return load_segmenter(args.segmenter or DEFAULT_SEGMENTER, shortest_edge=args.seg_size).to(args.device, dtype)


def _evaluate_lbce(args: argparse.Namespace) -> int:
    import json

    from scenimefy.evaluation.lbce import evaluate_lbce

    result = evaluate_lbce(args.reference, args.translated, _segmenter(args), batch_size=args.batch_size)
    for label, names in (
        ("photos without a translation", result.unmatched_reference),
        ("translations without a photo", result.unmatched_translated),
    ):
        if names:
            print(f"warning: {len(names)} {label} (skipped), e.g. {names[0]}", file=sys.stderr)
    print(f"L_BCE (semantic consistency, lower is better): {result.mean:.4f} over {len(result.per_image)} pairs")
    if args.json:
        Path(args.json).write_text(
            json.dumps({"metric": "lbce", "mean": result.mean, "per_image": result.per_image}, indent=1)
        )
    return 0


def _evaluate_table(args: argparse.Namespace) -> int:
    """FID / KID (and L_BCE) of one or more translated folders: the paper's Table 1 as markdown."""
    from scenimefy.evaluation.fid import InceptionFeatures, evaluate_methods, markdown_table, rows_to_json

    methods: dict[str, str] = {}
    for item in args.translated:
        name, sep, folder = item.partition("=")
        name, folder = (name, folder) if sep and not Path(item).exists() else (Path(item).name, item)
        if name in methods:
            raise CommandError(f"two translated sets are called {name!r}: label them NAME=DIR")
        methods[name] = folder
    segmenter = None
    if "lbce" in args.metrics:
        if not args.photos:
            raise CommandError("--metric lbce next to fid/kid needs the source photos: --photos DIR")
        segmenter = _segmenter(args)
    extractor = None
    if {"fid", "kid"} & set(args.metrics):
        extractor = InceptionFeatures(args.preprocess, device=args.device, batch_size=args.batch_size)
    rows = evaluate_methods(
        methods,
        args.reference,
        metrics=args.metrics,
        photos=args.photos,
        segmenter=segmenter,
        extractor=extractor,
        max_images=args.max_images,
        cache_dir=args.cache_dir,
        kid_subsets_n=args.kid_subsets,
        kid_subset_size=args.kid_subset_size,
    )
    table = markdown_table(rows, args.metrics)
    ref_n = rows[0].extra.get("reference_images")
    print(
        table
        + (f"\nReference: {args.reference} ({ref_n} images); Inception features: {args.preprocess}." if ref_n else "")
    )
    if args.markdown:
        Path(args.markdown).write_text(table)
    if args.json:
        Path(args.json).write_text(rows_to_json(rows))
    return 0


def _evaluate_warp(args: argparse.Namespace) -> int:
    """E_warp of a stylized clip against its input clip (``scenimefy.evaluation.temporal``)."""
    import json

    from scenimefy.inference.video_io import VideoError

    if len(args.translated) != 1:
        raise CommandError("--metric warp takes two videos: INPUT.mp4 OUTPUT.mp4")
    src, out = args.reference, args.translated[0]
    for path in (src, out):
        if not Path(path).is_file():
            raise CommandError(f"{path}: no such file")
    try:
        report = video_warp_error(src, out, max_frames=args.max_images)
    except VideoError as err:
        raise CommandError(str(err)) from None
    except ValueError as err:
        raise CommandError(f"{out}: {err}") from None
    print(
        f"E_warp (Lai et al. 2018, Farneback flow on the input, lower is steadier): {report.output * 1e3:.4f} x 1e-3 "
        f"over {report.pairs} frame pairs\n"
        f"the input's own E_warp (the floor): {report.input * 1e3:.4f} x 1e-3; output / input: {report.ratio:.2f}x\n"
        f"flicker index: {report.flicker:.3f} (static regions: {report.flicker_static:.2f} levels/frame); "
        f"{report.masked * 100:.1f}% of the pixels masked as occluded"
    )
    if args.json:
        fields = {k: getattr(report, k) for k in ("output", "input", "pairs", "flicker", "flicker_static", "masked")}
        Path(args.json).write_text(json.dumps({"metric": "warp", **fields, "ratio": report.ratio}, indent=1))
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    if "warp" in args.metrics:
        if args.metrics != ["warp"]:
            raise CommandError("--metric warp compares two videos: give it alone")
        return _evaluate_warp(args)
    if args.metrics == ["lbce"] and len(args.translated) == 1 and not args.photos:
        args.translated = args.translated[0]  # the pairwise report of evaluate_lbce
        return _evaluate_lbce(args)
    return _evaluate_table(args)


#: What ``scenimefy evaluate --metric NAME[,NAME]`` computes.
METRICS = ("fid", "kid", "lbce", "warp")


def _metric_list(text: str) -> list[str]:
    names = [n.strip().lower() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in METRICS]
    if not names or unknown:
        raise argparse.ArgumentTypeError(f"choose from {', '.join(sorted(METRICS))} (comma-separated), got {text!r}")
    return list(dict.fromkeys(names))


def add_evaluate(sub) -> None:
    p = sub.add_parser(
        "evaluate",
        help="score translations: fid, kid (against an anime set), lbce (semantic consistency with the photos), "
        "warp (temporal consistency of a stylized video)",
        description="Evaluate translated images. fid/kid: REFERENCE is the anime set; several TRANSLATED folders "
        "(NAME=DIR) give one table row each (the paper's Table 1). lbce alone: REFERENCE is the source photos "
        "(pairs matched by file name); lbce next to fid/kid takes the photos from --photos. warp: REFERENCE is the "
        "input video, TRANSLATED the stylized one (E_warp, the input's own, the flicker index).",
    )
    p.add_argument(
        "--metric",
        dest="metrics",
        required=True,
        type=_metric_list,
        metavar="fid,kid,lbce|warp",
        help="metrics to compute, comma-separated",
    )
    p.add_argument(
        "reference", help="fid/kid: the anime reference folder (or a .npz of features); lbce alone: the source photos"
    )
    p.add_argument("translated", nargs="+", help="folder(s) of translated images, optionally labelled NAME=DIR")
    p.add_argument("--photos", default=None, help="source photos for lbce in a fid/kid table")
    p.add_argument(
        "--preprocess",
        default="pytorch-fid",
        choices=["pytorch-fid", "tf"],
        help="fid/kid Inception preprocessing (docs/evaluation.md)",
    )
    p.add_argument(
        "--max-images", type=int, default=None, help="fid/kid: use the first N images of each folder; warp: N frames"
    )
    p.add_argument("--cache-dir", default=None, help="fid/kid: cache Inception features of folders here")
    p.add_argument("--kid-subsets", type=int, default=100, help="kid: number of random subsets")
    p.add_argument("--kid-subset-size", type=int, default=1000, help="kid: images per subset (capped by the set sizes)")
    p.add_argument("--markdown", default=None, help="also write the table to this file")
    p.add_argument(
        "--segmenter",
        default=None,
        help="lbce: Mask2Former Hub id or local folder (default: facebook/mask2former-swin-base-IN21k-ade-semantic)",
    )
    p.add_argument("--seg-size", type=int, default=None, help="lbce: resize the shorter side to this for segmentation")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--device", default="cpu", help="torch device, e.g. cpu, cuda (default: cpu)")
    p.add_argument(
        "--dtype",
        default="auto",
        choices=["auto", "float32", "float16", "bfloat16"],
        help="model dtype (auto: float32)",
    )
    p.add_argument("--json", default=None, help="also write the results (lbce alone: per image) to this JSON file")
    p.set_defaults(handler=_evaluate)


def video_warp_error(
    input_path: str | os.PathLike, output_path: str | os.PathLike, *, max_frames: int | None = None
) -> WarpReport:
    """E_warp of a stylized clip against the clip it was made from (the input scaled to its size).

    The output's frames are paired with the input's first frames in order (a ``--start`` preview is
    not realigned: grade it against a clip cut at the same place).
    """
    from scenimefy.evaluation.temporal import pairs_warp_error
    from scenimefy.inference.video_io import probe_video, video_frames

    out = probe_video(output_path)
    outputs = video_frames(output_path, limit=max_frames)
    inputs = video_frames(input_path, size=(out.width, out.height), limit=max_frames)
    pairs = ((x, y) for x, y in zip(inputs, outputs))
    return pairs_warp_error(pairs)
