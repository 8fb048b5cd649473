"""StyleGAN2 training-step speed: our pure-PyTorch resampling ops against the literal upfirdn2d.

One step = G(w) -> D(image) -> non-saturating loss -> backward through D and G, at 256x256,
batch 4, with the paper's networks (reference channel table, channel multiplier 2, style_dim
512, 8-layer mapping). The same networks and inputs run twice in this process:

- ours: ``scenimefy.models.ops.upfirdn2d`` (one depthwise conv2d / conv_transpose2d per op);
- reference: ``upfirdn2d_reference``, the op as rosinality's ``upfirdn2d_native`` computes it
  (zero insertion, padding, a full-resolution single-channel convolution, then subsampling),
  switched in with ``use_reference_upfirdn2d()``.

Also timed: each resampling op alone (forward + backward) at the largest shape it sees in the
step. Prints the medians and the reference / ours ratios.

    python benchmarks/bench_stylegan.py                  # a few minutes on 2 idle CPU cores
    python benchmarks/bench_stylegan.py --device cuda --iters 10 --warmup 3
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch

import scenimefy  # noqa: F401
from scenimefy.losses.stylegan2 import generator_nonsaturating_loss
from scenimefy.models import StyleGAN2Discriminator, StyleGAN2Generator
from scenimefy.models.ops import make_kernel, upfirdn2d, upfirdn2d_reference, use_reference_upfirdn2d


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_it(fn, warmup: int, iters: int, device: torch.device) -> float:
    """Median seconds of ``fn()`` over ``iters`` runs after ``warmup`` runs."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(iters):
        synchronize(device)
        start = time.perf_counter()
        fn()
        synchronize(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--batch", type=int, default=4)
    # One full-size step is ~2 TFLOP: on 2 CPU cores two timed steps per variant is what fits in a
    # few minutes. Raise both on a GPU.
    parser.add_argument("--iters", type=int, default=2)
    parser.add_argument("--warmup", type=int, default=0)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    args = parser.parse_args()
    device = torch.device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)

    torch.manual_seed(0)
    generator = StyleGAN2Generator(size=args.size, style_dim=512, n_mlp=8, channel_multiplier=2).to(device)
    discriminator = StyleGAN2Discriminator(size=args.size, channel_multiplier=2).to(device)
    z = torch.randn(args.batch, 512, device=device)
    params = sum(p.numel() for p in generator.parameters()) + sum(p.numel() for p in discriminator.parameters())
    print(
        f"StyleGAN2 G+D at {args.size}px, batch {args.batch}, {params / 1e6:.1f}M parameters, device {device}, "
        f"{torch.get_num_threads()} CPU threads"
    )

    def step() -> None:
        generator.zero_grad(set_to_none=True)
        discriminator.zero_grad(set_to_none=True)
        loss = generator_nonsaturating_loss(discriminator(generator(generator.mapping(z), noise_mode="random")))
        loss.backward()

    # The same function, the same weights: only the upfirdn2d implementation differs. The two
    # variants alternate, so a change of machine load during the run hits both alike.
    def reference_step() -> None:
        with use_reference_upfirdn2d():
            step()

    for _ in range(args.warmup):
        step()
        reference_step()
    ours, reference = [], []
    for _ in range(args.iters):
        ours.append(time_it(step, 0, 1, device))
        reference.append(time_it(reference_step, 0, 1, device))
    ours_s, reference_s = statistics.median(ours), statistics.median(reference)
    print(
        f"training step (forward + backward, G and D), median of {args.iters}: ours {ours_s:.3f} s, "
        f"reference upfirdn2d {reference_s:.3f} s, ratio reference/ours = {reference_s / ours_s:.2f}x"
    )

    # Each resampling op at the largest shape of the step: (name, input shape, kernel scale, up, down, pad).
    channels = generator.channels[args.size]
    ops = [
        (
            "G blur after the stride-2 transposed conv",
            (args.batch, channels, args.size + 1, args.size + 1),
            4,
            1,
            1,
            (1, 1),
        ),
        ("G ToRGB skip upsampling x2", (args.batch, 3, args.size // 2, args.size // 2), 4, 2, 1, (2, 1)),
        ("D blur before the stride-2 3x3 conv", (args.batch, channels, args.size, args.size), 1, 1, 1, (2, 2)),
        ("D blur before the stride-2 1x1 skip", (args.batch, channels, args.size, args.size), 1, 1, 1, (1, 1)),
    ]
    kernel = make_kernel([1, 3, 3, 1]).to(device)
    print("resampling ops alone (forward + backward):")
    for name, shape, scale, up, down, pad in ops:
        x = torch.randn(shape, device=device, requires_grad=True)
        results = []
        for impl in (upfirdn2d, upfirdn2d_reference):
            results.append(
                time_it(
                    lambda impl=impl, x=x, scale=scale, up=up, down=down, pad=pad: (
                        impl(x, kernel * scale, up, down, pad).sum().backward()
                    ),
                    args.warmup,
                    args.iters,
                    device,
                )
            )
        print(
            f"  {name:44s} {tuple(shape)}: ours {results[0] * 1e3:8.1f} ms, reference {results[1] * 1e3:8.1f} ms, "
            f"ratio {results[1] / results[0]:.1f}x"
        )


if __name__ == "__main__":
    main()
