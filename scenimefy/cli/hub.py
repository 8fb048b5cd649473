"""``scenimefy convert | styles | download | publish``: weights in and out."""

from __future__ import annotations

import argparse
from pathlib import Path

from scenimefy.cli.common import CommandError


def _convert(args: argparse.Namespace) -> int:
    import torch

    from scenimefy.hub.convert import convert_reference_translator, safe_torch_load
    from scenimefy.hub.convert_stylegan2 import ROSINALITY_MODEL_KEYS, convert_stylegan2_checkpoint

    src = Path(args.src)
    # The authors' StyleGAN2 .pt files pickle their argparse Namespace; allow exactly that class.
    with torch.serialization.safe_globals([argparse.Namespace]):
        state = safe_torch_load(src)
    if any(key in state for key in ROSINALITY_MODEL_KEYS):
        written = convert_stylegan2_checkpoint(src, args.out_dir)
        print(f"converted StyleGAN2 checkpoint {src} -> {written}")
        return 0
    model = convert_reference_translator(src, args.out_dir)
    cfg = model.config
    print(f"converted translator {src} (ngf={cfg.ngf}, n_blocks={cfg.n_blocks}, antialias={cfg.antialias})")
    print(f"  -> {args.out_dir}")
    return 0


def add_convert(sub) -> None:
    p = sub.add_parser(
        "convert",
        help="convert the authors' .pth/.pt checkpoints to config.json + safetensors",
        description="Convert a reference translator (*_net_G.pth) or a rosinality StyleGAN2 checkpoint (.pt).",
    )
    p.add_argument("src", help="checkpoint file")
    p.add_argument("out_dir", help="output folder")
    p.set_defaults(handler=_convert)


def _styles(args: argparse.Namespace) -> int:
    from scenimefy.hub import styles

    known = styles.styles()
    for name, style in sorted(known.items()):
        status, source = styles.style_status(name), styles.style_source(name)
        variant = ""
        if style.lite and style.lite.lower() in known:
            variant = f" Fast variant: {style.lite} ({styles.style_status(style.lite)})."
        elif style.lite_of:
            variant = f" Fast variant of {style.lite_of}."
        print(f"{name:12s} {status:14s} {style.title}: {style.description}{variant} [{source}]")
    if styles.index_source():
        print(f"(styles index: {styles.index_source()})")
    return 0


def add_styles(sub) -> None:
    p = sub.add_parser("styles", help="list registered styles and whether their weights are available")
    p.set_defaults(handler=_styles)


def _download(args: argparse.Namespace) -> int:
    from scenimefy.hub import styles

    source, subfolder = styles.resolve_style(args.style)
    print(f"{args.style}: ready at {source}{'/' + subfolder if subfolder else ''}")
    return 0


def add_download(sub) -> None:
    p = sub.add_parser("download", help="fetch and convert a style's weights into the local cache")
    p.add_argument("style")
    p.set_defaults(handler=_download)


def _publish(args: argparse.Namespace) -> int:
    from scenimefy.hub import publish

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
    common = {"title": args.title, "private": args.private, "dry_run_dir": args.dry_run}
    if args.kind == "translator":
        result = publish.publish_translator(
            args.folder,
            args.repo_id,
            style=args.style,
            metrics=metrics,
            training_config=args.training_config,
            license=args.license,
            **common,
        )
    elif args.kind == "stylegan2":
        result = publish.publish_stylegan2(
            args.folder,
            args.repo_id,
            metrics=metrics,
            training_config=args.training_config,
            license=args.license,
            **common,
        )
    else:
        result = publish.publish_dataset(args.folder, args.repo_id, **common)
    if result.url is None:
        what = f"{len(result.files)} files for {result.repo_type} {result.repo_id}"
        print(f"dry run: {what} in {result.folder} (nothing uploaded)")
    else:
        print(f"uploaded {len(result.files)} files to {result.url}")
    for name in result.files:
        print(f"  {name}")
    return 0


def add_publish(sub) -> None:
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
        k.add_argument(
            "--dry-run", metavar="DIR", default=None, help="write the repository to DIR instead of uploading"
        )
        k.add_argument("--private", action="store_true", help="create the repository private")
        k.add_argument("--title", default=None, help="card title")
        if kind != "dataset":
            k.add_argument(
                "--metric", action="append", default=[], metavar="NAME=VALUE", help="a metric for the card (repeatable)"
            )
            k.add_argument(
                "--metrics-file", default=None, help="metrics JSON ({name: value} or `scenimefy evaluate --json`)"
            )
            k.add_argument(
                "--training-config",
                default=None,
                help="training config file (default: training_config.* in the folder or its parent, as the "
                "training scripts write it)",
            )
            k.add_argument(
                "--license",
                default=None,
                help="s-lab (weights derived from the authors') or an SPDX id; default: the licence in the folder's "
                "training record (training_config.json), else s-lab",
            )
        if kind == "translator":
            k.add_argument("--style", default=None, help="style name for the card and tags (e.g. hosoda)")
        k.set_defaults(handler=_publish, metric=[], metrics_file=None, training_config=None, license=None, style=None)
