"""Winograd 3x3 convolutions (scenimefy._winograd) against oneDNN's direct convolutions.

Two parts, both in one process with repetitions interleaved (A, B, A, B, ...) and medians (and
minima: the least disturbed by other processes on a shared machine) reported:

1. ``convs``: one stride-1 3x3 conv per shape of the translator (the trunk's 256 -> 256 at a
   quarter of the image, the down / up convs at half and full size) for 512^2, 1024^2 and
   1920x1080 images, channels_last, fp32 and bf16: direct ``F.conv2d`` vs Winograd F(2,3) and
   F(4,3) (eager transforms; ``--compiled`` adds the inductor-compiled ones). Errors are
   against float64 ``F.conv2d`` of the same (rounded) input and the fp32 weight, relative to the
   mean |output|.
2. ``net``: ``translate()`` of the full-size translator (the parity checkpoint: random weights
   in the released layout) at ``--size``, with its stride-1 3x3 convs swapped for Winograd by
   patching ``scenimefy.inference``'s ``F.conv2d`` (benchmark only), against the authors' path
   (fp32 eager ``model(x)``), with the 8-bit output differences.

    python benchmarks/bench_winograd.py                   # both parts, ~15 min on 2 idle cores
    python benchmarks/bench_winograd.py --part convs --sizes 1024x1024 --reps 3
    python benchmarks/bench_winograd.py --part net --variants exact:direct,exact:F4,default:F2
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import subprocess
import sys
import time
import types
from collections.abc import Callable, Iterator
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

import scenimefy  # noqa: E402,F401  (before torchvision)
from scenimefy import _winograd as wg  # noqa: E402
from scenimefy import inference  # noqa: E402

SHARED = Path(__file__).resolve().parents[2] / "shared"
WEIGHTS = SHARED / "parity" / "net_G.pth"
PHOTO = SHARED / "samples" / "space_5.png"


def cpu_line() -> str:
    model = "unknown CPU"
    flags: set[str] = set()
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
        for line in out.splitlines():
            if line.startswith("Model name:"):
                model = line.split(":", 1)[1].strip()
            if line.startswith("Flags:"):
                flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    have = {f: f in flags for f in ("avx2", "avx512f", "avx512_bf16", "amx_bf16")}
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return (
        f"CPU: {model}, {os.cpu_count()} logical cores, "
        + " ".join(f"{k}={'yes' if v else 'no'}" for k, v in have.items())
        + f"; torch {torch.__version__}, {torch.get_num_threads()} threads; load average {load:.1f}"
    )


def interleaved(cands: dict[str, Callable[[], object]], reps: int) -> dict[str, tuple[float, float]]:
    """Median and minimum wall seconds of each candidate, repetitions interleaved."""
    times: dict[str, list[float]] = {k: [] for k in cands}
    for f in cands.values():  # warm-up (and compilation) outside the timings
        f()
    for _ in range(reps):
        for k, f in cands.items():
            t0 = time.perf_counter()
            f()
            times[k].append(time.perf_counter() - t0)
    return {k: (statistics.median(v), min(v)) for k, v in times.items()}


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


def bench_convs(sizes: list[tuple[int, int]], reps: int, compiled: bool, layers: set[str]) -> None:
    print("\n== per conv: direct oneDNN vs Winograd (channels_last, zero padding 1) ==")
    print(f"{'image':>10} {'layer':>6} {'shape':>22} {'dtype':>5} {'variant':>10} {'median':>9} {'min':>9}"
          f" {'speed-up':>8} {'rel err mean':>12} {'rel err max':>11}")
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
                    if compiled:
                        cands[f"F({m},3) C"] = lambda x=x, ww=ww: wg.conv2d(x, ww, None, 1, compiled=True)
                with torch.inference_mode():
                    times = interleaved(cands, reps)
                    for k, f in cands.items():
                        err = (f().double() - ref).abs()
                        med, low = times[k]
                        print(f"{width}x{height:<5} {name:>6} {f'{cin}->{cout} @{h}x{w}':>22} "
                              f"{'fp32' if dtype == torch.float32 else 'bf16':>5} {k:>10} {med * 1e3:7.1f}ms "
                              f"{low * 1e3:7.1f}ms {times['direct'][0] / med:7.2f}x {err.mean().item() / scale:12.2e} "
                              f"{err.max().item() / scale:11.2e}", flush=True)


# --------------------------------------------------------------------------- part 2: network


class _WinogradFunctional(types.ModuleType):
    """``torch.nn.functional`` with stride-1 3x3 ``conv2d`` calls routed to Winograd.

    ``policy(weight, x, index) -> m or None`` picks the tile size per call (None: direct conv).
    Transformed weights are cached per (weight tensor, m).
    """

    def __init__(self, policy: Callable[[torch.Tensor, torch.Tensor, int], int | None]) -> None:
        super().__init__("winograd_functional")
        self.policy = policy
        self.cache: dict[tuple[int, int], wg.WinogradWeight] = {}
        self.order: dict[int, int] = {}  # weight id -> index of first use (network order)

    def __getattr__(self, name: str):
        return getattr(F, name)

    def conv2d(self, x, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
        pad = padding if isinstance(padding, int) else (padding[0] if padding[0] == padding[1] else -1)
        m = None
        plain = stride in (1, (1, 1)) and dilation in (1, (1, 1)) and groups == 1
        if weight.shape[-2:] == (3, 3) and plain and pad in (0, 1):
            index = self.order.setdefault(id(weight), len(self.order))
            m = self.policy(weight, x, index)
        if m is None:
            return F.conv2d(x, weight, bias, stride, padding, dilation, groups)
        key = (id(weight), m)
        ww = self.cache.get(key)
        if ww is None:
            ww = self.cache[key] = wg.transform_weight(weight, m, dtype=x.dtype)
        return wg.conv2d(x, ww, bias, pad)


@contextlib.contextmanager
def winograd_in_translate(policy: Callable[[torch.Tensor, torch.Tensor, int], int | None]) -> Iterator[None]:
    before = inference.F
    inference.F = _WinogradFunctional(policy)
    try:
        yield
    finally:
        inference.F = before


def policy_for(name: str, ngf: int) -> Callable[[torch.Tensor, torch.Tensor, int], int | None] | None:
    """Variant names: direct, F2, F4, F6 (every stride-1 3x3 conv), F2t / F3t / F4t / F6t (trunk
    only), F4t1 (the first conv of each residual block), F4t1F2 (first F4, second F2), F4t2 /
    F6t4 (F4 / F6 on the trunk, F2 / F4 elsewhere)."""
    trunk = lambda w: w.shape[0] == w.shape[1] == 4 * ngf
    # index: order of first use among all stride-1 3x3 convs: down1, down2, then the trunk's
    # conv1 / conv2 alternating (2 .. 19), up1, up2.
    table = {
        "direct": None,
        "F2": lambda w, x, i: 2,
        "F4": lambda w, x, i: 4,
        "F2t": lambda w, x, i: 2 if trunk(w) else None,
        "F3t": lambda w, x, i: 3 if trunk(w) else None,
        "F4t": lambda w, x, i: 4 if trunk(w) else None,
        "F4t1": lambda w, x, i: (4 if i % 2 == 0 else None) if trunk(w) else None,  # conv1 only
        "F4t1F2": lambda w, x, i: (4 if i % 2 == 0 else 2) if trunk(w) else None,  # conv1 F4, conv2 F2
        "F4t2": lambda w, x, i: 4 if trunk(w) else 2,
        "F6": lambda w, x, i: 6,
        "F6t": lambda w, x, i: 6 if trunk(w) else None,
        "F6t4": lambda w, x, i: 6 if trunk(w) else 4,
    }
    return table[name]


def to_uint8(y: torch.Tensor) -> np.ndarray:
    return ((y.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).numpy()


def load_input(width: int, height: int) -> torch.Tensor:
    from PIL import Image

    if PHOTO.is_file():
        image = Image.open(PHOTO).convert("RGB").resize((width, height), Image.BICUBIC)
        return torch.from_numpy(np.array(image)).permute(2, 0, 1)[None].float() / 127.5 - 1
    gen = torch.Generator().manual_seed(0)
    return torch.rand(1, 3, height, width, generator=gen) * 2 - 1


def bench_net(size: tuple[int, int], variants: list[str], reps: int) -> None:
    from scenimefy.convert import load_reference_translator
    from scenimefy.models.translator import ScenimefyTranslator

    if WEIGHTS.is_file():
        model = load_reference_translator(WEIGHTS).eval()
        source = WEIGHTS.name
    else:
        torch.manual_seed(0)
        model = ScenimefyTranslator().eval()
        source = "random init"
    ngf = model.config.ngf if hasattr(model.config, "ngf") else 64
    x = load_input(*size)
    print(f"\n== network: translate() at {size[0]}x{size[1]}, weights {source} ==")

    def run(variant: str) -> torch.Tensor:
        if variant == "baseline":
            with torch.inference_mode():
                return model(x)
        mode, name = variant.split(":")
        policy = policy_for(name, ngf)
        ctx = winograd_in_translate(policy) if policy is not None else contextlib.nullcontext()
        with ctx:
            return translate_mode(mode)

    def translate_mode(mode: str) -> torch.Tensor:
        if mode == "exact":
            return inference.translate(model, x, exact=True)
        if mode == "fp32":
            return inference.translate(model, x, dtype=torch.float32)
        return inference.translate(model, x)

    outputs: dict[str, torch.Tensor] = {}

    def keep(v: str) -> None:
        outputs[v] = run(v)

    cands = {v: (lambda v=v: keep(v)) for v in ["baseline", *variants]}
    times = interleaved(cands, reps)
    ref = to_uint8(outputs["baseline"]).astype(np.int16)
    print(f"{'variant':>16} {'median':>8} {'min':>8} {'vs baseline':>11} {'mean|d|':>8} {'max|d|':>6}")
    for k in cands:
        d = np.abs(to_uint8(outputs[k]).astype(np.int16) - ref)
        med, low = times[k]
        print(f"{k:>16} {med:7.2f}s {low:7.2f}s {times['baseline'][0] / med:10.2f}x {d.mean():8.3f} {d.max():6d}",
              flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--part", choices=("convs", "net", "all"), default="all")
    parser.add_argument("--sizes", default="512x512,1024x1024,1920x1080", help="image sizes for the conv part")
    parser.add_argument("--layers", default="trunk,down2,up1,up2,down1")
    parser.add_argument("--size", default="1024x1024", help="image size for the network part")
    parser.add_argument("--variants", default="exact:direct,exact:F4,exact:F2,default:direct,default:F2,default:F4t2,default:F4",
                        help="mode:policy; mode = exact (fp32) | default (bf16 where native) | fp32")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--compiled", action="store_true", help="also time the inductor-compiled transforms")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(cpu_line())
    print(f"native bf16: {inference.cpu_has_fast_bf16()}")
    parse = lambda s: tuple(int(v) for v in s.lower().split("x"))
    if args.part in ("convs", "all"):
        bench_convs([parse(s) for s in args.sizes.split(",")], args.reps, args.compiled, set(args.layers.split(",")))
    if args.part in ("net", "all"):
        bench_net(parse(args.size), args.variants.split(","), args.reps)
    print(cpu_line())


if __name__ == "__main__":
    sys.exit(main())
