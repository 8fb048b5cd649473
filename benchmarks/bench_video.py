"""Video stylization speed and temporal stability, on the test clip at its full 540x960 size.

In one run, with the full-size translator (the converted parity weights: the paper's network,
random but fixed weights; speed and the flicker mechanism do not depend on what was learned):

- our default path (``scenimefy.inference.video.stylize_video``: streamed decode, batches through the
  fast inference path, stabilisation on, x264 encode, audio copied), frames/s, on every fast path
  the CPU runs natively: bf16 (native bf16 only) and fp32 (Winograd; forced with
  ``SCENIMEFY_CPU_BF16=0`` on a bf16 CPU, as a CPU without bf16 runs it);
- the same path with stabilisation off: frames/s and the flicker index. The two passes also
  give the flicker of each stabilisation part alone: the default pass measured before its
  output filter is "statistics only"; the unstabilised pass through a side filter is "output
  filter only";
- a naive loop: decode a frame, fp32 eager ``model(x)``, encode it; frames/s on a subset;
- optionally a preview (``--preview-side``: frames scaled down in the decoder), frames/s.

The flicker index (defined in scenimefy/inference/video.py) is the mean absolute change between
consecutive output frames divided by that of the input frames; lower is steadier. The static
figure is the mean output change (8-bit levels) where the input did not change.

    python benchmarks/bench_video.py                           # the whole clip (slow on CPU)
    python benchmarks/bench_video.py --frames 24 --naive-frames 8   # a CPU-sized subset
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import av
import numpy as np
import torch
import torch.nn.functional as F
from common import SHARED, cpu_line

import scenimefy  # noqa: F401  (before torchvision)
from scenimefy.hub.convert import load_reference_translator
from scenimefy.inference.engine import translate
from scenimefy.inference.pipeline import ScenimefyPipeline
from scenimefy.inference.runtime import FORCE_BF16_ENV, choose_settings, cpu_probe_bf16
from scenimefy.inference.stabilize import FlickerMeter, TemporalFilter
from scenimefy.inference.video import stylize_video
from scenimefy.inference.video_io import probe_video

CLIP = SHARED / "data" / "video" / "hanami.mp4"
WEIGHTS = SHARED / "parity" / "net_G.pth"


def naive_loop(model, src: Path, dst: Path, frames: int, crf: int, preset: str) -> tuple[int, float]:
    """Decode -> fp32 eager generator on one frame -> encode, frame after frame."""
    began = time.perf_counter()
    done = 0
    with av.open(str(src)) as inp, av.open(str(dst), "w") as out:
        vin = inp.streams.video[0]
        vout = out.add_stream("libx264", rate=vin.average_rate)
        vout.width, vout.height, vout.pix_fmt = vin.codec_context.width, vin.codec_context.height, "yuv420p"
        vout.options = {"crf": str(crf), "preset": preset}
        for frame in inp.decode(vin):
            rgb = frame.to_ndarray(format="rgb24")
            x = torch.from_numpy(rgb).permute(2, 0, 1)[None].float() / 127.5 - 1
            h, w = x.shape[-2:]
            x = F.pad(x, (0, -w % 4, 0, -h % 4), mode="reflect")
            with torch.inference_mode():
                y = model(x)[:, :, :h, :w]
            pixels = ((y.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)[0].permute(1, 2, 0).numpy()
            for packet in vout.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(pixels), format="rgb24")):
                out.mux(packet)
            done += 1
            if done >= frames:
                break
        for packet in vout.encode(None):
            out.mux(packet)
    return done, time.perf_counter() - began


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clip", type=Path, default=CLIP)
    parser.add_argument("--weights", type=Path, default=WEIGHTS)
    parser.add_argument("--frames", type=int, default=None, help="frames for our path (default: the whole clip)")
    parser.add_argument("--naive-frames", type=int, default=16, help="frames for the naive loop (it is slow)")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--preview-side", type=int, default=None, help="also time a preview at this max side")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--crf", type=int, default=18)
    parser.add_argument("--preset", default="medium")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    info = probe_video(args.clip)
    total = info.frames or round((info.duration or 0) * float(info.fps or 30))
    frames = min(args.frames or total, total)
    # The range is set in seconds; half a frame of slack keeps exactly ``frames`` frames.
    duration = None if frames >= total else (frames - 0.5) / float(info.fps)
    model = load_reference_translator(args.weights).eval().to(args.device)
    pipe = ScenimefyPipeline(model)
    device = torch.device(args.device)
    settings = choose_settings(device)
    print(cpu_line())
    print(
        f"clip {args.clip.name}: {info.width}x{info.height}, {total} frames at {float(info.fps):.2f} fps, "
        f"audio {info.audio_codec}; device {args.device}, fast path: {settings.reason}"
    )
    print(f"our path on {frames} frames (full size), naive loop on {min(args.naive_frames, frames)} frames\n")

    # Warm-up, untimed: kernel selection and the fast path's prepared weights, for both paths.
    warm = torch.zeros(1, 3, info.height + -info.height % 4, info.width + -info.width % 4, device=device)
    translate(model, warm)
    translate(model, warm, dtype=torch.float32)  # the fp32 path's Winograd weights
    with torch.inference_mode():
        model(warm)
    del warm

    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        side = {"stats only": FlickerMeter(), "filter only": FlickerMeter()}
        side_filter = TemporalFilter()

        def before_filter(inputs, outputs):  # default pass: outputs before the output filter
            side["stats only"].update(inputs, outputs)
            return outputs

        def through_filter(inputs, outputs):  # unstabilised pass: what the filter alone would give
            side["filter only"].update(inputs, side_filter(inputs, outputs))
            return outputs

        runs = [
            ("default (stabilised)", {"stabilize": True, "adjust": before_filter}),
            ("default, no stabilisation", {"stabilize": False, "adjust": through_filter}),
        ]
        if device.type == "cpu" and cpu_probe_bf16():
            runs.append(("fp32 path (stabilised)", {"stabilize": True, "env": {FORCE_BF16_ENV: "0"}}))
        if args.preview_side:
            runs.append(
                (
                    f"preview max side {args.preview_side} (stabilised)",
                    {"stabilize": True, "max_side": args.preview_side},
                )
            )
        for name, kwargs in runs:
            env = kwargs.pop("env", {})
            os.environ.update(env)
            result = stylize_video(
                pipe,
                args.clip,
                tmp / "ours.mp4",
                duration=duration,
                batch_size=args.batch_size,
                crf=args.crf,
                preset=args.preset,
                measure_flicker=True,
                progress=True,
                **kwargs,
            )
            for key in env:
                del os.environ[key]
            rows[name] = {
                "frames": result.frames,
                "size": f"{result.width}x{result.height}",
                "seconds": result.seconds,
                "fps": result.frames_per_second,
                "flicker_index": result.flicker.index,
                "flicker_static": result.flicker.static,
                "audio": result.audio,
            }
            print(f"  {name}: {result.frames_per_second:.3f} frames/s, flicker {result.flicker.index:.3f}", flush=True)
        done, seconds = naive_loop(
            model, args.clip, tmp / "naive.mp4", min(args.naive_frames, frames), args.crf, args.preset
        )
        rows["naive loop (fp32 eager, frame by frame)"] = {
            "frames": done,
            "size": f"{info.width}x{info.height}",
            "seconds": seconds,
            "fps": done / seconds,
            "flicker_index": None,
            "flicker_static": None,
            "audio": "none",
        }

    naive_fps = rows["naive loop (fp32 eager, frame by frame)"]["fps"]
    print("\n| run | frames | size | frames/s | vs naive | flicker index | static flicker (levels) |")
    print("|---|---|---|---|---|---|---|")
    for name, r in rows.items():
        flick = "" if r["flicker_index"] is None else f"{r['flicker_index']:.3f}"
        static = "" if r["flicker_static"] is None else f"{r['flicker_static']:.2f}"
        ratio = r["fps"] / naive_fps
        print(f"| {name} | {r['frames']} | {r['size']} | {r['fps']:.3f} | {ratio:.2f}x | {flick} | {static} |")
    steady, plain = rows["default (stabilised)"], rows["default, no stabilisation"]
    speedup = steady["fps"] / naive_fps
    target = "5x with native bf16" if settings.dtype == torch.bfloat16 else "2.5x on an fp32-only CPU"
    print(f"\nspeed-up of the default path over the naive loop at full size: {speedup:.2f}x (target >= {target})")
    if "fp32 path (stabilised)" in rows:
        fp32 = rows["fp32 path (stabilised)"]["fps"] / naive_fps
        print(f"speed-up of the fp32 path (as on a CPU without bf16): {fp32:.2f}x (target >= 2.5x)")
    print(f"audio: {steady['audio']}")
    print("\nflicker at full size (index: output change / input change; static: levels where the input is still):")
    parts = {
        "none": plain,
        "statistics only": side["stats only"].result(),
        "output filter only": side["filter only"].result(),
        "both (default)": steady,
    }
    for name, r in parts.items():
        index, static = (r["flicker_index"], r["flicker_static"]) if isinstance(r, dict) else (r.index, r.static)
        print(f"  {name:20s} index {index:.3f}   static {static:.2f}")
        rows.setdefault(f"flicker: {name}", {"flicker_index": index, "flicker_static": static})
    lower = steady["flicker_index"] < plain["flicker_index"]
    verdict = "lower" if lower else "NOT lower"
    print(f"stabilisation: {plain['flicker_index']:.3f} -> {steady['flicker_index']:.3f} ({verdict})")
    if args.json:
        args.json.write_text(json.dumps({"frames": frames, "rows": rows}, indent=1))
    print(cpu_line())


if __name__ == "__main__":
    main()
