"""Video: speed and temporal consistency of each method, against per-frame stylization.

For each model (``--models``: ``parity``, the converted parity weights -- the paper's full
network with fixed random weights; ``lite``, a lite student: ``--lite DIR`` a saved one, e.g.
from ``bench_lite.py --save DIR``, else an untrained one, said so) and each method:

    per-frame (temporal="off"), stats (today's stabilisation), flow (the default),
    flow + keyframes 2, flow + keyframes 3

it runs the real video path (``stylize_video``: decode, network, temporal work, x264 at
``--crf``) and prints frames/s (and against a naive loop: decode, fp32 eager ``model(x)`` per
frame, encode), E_warp (Lai et al., graded with Farneback flow, ``scenimefy.evaluation.temporal``)
and its ratio to the input's own E_warp, the flicker index, PSNR against the per-frame output,
sharpness (mean image-gradient magnitude, relative to the per-frame output's) and the drift of the
mean colour over a static stretch (max over frames and channels of |mean(O_t) - mean(O_0)|, 8-bit
levels). On two clips:

* the test clip ``../shared/data/video/hanami.mp4`` (540x960; ``--max-side`` scales it down);
* a synthetic clip with KNOWN motion: a photo panned (``--pan`` px/frame) and zoomed, with
  sensor noise and a brightness flicker, where E_warp is also computed with the true motion;

and a static clip (the same photo held still, sensor noise only, ``--static-seconds``) for the
drift. The cost of the flow work alone (flow + blend, keyframe warps) is timed on the clip's
frames with the network's outputs precomputed, against the network's own time per frame.
All timings are taken one after another in one process: on a shared CPU trust the ratios only.

    python benchmarks/bench_video.py                              # everything (slow on a CPU)
    python benchmarks/bench_video.py --frames 24 --max-side 384 --models parity   # a quick look
    python benchmarks/bench_video.py --models parity --skip real,synthetic,static --frames 40 --speed 2
                                                                 # speed only: full size, interleaved
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import av
import cv2
import numpy as np
import torch
import torch.nn.functional as F
from common import SHARED, cpu_line

import scenimefy  # noqa: F401  (before torchvision)
from scenimefy.evaluation.temporal import warp_error
from scenimefy.hub.convert import load_reference_translator
from scenimefy.inference.engine import translate
from scenimefy.inference.pipeline import ScenimefyPipeline
from scenimefy.inference.stabilize import NormStatsSmoother
from scenimefy.inference.temporal import TemporalProcessor
from scenimefy.inference.video import stylize_video
from scenimefy.inference.video_io import probe_video, video_frames
from scenimefy.models import ScenimefyLiteTranslator

CLIP = SHARED / "data" / "video" / "hanami.mp4"
WEIGHTS = SHARED / "parity" / "net_G.pth"
PHOTO = SHARED / "data" / "photos" / "ag_1.jpg"
METHODS = {
    "per-frame": {"temporal": "off"},
    "stats": {"temporal": "stats"},
    "flow": {"temporal": "flow"},
    "flow + keyframes 2": {"temporal": "flow", "keyframes": 2},
    "flow + keyframes 3": {"temporal": "flow", "keyframes": 3},
}


# --------------------------------------------------------------------------- clips
def known_motion_clip(
    photo: np.ndarray,
    n: int,
    width: int,
    height: int,
    *,
    pan: float = 2.0,
    zoom: float = 1.002,
    noise: float = 2.0,
    flicker: float = 0.02,
    seed: int = 0,
) -> tuple[list[np.ndarray], list[tuple[np.ndarray, np.ndarray]]]:
    """Frames of ``photo`` seen through a window that pans ``pan`` px/frame and zooms in by ``zoom``
    per frame, with Gaussian sensor noise (sigma in levels) and a brightness flicker of +-``flicker``;
    and the true (forward, backward) flow of each consecutive pair.

    Frame t at pixel x shows the photo at A_t(x) = (x - c) / s_t + p + o_t (c: the frame's centre,
    p: the photo's, s_t = zoom^t, o_t = (pan t, 0)); so F_f(x) = s_{t+1} (A_t(x) - p - o_{t+1}) + c - x.
    """
    rng = np.random.default_rng(seed)
    src = photo.astype(np.float32)
    ph, pw = src.shape[:2]
    c = np.array([(width - 1) / 2, (height - 1) / 2])
    p = np.array([(pw - 1) / 2 - pan * (n - 1) / 2, (ph - 1) / 2])  # the pan stays inside the photo
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float64)
    grid = np.stack([xx, yy], -1)

    def source(t: int, x: np.ndarray) -> np.ndarray:  # A_t(x)
        return (x - c) / zoom**t + p + np.array([pan * t, 0.0])

    def target(t: int, a: np.ndarray) -> np.ndarray:  # A_t^-1(a)
        return (a - p - np.array([pan * t, 0.0])) * zoom**t + c

    frames, flows = [], []
    for t in range(n):
        a = source(t, grid).astype(np.float32)
        f = cv2.remap(src, a[..., 0], a[..., 1], cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT)
        f = f * (1 + flicker * rng.choice([-1.0, 1.0])) + rng.normal(0, noise, f.shape)
        frames.append(np.clip(np.rint(f), 0, 255).astype(np.uint8))
        if t + 1 < n:
            fw = target(t + 1, source(t, grid)) - grid
            bw = target(t, source(t + 1, grid)) - grid
            flows.append((fw.astype(np.float32), bw.astype(np.float32)))
    return frames, flows


def write_frames(path: Path, frames: list[np.ndarray], rate: int = 30, crf: int = 4) -> None:
    """A near-lossless H.264 clip of ``frames`` (the noise survives)."""
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=rate)
        stream.height, stream.width = frames[0].shape[:2]
        stream.pix_fmt, stream.options = "yuv444p", {"crf": str(crf), "preset": "fast"}
        for pixels in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(pixels, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)


def photo_at(height: int, width: int) -> np.ndarray:
    """The benchmark photo scaled so a ``width`` x ``height`` window covers ~80% of its height."""
    rgb = np.asarray(__import__("PIL.Image", fromlist=["Image"]).open(PHOTO).convert("RGB"))
    s = height / 0.8 / rgb.shape[0]
    return cv2.resize(rgb, (round(rgb.shape[1] * s), round(rgb.shape[0] * s)), interpolation=cv2.INTER_AREA)


# --------------------------------------------------------------------------- measures
def psnr(a: list[np.ndarray], b: list[np.ndarray]) -> float:
    """PSNR (dB) of the frames ``a`` against ``b``, from the mean squared error over all frames."""
    mse = float(np.mean([((x.astype(np.float64) - y) ** 2).mean() for x, y in zip(a, b)]))
    return 10 * np.log10(255.0**2 / mse) if mse > 0 else float("inf")


def sharpness(frames: list[np.ndarray]) -> float:
    """Mean image-gradient magnitude of the grey frames (levels per pixel)."""
    total = 0.0
    for f in frames:
        g = cv2.cvtColor(f, cv2.COLOR_RGB2GRAY).astype(np.float64)
        dy, dx = np.gradient(g)
        total += float(np.sqrt(dx**2 + dy**2).mean())
    return total / len(frames)


def drift(frames: list[np.ndarray]) -> float:
    means = np.stack([f.reshape(-1, 3).mean(0) for f in frames])
    return float(np.abs(means - means[0]).max())


def naive_loop(model, frames: list[np.ndarray], dst: Path, crf: int) -> float:
    """Frames/s of fp32 eager ``model(x)`` frame after frame, with the encode."""
    began = time.perf_counter()
    with av.open(str(dst), "w") as out:
        vout = out.add_stream("libx264", rate=30)
        vout.height, vout.width = frames[0].shape[:2]
        vout.pix_fmt, vout.options = "yuv420p", {"crf": str(crf)}
        for rgb in frames:
            x = torch.from_numpy(rgb).permute(2, 0, 1)[None].float() / 127.5 - 1
            h, w = x.shape[-2:]
            m = 8 if isinstance(model, ScenimefyLiteTranslator) else 4
            x = F.pad(x, (0, -w % m, 0, -h % m), mode="reflect")
            with torch.inference_mode():
                y = model(x)[:, :, :h, :w]
            pixels = ((y.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)[0].permute(1, 2, 0).numpy()
            for packet in vout.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(pixels), format="rgb24")):
                out.mux(packet)
        for packet in vout.encode(None):
            out.mux(packet)
    return len(frames) / (time.perf_counter() - began)


def flow_cost(pipe, frames: list[np.ndarray], per_frame: list[np.ndarray], keyframes: int) -> tuple[float, float]:
    """(seconds per frame of the temporal work alone, of the network alone) on ``frames``."""
    lookup = {hashlib.blake2b(x.tobytes(), digest_size=16).digest(): y for x, y in zip(frames, per_frame)}

    def stored(batch):  # the network's outputs, already known
        return np.stack([lookup[hashlib.blake2b(x.tobytes(), digest_size=16).digest()] for x in batch])

    work = TemporalProcessor(stored, method="flow", keyframes=keyframes)
    began = time.perf_counter()
    for x in frames:
        work.push(x[None])
    work.finish()
    temporal = (time.perf_counter() - began) / len(frames)
    smoother = NormStatsSmoother() if pipe.can_smooth_stats else None
    sample = frames[: min(4, len(frames))]
    pipe.stylize_frames(sample[0][None], norm_stats=smoother)  # warm
    began = time.perf_counter()
    for x in sample:
        pipe.stylize_frames(x[None], norm_stats=smoother)
    return temporal, (time.perf_counter() - began) / len(sample)


# --------------------------------------------------------------------------- runs
def run_clip(name, pipe, model, clip: Path, tmp: Path, args, true_flows=None, max_side=None) -> dict:
    info = probe_video(clip)
    total = info.frames or round((info.duration or 0) * float(info.fps or 30))
    frames = min(args.frames or total, total)
    duration = None if frames >= total else (frames - 0.5) / float(info.fps)
    rows, outputs = {}, {}
    for method, options in METHODS.items():
        out = tmp / f"{name}-{method.replace(' ', '_')}.mp4"
        cpu = time.process_time()
        result = stylize_video(
            pipe, clip, out, duration=duration, max_side=max_side, crf=args.crf, progress=False, **options
        )
        cpu = time.process_time() - cpu  # all threads of this process: steadier than wall time on a shared CPU
        outputs[method] = list(video_frames(out))
        rows[method] = {
            "fps": result.frames_per_second,
            "cpu_per_frame": cpu / result.frames,
            "frames": result.frames,
            "network": result.network_frames,
        }
        print(f"  {name} / {method}: {result.frames_per_second:.3f} frames/s", flush=True)
    size = (outputs["per-frame"][0].shape[1], outputs["per-frame"][0].shape[0])
    inputs = list(video_frames(clip, size=size, limit=frames))
    naive = naive_loop(model, inputs[: args.naive_frames], tmp / "naive.mp4", args.crf)
    reference = outputs["per-frame"]
    base_sharp = sharpness(reference)
    for method, outs in outputs.items():
        n = min(len(outs), len(inputs))
        graded = warp_error(inputs[:n], outs[:n])
        r = rows[method]
        r.update(
            e_warp=graded.output,
            e_warp_input=graded.input,
            flicker=graded.flicker,
            psnr=psnr(outs, reference) if method != "per-frame" else None,
            sharpness=sharpness(outs) / base_sharp,
            vs_naive=r["fps"] / naive,
        )
        if true_flows is not None:
            r["e_warp_true"] = warp_error(inputs[:n], outs[:n], flows=true_flows[: n - 1]).output
            r["e_warp_true_input"] = warp_error(inputs[:n], inputs[:n], flows=true_flows[: n - 1]).input
    rows["_naive_fps"] = naive
    rows["_cost"] = {f"keyframes {k}": flow_cost(pipe, inputs, reference, k) for k in (1, 2, 3)}
    rows["_size"] = f"{size[0]}x{size[1]}"
    return rows


def run_speed(pipe, clip: Path, tmp: Path, args) -> dict:
    """Frames/s of each method on ``clip``, the methods interleaved ``--speed`` times: the best run of
    each (the least disturbed on a shared CPU) and its ratio to per-frame's best."""
    info = probe_video(clip)
    total = info.frames or round((info.duration or 0) * float(info.fps or 30))
    frames = min(args.frames or total, total)
    duration = None if frames >= total else (frames - 0.5) / float(info.fps)
    rows = {m: {"seconds": float("inf"), "runs": []} for m in METHODS if m != "stats"}
    for _ in range(args.speed):
        for method, row in rows.items():
            began = time.perf_counter()
            result = stylize_video(
                pipe,
                clip,
                tmp / "speed.mp4",
                duration=duration,
                max_side=args.max_side,
                crf=args.crf,
                progress=False,
                **METHODS[method],
            )
            seconds = time.perf_counter() - began
            row["runs"].append(round(seconds, 2))
            row.update(seconds=min(row["seconds"], seconds), frames=result.frames, network=result.network_frames)
            print(f"  speed / {method}: {seconds:.1f} s", flush=True)
    base = rows["per-frame"]["frames"] / rows["per-frame"]["seconds"]
    for row in rows.values():
        row["fps"] = row["frames"] / row["seconds"]
        row["vs_per_frame"] = row["fps"] / base
    return rows


def run_static(pipe, tmp: Path, args, width: int, height: int) -> dict:
    n = round(args.static_seconds * 30)
    photo = photo_at(height, width)
    frames, _ = known_motion_clip(photo, n, width, height, pan=0.0, zoom=1.0, flicker=0.0, seed=1)
    clip = tmp / "static.mp4"
    write_frames(clip, frames)
    result = {}
    for method, options in METHODS.items():
        out = tmp / "static-out.mp4"
        stylize_video(pipe, clip, out, crf=args.crf, progress=False, **options)
        outs = list(video_frames(out))
        result[method] = {
            "drift": drift(outs),
            "static_change": float(np.mean([np.abs(a.astype(int) - b).mean() for a, b in zip(outs, outs[1:])])),
        }
    return result


def print_table(title: str, rows: dict) -> None:
    true = "e_warp_true" in rows["per-frame"]
    print(f"\n{title} ({rows['_size']}, naive loop {rows['_naive_fps']:.3f} frames/s)")
    head = "| method | frames/s | vs per-frame | CPU s/frame | vs per-frame (CPU) | vs naive | network frames |"
    head += " E_warp x1e3 | / input's |"
    head += " E_warp (true motion) x1e3 |" if true else ""
    head += " flicker | PSNR vs per-frame (dB) | sharpness |"
    print(head)
    print("|" + "---|" * (head.count("|") - 1))
    base, base_cpu = rows["per-frame"]["fps"], rows["per-frame"]["cpu_per_frame"]
    for method in METHODS:
        r = rows[method]
        line = (
            f"| {method} | {r['fps']:.3f} | {r['fps'] / base:.2f}x | {r['cpu_per_frame']:.3f} "
            f"| {base_cpu / r['cpu_per_frame']:.2f}x | {r['vs_naive']:.2f}x "
            f"| {r['network']}/{r['frames']} | {r['e_warp'] * 1e3:.3f} | {r['e_warp'] / r['e_warp_input']:.1f}x |"
        )
        if true:
            line += f" {r['e_warp_true'] * 1e3:.3f} |"
        psnr_text = "" if r["psnr"] is None else f"{r['psnr']:.2f}"
        line += f" {r['flicker']:.3f} | {psnr_text} | {r['sharpness'] * 100:.0f}% |"
        print(line)
    print(
        f"input's own E_warp x1e3: {rows['per-frame']['e_warp_input'] * 1e3:.3f}"
        + (f"; with the true motion: {rows['per-frame']['e_warp_true_input'] * 1e3:.3f}" if true else "")
    )
    for k, (temporal, network) in rows["_cost"].items():
        print(
            f"temporal work, {k}: {temporal * 1e3:.0f} ms/frame = {temporal / network * 100:.1f}% "
            f"of the network's {network * 1e3:.0f} ms/frame"
        )


def load_models(args) -> dict:
    models = {}
    for name in args.models.split(","):
        if name == "parity":
            models["parity (full network)"] = load_reference_translator(args.weights).eval()
        elif name == "lite":
            if args.lite:
                models[f"lite student ({Path(args.lite).name})"] = ScenimefyLiteTranslator.from_pretrained(
                    args.lite
                ).eval()
            else:
                torch.manual_seed(0)
                models["lite student (UNTRAINED, random weights)"] = ScenimefyLiteTranslator().eval()
        else:
            raise SystemExit(f"unknown model {name!r}: parity, lite")
    return models


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clip", type=Path, default=CLIP)
    parser.add_argument("--weights", type=Path, default=WEIGHTS)
    parser.add_argument("--models", default="parity,lite", help="comma-separated: parity, lite")
    parser.add_argument("--lite", default=None, help="a saved lite student folder (bench_lite.py --save)")
    parser.add_argument("--frames", type=int, default=48, help="frames of each clip (default 48)")
    parser.add_argument("--max-side", type=int, default=None, help="scale the test clip down (a quicker run)")
    parser.add_argument("--synthetic", default="384x224", help="known-motion clip size WxH")
    parser.add_argument("--pan", type=float, default=2.0, help="known-motion clip: pan in px/frame")
    parser.add_argument("--static-seconds", type=float, default=3.0)
    parser.add_argument("--static-size", default=None, help="static clip size WxH (default: --synthetic's)")
    parser.add_argument("--naive-frames", type=int, default=6)
    parser.add_argument("--crf", type=int, default=18)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--skip", default="", help="comma-separated parts to skip: real, synthetic, static")
    parser.add_argument(
        "--speed",
        type=int,
        default=0,
        metavar="N",
        help="also time each method on the test clip N times, interleaved (best of N, the ratio to per-frame)",
    )
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    skip = set(filter(None, args.skip.split(",")))
    print(cpu_line())
    sw, sh = (int(v) for v in args.synthetic.split("x"))
    report = {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        photo = photo_at(sh, sw)
        frames, true_flows = known_motion_clip(photo, args.frames, sw, sh, pan=args.pan)
        synthetic = tmp / "known-motion.mp4"
        write_frames(synthetic, frames)
        for label, model in load_models(args).items():
            pipe = ScenimefyPipeline(model)
            translate(model, torch.zeros(1, 3, 64, 64))  # warm-up
            print(f"\n== {label}")
            rows = {}
            if "real" not in skip:
                rows["test clip"] = run_clip("real", pipe, model, args.clip, tmp, args, max_side=args.max_side)
                print_table(f"{label}: {args.clip.name}", rows["test clip"])
            if "synthetic" not in skip:
                rows["known motion"] = run_clip("synthetic", pipe, model, synthetic, tmp, args, true_flows=true_flows)
                print_table(
                    f"{label}: known-motion clip (pan {args.pan} px/frame, zoom 0.2%/frame, noise 2 levels, "
                    "flicker 2%)",
                    rows["known motion"],
                )
            if args.speed:
                rows["speed"] = run_speed(pipe, args.clip, tmp, args)
                print(f"\n{label}: speed on {args.clip.name}, best of {args.speed} interleaved runs")
                print("| method | frames/s | vs per-frame | network frames | runs (s) |")
                print("|---|---|---|---|---|")
                for method, r in rows["speed"].items():
                    print(
                        f"| {method} | {r['fps']:.3f} | {r['vs_per_frame']:.2f}x | {r['network']}/{r['frames']} "
                        f"| {', '.join(str(v) for v in r['runs'])} |"
                    )
            if "static" not in skip:
                tw, th = (int(v) for v in (args.static_size or args.synthetic).split("x"))
                rows["static"] = run_static(pipe, tmp, args, tw, th)
                print(f"\n{label}: static clip, {args.static_seconds:g} s at 30 fps, {tw}x{th}, sensor noise only")
                for method, r in rows["static"].items():
                    print(
                        f"  {method:20s} drift {r['drift']:.2f} levels, "
                        f"mean change {r['static_change']:.2f} levels/frame"
                    )
            report[label] = rows
    if args.json:
        args.json.write_text(json.dumps(report, indent=1, default=str))
    print(cpu_line())


if __name__ == "__main__":
    main()
