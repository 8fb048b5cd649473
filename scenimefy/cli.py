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
    from .convert import convert_reference_translator, safe_torch_load

    src = Path(args.src)
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
        print(f"{name:12s} {styles.style_status(name):14s} {style.title}: {style.description}")
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


#: ``scenimefy evaluate --metric NAME``: metric name -> handler(args). Register new metrics here.
METRICS: dict[str, Callable[[argparse.Namespace], int]] = {"lbce": _evaluate_lbce}


def _add_evaluate(sub) -> None:
    p = sub.add_parser(
        "evaluate",
        help="score translations: lbce = the paper's semantic consistency (pairs matched by file name)",
        description="Evaluate translated images against a reference folder.",
    )
    p.add_argument("--metric", required=True, choices=sorted(METRICS), help="metric to compute")
    p.add_argument("reference", help="reference folder (lbce: the source photos)")
    p.add_argument("translated", help="folder of translated images (same relative names, any extension)")
    p.add_argument(
        "--segmenter",
        default=None,
        help="lbce: Mask2Former Hub id or local folder (default: facebook/mask2former-swin-base-IN21k-ade-semantic)",
    )
    p.add_argument("--seg-size", type=int, default=None, help="lbce: resize the shorter side to this for segmentation")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--device", default="cpu", help="torch device, e.g. cpu, cuda (default: cpu)")
    p.add_argument("--dtype", default="auto", choices=["auto", "float32", "float16", "bfloat16"], help="model dtype (auto: float32)")
    p.add_argument("--json", default=None, help="also write the per-image values to this JSON file")
    p.set_defaults(handler=lambda args: METRICS[args.metric](args))


COMMANDS: list[Callable] = [_add_stylize, _add_convert, _add_styles, _add_download, _add_evaluate]


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
