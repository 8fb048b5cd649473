"""``scenimefy export SOURCE OUT.onnx``: any translator (full or lite) as one ONNX file, verified.

The export (``scenimefy.inference.onnx``) is written atomically; right after it, onnxruntime runs
the file on a photo (``--photo``, else a generated test image) at a size the export never saw
and the largest difference to PyTorch fp32 is printed. A file that does not match is removed.
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

from scenimefy.cli.common import CommandError

#: Largest |difference| (output units, [-1, 1]) a verified export may show: fp32 is ~1e-5 in
#: practice; fp16 rounds every activation (~2e-3 on a tiny model).
TOLERANCE = {False: 1e-3, True: 5e-2}


def check_writable(out: Path) -> None:
    """Refuse an output that cannot be written before the (slow) export runs."""
    if out.is_dir():
        raise CommandError(f"cannot write {out}: it is a folder; give a file name such as {out / 'model.onnx'}")
    parent = out.parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise CommandError(f"cannot write {out}: {parent} is not a folder")
    if out.exists() and not os.access(out, os.W_OK):
        raise CommandError(f"cannot write {out}: permission denied")
    try:  # the atomic writer creates a temporary file beside the output: try one now
        with tempfile.TemporaryFile(dir=parent):
            pass
    except OSError as err:
        raise CommandError(f"cannot write {out}: {(err.strerror or str(err)).lower()} in {parent}") from None


def parse_size(text: str) -> tuple[int, int]:
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise CommandError(f"--size {text}: expected HEIGHTxWIDTH, e.g. 512x512") from None
    return h, w


def verification_image(photo: str | None, size: tuple[int, int] | None, multiple: int, avoid: tuple[int, int]):
    """(description, (1, 3, H, W) tensor in [-1, 1]): the photo (or a generated image), resized to
    ``size`` or to ~256 px on its long side with sides multiples of ``multiple``, never ``avoid``."""
    import numpy as np
    import torch
    from PIL import Image

    from scenimefy.data.images import load_image
    from scenimefy.data.pixels import to_model_range

    if photo:
        rgb = load_image(photo).rgb
        what = photo
    else:
        yy, xx = np.mgrid[0:240, 0:320] / 40.0
        rgb = np.stack([120 + 90 * np.sin(xx), 110 + 80 * np.cos(yy + xx / 2), 140 + 60 * np.sin(yy * 1.7)], -1)
        rgb = rgb.clip(0, 255).astype(np.uint8)
        what = "a generated test image"
    if size is None:
        h, w = rgb.shape[:2]
        scale = 256 / max(h, w)
        size = tuple(max(2 * multiple, round(v * scale / multiple) * multiple) for v in (h, w))
        if size == avoid:
            size = (size[0] + multiple, size[1])
    resized = np.asarray(Image.fromarray(rgb).resize((size[1], size[0]), Image.BICUBIC))
    return what, to_model_range(torch.from_numpy(resized.copy()).permute(2, 0, 1))[None]


def _export(args: argparse.Namespace) -> int:
    from scenimefy.hub.translators import open_translator
    from scenimefy.inference import onnx
    from scenimefy.models.lite import count_macs
    from scenimefy.models.loading import size_multiple

    out = Path(args.out)
    if out.suffix.lower() != ".onnx":
        raise CommandError(f"{out}: the output must be a .onnx file")
    check_writable(out)
    if args.size is not None and not args.static:
        raise CommandError("--size is the size of a --static export: add --static, or leave --size out")
    static = parse_size(args.size or "512x512") if args.static else None
    try:  # both packages before the slow export: a missing one is one line, and no file is written
        onnx.require("onnx", "onnxscript", "onnxruntime")
    except onnx.OnnxUnavailableError as err:
        raise CommandError(str(err)) from None
    model, _ = open_translator(args.source)
    multiple = size_multiple(model)
    if static and (static[0] % multiple or static[1] % multiple or min(static) < 2 * multiple):
        raise CommandError(f"--size {args.size}: sides must be multiples of {multiple}, at least {2 * multiple}")
    example = static or (9 * multiple, 8 * multiple)
    what, image = verification_image(args.photo, static, multiple, example)  # a bad --photo: before the export
    try:
        onnx.export_onnx(model, out, opset=args.opset, dynamic=not args.static, fp16=args.fp16, example_size=example)
    except onnx.OnnxUnavailableError as err:
        raise CommandError(str(err)) from None
    except OSError as err:
        from scenimefy.inference.outputs import DiskFullError

        if isinstance(err, DiskFullError):
            raise
        raise CommandError(f"cannot write {out}: {(err.strerror or str(err)).lower()}") from None
    macs = count_macs(model, 8 * multiple, 8 * multiple) / (8 * multiple) ** 2
    shape = f"{static[0]}x{static[1]} only" if static else f"any HxW, multiples of {multiple}"
    print(
        f"exported {type(model).__name__} ({macs / 1e3:,.0f}k MACs/pixel) from {args.source} -> {out} "
        f"({out.stat().st_size / 2**20:.1f} MB, opset {args.opset}, {'fp16' if args.fp16 else 'fp32'}, {shape})"
    )
    try:
        check = onnx.verify_onnx(out, model, image)
    except BaseException:  # an unverified file is not left behind
        out.unlink(missing_ok=True)
        raise
    tolerance = TOLERANCE[args.fp16]
    line = (
        f"verified with onnxruntime on {what} at {image.shape[-2]}x{image.shape[-1]}: max |diff| "
        f"{check.max_abs:.2e} ({check.max_levels:.3f} 8-bit levels), mean {check.mean_abs:.2e} vs PyTorch fp32"
    )
    if check.max_abs > tolerance:
        out.unlink(missing_ok=True)
        raise CommandError(f"{line}: above {tolerance:g}, so {out} was removed")
    print(line)
    return 0


def add_export(sub) -> None:
    p = sub.add_parser(
        "export",
        help="export a translator (full or lite) to ONNX, verified with onnxruntime",
        description="Export a translator to one ONNX file (dynamic height/width by default), then run it with "
        "onnxruntime on a photo and print the largest difference to PyTorch fp32. Run it with "
        "ScenimefyPipeline.from_pretrained(..., backend='onnx', onnx_path=OUT) or any ONNX runtime.",
    )
    p.add_argument("source", help="a style name, a translator folder, an authors' *_net_G.pth or a Hub repo id")
    p.add_argument("out", help="the .onnx file to write")
    p.add_argument("--opset", type=int, default=18, help="ONNX opset (default: 18)")
    sizes = p.add_mutually_exclusive_group()
    sizes.add_argument(
        "--dynamic", dest="static", action="store_false", help="any batch, height and width (the default)"
    )
    sizes.add_argument("--static", dest="static", action="store_true", help="one fixed size (--size)")
    p.add_argument("--size", default=None, help="HEIGHTxWIDTH of a --static export (default: 512x512)")
    p.add_argument("--fp16", action="store_true", help="float16 weights and activations (for GPU runtimes)")
    p.add_argument("--photo", default=None, help="the image to verify with (default: a generated test image)")
    p.set_defaults(handler=_export, static=False)
