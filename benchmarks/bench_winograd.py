"""Winograd 3x3 convolutions (scenimefy.inference.winograd) against oneDNN's direct convolutions.

One stride-1 3x3 conv per shape of the translator (the trunk's 256 -> 256 at a quarter of the
image, the down / up convs at half and full size) for 512^2, 1024^2 and 1920x1080 images,
channels_last, fp32 and bf16: direct ``F.conv2d`` vs Winograd F(2,3), F(4,3) and F(6,3), in one
process with repetitions interleaved (A, B, A, B, ...), medians and minima (the least disturbed
by other processes on a shared machine). Errors are against float64 ``F.conv2d`` of the same
(rounded) input and the fp32 weight, relative to the mean |output|. The whole network with the
integrated Winograd path: ``benchmarks/bench_inference.py``.

    python benchmarks/bench_winograd.py                   # ~8 min on 2 idle cores
    python benchmarks/bench_winograd.py --sizes 1024x1024 --reps 3
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch
import torch.nn.functional as F
from common import SHARED, cpu_line, interleaved

import scenimefy  # noqa: F401  (before torchvision)
from scenimefy.inference import winograd as wg

WEIGHTS = SHARED / "parity" / "net_G.pth"
PHOTO = SHARED / "samples" / "space_5.png"


# --------------------------------------------------------------------------- part 1: convs


def conv_shapes(width: int, height: int, ngf: int = 64) -> list[tuple[str, int, int, int, int]]:
    """(name, C_in, C_out, H, W) of the translator's stride-1 3x3 convs for one image size."""
    return [
        ("trunk", 4 * ngf, 4 * ngf, height // 4, width // 4),
        ("down2", 2 * ngf, 4 * ngf, height // 2, width // 2),
        ("up1", 4 * ngf, 2 * ngf, height // 2, width // 2),
        ("up2", 2 * ngf, ngf, height, width),
        ("down1", ngf, 2 * ngf, height, width),
    ]


def bench_convs(sizes: list[tuple[int, int]], reps: int, layers: set[str]) -> None:
    print("\n== per conv: direct oneDNN vs Winograd (channels_last, zero padding 1) ==")
    print(
        f"{'image':>10} {'layer':>6} {'shape':>22} {'dtype':>5} {'variant':>10} {'median':>9} {'min':>9}"
        f" {'speed-up':>8} {'rel err mean':>12} {'rel err max':>11}"
    )
    gen = torch.Generator().manual_seed(0)
    for width, height in sizes:
        for name, cin, cout, h, w in conv_shapes(width, height):
            if name not in layers:
                continue
            # Post-InstanceNorm-ReLU-like input and a He-initialised weight.
            x32 = torch.randn(1, cin, h, w, generator=gen).relu_()
            w32 = torch.randn(cout, cin, 3, 3, generator=gen) * (2 / (9 * cin)) ** 0.5
            for dtype in (torch.float32, torch.bfloat16):
                x = x32.to(dtype).contiguous(memory_format=torch.channels_last)
                wd = w32.to(dtype).contiguous(memory_format=torch.channels_last)
                ref = F.conv2d(x.double(), w32.double(), padding=1)
                scale = ref.abs().mean().item()
                cands: dict[str, Callable[[], torch.Tensor]] = {"direct": lambda x=x, wd=wd: F.conv2d(x, wd, padding=1)}
                for m in (2, 4) if dtype == torch.bfloat16 else (2, 4, 6):
                    ww = wg.transform_weight(w32, m, dtype=dtype)
                    cands[f"F({m},3)"] = lambda x=x, ww=ww: wg.conv2d(x, ww, None, 1)
                with torch.inference_mode():
                    times = interleaved(cands, reps)
                    for k, f in cands.items():
                        err = (f().double() - ref).abs()
                        med, low = times[k]
                        print(
                            f"{width}x{height:<5} {name:>6} {f'{cin}->{cout} @{h}x{w}':>22} "
                            f"{'fp32' if dtype == torch.float32 else 'bf16':>5} {k:>10} {med * 1e3:7.1f}ms "
                            f"{low * 1e3:7.1f}ms {times['direct'][0] / med:7.2f}x {err.mean().item() / scale:12.2e} "
                            f"{err.max().item() / scale:11.2e}",
                            flush=True,
                        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="512x512,1024x1024,1920x1080", help="image sizes")
    parser.add_argument("--layers", default="trunk,down2,up1,up2,down1")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(cpu_line())
    sizes = [tuple(int(v) for v in s.lower().split("x")) for s in args.sizes.split(",")]
    bench_convs(sizes, args.reps, set(args.layers.split(",")))
    print(cpu_line())


if __name__ == "__main__":
    sys.exit(main())
