"""What several commands share: user errors and the model options."""

from __future__ import annotations

import argparse


class CommandError(Exception):
    """A user error: printed as one line, exit status 2."""


def load_pipeline(args: argparse.Namespace):
    import torch

    from scenimefy.inference.pipeline import ScenimefyPipeline

    dtype = {"auto": None, "float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}[args.dtype]
    return ScenimefyPipeline.from_pretrained(args.weights, style=args.style, device=args.device, dtype=dtype)


def add_model_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--style", default=None, help="registered style (default: shinkai; see `scenimefy styles`)")
    parser.add_argument("--weights", default=None, help="translator folder, reference *_net_G.pth, or Hub repo id")
    parser.add_argument("--device", default="cpu", help="torch device, e.g. cpu, cuda, cuda:1, mps (default: cpu)")
    parser.add_argument(
        "--dtype",
        default="auto",
        choices=["auto", "float32", "float16", "bfloat16"],
        help="weights dtype (auto: fp32 weights, fastest compute the device supports)",
    )
