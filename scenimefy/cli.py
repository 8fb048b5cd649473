"""``scenimefy`` command line: stylize, convert, styles, download (and the stage tools).

Each subcommand is a ``_add_<name>(subparsers)`` that registers its arguments and a handler.
Heavy imports happen inside handlers so ``scenimefy --help`` stays fast. User errors print one
line and exit 2; per-file failures in batch commands are summarised and exit 1.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path
from typing import Callable, Sequence

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff", ".gif"}


class CommandError(Exception):
    """A user error: printed as one line, exit status 2."""


def _load_pipeline(args: argparse.Namespace):
    import torch

    from .pipeline import ScenimefyPipeline

    dtype = {"auto": None, "float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}[args.dtype]
    return ScenimefyPipeline.from_pretrained(args.weights, style=args.style, device=args.device, dtype=dtype)


def _add_model_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--style", default=None, help="registered style (default: shinkai; see `scenimefy styles`)")
    parser.add_argument("--weights", default=None, help="translator folder, reference *_net_G.pth, or Hub repo id")
    parser.add_argument("--device", default="cpu", help="torch device, e.g. cpu, cuda, cuda:1, mps (default: cpu)")
    parser.add_argument(
        "--dtype",
        default="auto",
        choices=["auto", "float32", "float16", "bfloat16"],
        help="weights dtype (auto: fp32 weights, fastest compute the device supports)",
    )


def expand_inputs(inputs: Sequence[str]) -> list[tuple[Path, Path]]:
    """Files and folders -> (file, path relative to its input root) pairs, folders recursively."""
    found: list[tuple[Path, Path]] = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
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

    from .images import InvalidImageError, load_image

    items = expand_inputs(args.inputs)
    if not items:
        raise CommandError("no input images found")
    suffix = "." + args.format
    outputs = _output_paths(items, Path(args.output), suffix)
    pipe = _load_pipeline(args)
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


def _add_stylize(sub) -> None:
    p = sub.add_parser("stylize", help="stylize image files or folders", description="Stylize images into anime scenes.")
    p.add_argument("inputs", nargs="+", help="image files and/or folders (searched recursively)")
    p.add_argument("-o", "--output", required=True, help="output folder (mirrors input folder structure)")
    _add_model_args(p)
    p.add_argument("--max-side", type=int, default=None, help="cap the working resolution (output keeps the input size)")
    p.add_argument("--mode", default="default", choices=["default", "exact", "reference"], help="inference mode")
    p.add_argument("--format", default="png", choices=["png", "jpg", "webp"], help="output format (png keeps alpha)")
    p.set_defaults(handler=_stylize)


def _convert(args: argparse.Namespace) -> int:
    import argparse as _argparse

    import torch

    from .convert import convert_reference_translator, safe_torch_load

    src = Path(args.src)
    # The authors' StyleGAN2 .pt files pickle their argparse Namespace; allow exactly that class.
    with torch.serialization.safe_globals([_argparse.Namespace]):
        state = safe_torch_load(src)
    if any(key in state for key in ("g_ema", "g", "d")):
        from . import convert

        if not hasattr(convert, "convert_stylegan2_checkpoint"):
            raise CommandError("StyleGAN2 conversion is not available in this build")
        written = convert.convert_stylegan2_checkpoint(src, args.out_dir)
        print(f"converted StyleGAN2 checkpoint {src} -> {written}")
        return 0
    model = convert_reference_translator(src, args.out_dir)
    cfg = model.config
    print(f"converted translator {src} (ngf={cfg.ngf}, n_blocks={cfg.n_blocks}, antialias={cfg.antialias}) -> {args.out_dir}")
    return 0


def _add_convert(sub) -> None:
    p = sub.add_parser(
        "convert",
        help="convert the authors' .pth/.pt checkpoints to config.json + safetensors",
        description="Convert a reference translator (*_net_G.pth) or a rosinality StyleGAN2 checkpoint (.pt).",
    )
    p.add_argument("src", help="checkpoint file")
    p.add_argument("out_dir", help="output folder")
    p.set_defaults(handler=_convert)


def _styles(args: argparse.Namespace) -> int:
    from . import styles

    for name, style in sorted(styles.styles().items()):
        print(f"{name:12s} {styles.style_status(name):14s} {style.title}: {style.description} [{styles.style_source(name)}]")
    if styles.index_source():
        print(f"(styles index: {styles.index_source()})")
    return 0


def _add_styles(sub) -> None:
    p = sub.add_parser("styles", help="list registered styles and whether their weights are available")
    p.set_defaults(handler=_styles)


def _download(args: argparse.Namespace) -> int:
    from . import styles

    source, subfolder = styles.resolve_style(args.style)
    print(f"{args.style}: ready at {source}{'/' + subfolder if subfolder else ''}")
    return 0


def _add_download(sub) -> None:
    p = sub.add_parser("download", help="fetch and convert a style's weights into the local cache")
    p.add_argument("style")
    p.set_defaults(handler=_download)


def _evaluate_lbce(args: argparse.Namespace) -> int:
    import json

    import torch

    from .evaluation_lbce import evaluate_lbce
    from .selection import DEFAULT_SEGMENTER, SemanticSegmenter

    dtype = {"auto": torch.float32, "float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}[args.dtype]
    segmenter = SemanticSegmenter.from_pretrained(args.segmenter or DEFAULT_SEGMENTER, shortest_edge=args.seg_size).to(args.device, dtype)
    result = evaluate_lbce(args.reference, args.translated, segmenter, batch_size=args.batch_size)
    for label, names in (("photos without a translation", result.unmatched_reference),
                         ("translations without a photo", result.unmatched_translated)):
        if names:
            print(f"warning: {len(names)} {label} (skipped), e.g. {names[0]}", file=sys.stderr)
    print(f"L_BCE (semantic consistency, lower is better): {result.mean:.4f} over {len(result.per_image)} pairs")
    if args.json:
        Path(args.json).write_text(json.dumps({"metric": "lbce", "mean": result.mean, "per_image": result.per_image}, indent=1))
    return 0


def _evaluate_table(args: argparse.Namespace) -> int:
    """FID / KID (and L_BCE) of one or more translated folders: the paper's Table 1 as markdown."""
    from .evaluation import InceptionFeatures, evaluate_methods, markdown_table, rows_to_json

    methods: dict[str, str] = {}
    for item in args.translated:
        name, sep, folder = item.partition("=")
        name, folder = (name, folder) if sep and not Path(item).exists() else (Path(item).name, item)
        if name in methods:
            raise CommandError(f"two translated sets are called {name!r}: label them NAME=DIR")
        methods[name] = folder
    segmenter = None
    if "lbce" in args.metrics:
        import torch

        from .selection import DEFAULT_SEGMENTER, SemanticSegmenter

        if not args.photos:
            raise CommandError("--metric lbce next to fid/kid needs the source photos: --photos DIR")
        dtype = {"auto": torch.float32, "float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}[args.dtype]
        segmenter = SemanticSegmenter.from_pretrained(args.segmenter or DEFAULT_SEGMENTER, shortest_edge=args.seg_size).to(args.device, dtype)
    extractor = None
    if {"fid", "kid"} & set(args.metrics):
        extractor = InceptionFeatures(args.preprocess, device=args.device, batch_size=args.batch_size)
    rows = evaluate_methods(
        methods, args.reference, metrics=args.metrics, photos=args.photos, segmenter=segmenter, extractor=extractor,
        max_images=args.max_images, cache_dir=args.cache_dir, kid_subsets_n=args.kid_subsets, kid_subset_size=args.kid_subset_size,
    )  # fmt: skip
    table = markdown_table(rows)
    ref_n = rows[0].extra.get("reference_images")
    print(table + (f"\nReference: {args.reference} ({ref_n} images); Inception features: {args.preprocess}." if ref_n else ""))
    if args.markdown:
        Path(args.markdown).write_text(table)
    if args.json:
        Path(args.json).write_text(rows_to_json(rows))
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    if args.metrics == ["lbce"] and len(args.translated) == 1 and not args.photos:
        args.translated = args.translated[0]  # the pairwise report of evaluate_lbce
        return _evaluate_lbce(args)
    return _evaluate_table(args)


#: ``scenimefy evaluate --metric NAME[,NAME]``: metric name -> handler(args). Register new metrics here.
METRICS: dict[str, Callable[[argparse.Namespace], int]] = {"lbce": _evaluate_lbce, "fid": _evaluate_table, "kid": _evaluate_table}


def _metric_list(text: str) -> list[str]:
    names = [n.strip().lower() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in METRICS]
    if not names or unknown:
        raise argparse.ArgumentTypeError(f"choose from {', '.join(sorted(METRICS))} (comma-separated), got {text!r}")
    return list(dict.fromkeys(names))


def _add_evaluate(sub) -> None:
    p = sub.add_parser(
        "evaluate",
        help="score translations: fid, kid (against an anime set), lbce (semantic consistency with the photos)",
        description="Evaluate translated images. fid/kid: REFERENCE is the anime set; several TRANSLATED folders "
        "(NAME=DIR) give one table row each (the paper's Table 1). lbce alone: REFERENCE is the source photos "
        "(pairs matched by file name); lbce next to fid/kid takes the photos from --photos.",
    )
    p.add_argument("--metric", dest="metrics", required=True, type=_metric_list, metavar="fid,kid,lbce",
                   help="metrics to compute, comma-separated")  # fmt: skip
    p.add_argument("reference", help="fid/kid: the anime reference folder (or a .npz of features); lbce alone: the source photos")
    p.add_argument("translated", nargs="+", help="folder(s) of translated images, optionally labelled NAME=DIR")
    p.add_argument("--photos", default=None, help="source photos for lbce in a fid/kid table")
    p.add_argument("--preprocess", default="pytorch-fid", choices=["pytorch-fid", "tf"],
                   help="fid/kid Inception preprocessing (docs/evaluation.md)")  # fmt: skip
    p.add_argument("--max-images", type=int, default=None, help="fid/kid: use the first N images of each folder")
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
    p.add_argument("--dtype", default="auto", choices=["auto", "float32", "float16", "bfloat16"], help="model dtype (auto: float32)")
    p.add_argument("--json", default=None, help="also write the results (lbce alone: per image) to this JSON file")
    p.set_defaults(handler=_evaluate)


def _video(args: argparse.Namespace) -> int:
    from .video import stylize_video

    if not Path(args.input).is_file():
        raise CommandError(f"{args.input}: no such file")
    pipe = _load_pipeline(args)
    result = stylize_video(
        pipe, args.input, args.output, stabilize=args.stabilize, momentum=args.momentum, start=args.start,
        duration=args.duration, max_side=args.max_side, batch_size=args.batch_size, crf=args.crf, preset=args.preset,
        measure_flicker=args.flicker,
    )  # fmt: skip
    print(
        f"{result.frames} frames {result.width}x{result.height} in {result.seconds:.1f} s "
        f"({result.frames_per_second:.2f} frames/s), audio {result.audio} -> {result.path}"
    )
    if result.flicker is not None:
        print(f"flicker index {result.flicker.index:.3f} (static regions: {result.flicker.static:.2f} levels/frame)")
    return 0


def _add_video(sub) -> None:
    p = sub.add_parser(
        "video",
        help="stylize a video (keeps timing, rotation and the audio track)",
        description="Stylize a video into an H.264 anime clip; the audio is copied (or re-encoded to AAC).",
    )
    p.add_argument("input", help="video file (anything FFmpeg reads)")
    p.add_argument("-o", "--output", required=True, help="output file: .mp4 (default choice), .m4v, .mov or .mkv")
    _add_model_args(p)
    p.add_argument("--stabilize", action=argparse.BooleanOptionalAction, default=True,
                   help="against flicker: smoothed InstanceNorm statistics and a motion-gated output filter (default: on)")  # fmt: skip
    p.add_argument("--momentum", type=float, default=0.9, help="stabilisation: weight of the past frames' statistics")
    p.add_argument("--start", type=float, default=0.0, help="start at this many seconds")
    p.add_argument("--duration", type=float, default=None, help="stylize only this many seconds (a preview)")
    p.add_argument("--max-side", type=int, default=None, help="scale frames so the longer side is at most this")
    p.add_argument("--batch-size", type=int, default=4, help="frames per network call")
    p.add_argument("--crf", type=int, default=18, help="x264 quality: lower is better (18: visually lossless)")
    p.add_argument("--preset", default="medium", help="x264 speed preset (ultrafast .. veryslow)")
    p.add_argument("--flicker", action="store_true", help="also measure and print the flicker index")
    p.set_defaults(handler=_video)


COMMANDS: list[Callable] = [_add_stylize, _add_convert, _add_styles, _add_download, _add_evaluate, _add_video]


def _publish(args: argparse.Namespace) -> int:
    from . import publish

    metrics: object = args.metrics_file
    if args.metric:
        metrics = {}
        for item in args.metric:
            name, sep, value = item.partition("=")
            if not sep:
                raise CommandError(f"--metric takes NAME=VALUE, got {item!r}")
            try:
                metrics[name] = float(value)
            except ValueError:
                metrics[name] = value
    common = dict(title=args.title, private=args.private, dry_run_dir=args.dry_run)
    if args.kind == "translator":
        result = publish.publish_translator(args.folder, args.repo_id, style=args.style, metrics=metrics,
                                            training_config=args.training_config, license=args.license, **common)  # fmt: skip
    elif args.kind == "stylegan2":
        result = publish.publish_stylegan2(args.folder, args.repo_id, metrics=metrics, training_config=args.training_config,
                                           license=args.license, **common)  # fmt: skip
    else:
        result = publish.publish_dataset(args.folder, args.repo_id, **common)
    if result.url is None:
        print(f"dry run: {len(result.files)} files for {result.repo_type} {result.repo_id} in {result.folder} (nothing uploaded)")
    else:
        print(f"uploaded {len(result.files)} files to {result.url}")
    for name in result.files:
        print(f"  {name}")
    return 0


def _add_publish(sub) -> None:
    p = sub.add_parser(
        "publish",
        help="upload a translator, StyleGAN2 networks or a dataset to the Hugging Face Hub (with a card)",
        description="Publish to the Hugging Face Hub. The token comes from HF_TOKEN or `hf auth login` and is never "
        "printed. --dry-run DIR writes exactly what would be uploaded and uploads nothing.",
    )
    kinds = p.add_subparsers(dest="kind", required=True, metavar="KIND")
    for kind, help_text in (
        ("translator", "a translator folder (config.json + safetensors, or a training run's translator/)"),
        ("stylegan2", "StyleGAN2 networks: a config.json + safetensors folder, or generator/ + discriminator/"),
        ("dataset", "a dataset folder (README card + data files)"),
    ):
        k = kinds.add_parser(kind, help=help_text, description=help_text)
        k.add_argument("folder")
        k.add_argument("repo_id", help="owner/name on the Hub")
        k.add_argument("--dry-run", metavar="DIR", default=None, help="write the repository to DIR instead of uploading")
        k.add_argument("--private", action="store_true", help="create the repository private")
        k.add_argument("--title", default=None, help="card title")
        if kind != "dataset":
            k.add_argument("--metric", action="append", default=[], metavar="NAME=VALUE", help="a metric for the card (repeatable)")
            k.add_argument("--metrics-file", default=None, help="metrics JSON ({name: value} or `scenimefy evaluate --json`)")
            k.add_argument("--training-config", default=None, help="training config file (default: training_config.* next to the folder)")
            k.add_argument("--license", default="s-lab", help="s-lab (weights derived from the authors', default) or an SPDX id")
        if kind == "translator":
            k.add_argument("--style", default=None, help="style name for the card and tags (e.g. hosoda)")
        k.set_defaults(handler=_publish, metric=[], metrics_file=None, training_config=None, license="s-lab", style=None)


def _dataset_anime(args: argparse.Namespace) -> int:
    from .data.anime import build_anime_dataset

    report = build_anime_dataset(
        args.frame_list, args.films, args.output, size=args.size or None, image_format=args.format,
        allow_missing_films=args.skip_missing, sequential=args.sequential,
    )  # fmt: skip
    print(f"{report.images} images ({report.decoded_frames} frames decoded, {report.skipped_frames} already done) -> {report.out}")
    for title in report.missing_films:
        print(f"warning: {title}: no film file, skipped", file=sys.stderr)
    for title, frames in report.missing_frames.items():
        print(f"warning: {title}: {len(frames)} frame(s) past the end of the film, e.g. {frames[0]}", file=sys.stderr)
    return 1 if report.missing_frames else 0


def _dataset_photos(args: argparse.Namespace) -> int:
    from .data.photos import export_photos

    n = export_photos(args.source, args.output, split=args.split, limit=args.limit)
    print(f"{n} photos -> {args.output}")
    return 0


def _add_dataset(sub) -> None:
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


COMMANDS += [_add_publish, _add_dataset]


def build_parser() -> argparse.ArgumentParser:
    from ._version import __version__

    parser = argparse.ArgumentParser(prog="scenimefy", description="Turn photos and videos into anime scenes (Scenimefy).")
    parser.add_argument("--version", action="version", version=f"scenimefy {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in COMMANDS:
        add(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from . import _torchvision  # noqa: F401  (before any handler imports lpips/open_clip/transformers)
    from .convert import CheckpointError
    from .hub import WeightsUnavailableError
    from .images import InvalidImageError

    try:
        return args.handler(args)
    except (CommandError, CheckpointError, WeightsUnavailableError, InvalidImageError, FileNotFoundError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyError as err:  # unknown style names
        print(f"error: {err.args[0] if err.args else err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
