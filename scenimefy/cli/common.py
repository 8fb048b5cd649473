"""What several commands share: user errors and the model options."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


class CommandError(Exception):
    """A user error: printed as one line, exit status 2."""


def weights_and_style(weights: str | None, style: str | None) -> tuple[str | None, str | None]:
    """``--weights PATH`` or ``--weights STYLE=PATH`` (the form the app and the error messages use).

    ``STYLE=PATH`` names the style the weights are for; a path that really contains "=" is taken
    as it is when it exists.
    """
    if weights is None or "=" not in weights or Path(weights).exists():
        return weights, style
    from scenimefy.hub import styles

    name, _, source = weights.partition("=")
    if name.lower() not in styles.styles():
        known = ", ".join(sorted(styles.styles()))
        raise CommandError(f"--weights {weights}: {name!r} is not a style ({known}); use --weights PATH or STYLE=PATH")
    if style is not None and style.lower() != name.lower():
        raise CommandError(f"--weights {weights} is for style {name!r} but --style is {style!r}")
    if not source:
        raise CommandError(f"--weights {weights}: the path after '=' is missing")
    return source, name.lower()


def load_pipeline(args: argparse.Namespace, device: str | None = None):
    import torch

    from scenimefy.inference.pipeline import ScenimefyPipeline

    weights, style = weights_and_style(args.weights, args.style)
    dtype = {"auto": None, "float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}[args.dtype]
    device = device or args.device or "cpu"
    return ScenimefyPipeline.from_pretrained(weights, style=style, device=device, dtype=dtype)


def add_model_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--style", default=None, help="registered style (default: shinkai; see `scenimefy styles`)")
    parser.add_argument(
        "--weights",
        default=None,
        metavar="[STYLE=]PATH",
        help="translator folder, authors' *_net_G.pth or Hub repo id; STYLE=PATH also names its style",
    )
    parser.add_argument(
        "--device",
        default=None,
        help="torch device, e.g. cpu, cuda, cuda:1, mps (default: cpu; under accelerate launch, each process's own)",
    )
    parser.add_argument(
        "--verbose",
        action="store_true",
        help="print how inference ran: dtype, layout and the conv kernel chosen per layer and size",
    )
    parser.add_argument(
        "--dtype",
        default="auto",
        choices=["auto", "float32", "float16", "bfloat16"],
        help="weights dtype (auto: fp32 weights, fastest compute the device supports)",
    )


def print_kernel_report(pipe, mode: str) -> None:
    """``--verbose``: how the pipeline's translator ran (fast path only), to stderr."""
    if getattr(pipe, "backend", "torch") != "torch" or mode == "reference" or not getattr(pipe, "_fast", False):
        print(f"inference: {mode} mode, eager (no per-layer kernel choice)", file=sys.stderr)
        return
    from scenimefy.inference.engine import kernel_report

    for line in kernel_report(pipe.translator, exact=mode == "exact"):
        print(f"inference: {line}", file=sys.stderr)
