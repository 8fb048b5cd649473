"""``scenimefy stylize`` (image files, folders or a ``datasets`` dataset) and ``scenimefy video``.

``stylize`` resumes (complete outputs are skipped unless ``--overwrite``), writes every output
atomically, stops cleanly on Ctrl-C / SIGTERM with a summary, and under ``accelerate launch``
shares the work between the processes (``scenimefy.inference.batch``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from scenimefy._distributed import close_process_group
from scenimefy.cli.common import CommandError, add_model_args, load_pipeline, print_kernel_report


def _stylize(args: argparse.Namespace) -> int:
    from scenimefy.inference import batch

    suffix = "." + args.format
    with batch.stop_on_signals():  # from here on, Ctrl-C / SIGTERM end with a summary
        try:
            return _run_stylize(args, batch, suffix)
        except batch.Interrupted as stop:  # before the first image: nothing was written
            print(f"interrupted ({stop}) before any image was written", file=sys.stderr)
            return 128 + stop.signal
        finally:
            close_process_group()


def _run_stylize(args: argparse.Namespace, batch, suffix: str) -> int:
    dataset = None
    column = "image"
    if args.dataset:
        if args.inputs:
            raise CommandError("give image files/folders or --dataset, not both")
        from scenimefy.data.sources import load_hf_dataset

        dataset = load_hf_dataset(args.dataset, split=args.split)
        column = batch.image_column(dataset, args.image_column)
        items = batch.plan_dataset(len(dataset), args.output, suffix)
    else:
        if not args.inputs:
            raise CommandError("give image files or folders to stylize (or --dataset)")
        missing = [p for p in args.inputs if not Path(p).exists()]
        if missing:
            raise CommandError(f"{missing[0]}: no such file or folder")
        items = batch.plan_files(args.inputs, args.output, suffix)
    if not items:
        raise CommandError("no input images found")
    state = batch.distributed_state()
    main = state is None or state.is_main_process
    todo, skipped = batch.pending(items, overwrite=args.overwrite)  # every process scans the same files
    pipe = load_pipeline(args, device=None if state is None or args.device else str(state.device))
    if state is not None:
        state.wait_for_everyone()  # nobody writes before everybody has scanned
    if state is not None:
        with state.split_between_processes(todo) as share:
            mine = list(share)
    else:
        mine = todo
    where = f" [{state.process_index + 1}/{state.num_processes}]" if state is not None else ""
    report = batch.run_batch(
        pipe,
        mine,
        dataset=dataset,
        column=column,
        mode=args.mode,
        max_side=args.max_side,
        progress=main,
        desc=f"stylize ({pipe.style or 'custom'}){where}",
    )
    report.skipped = skipped
    if args.verbose:
        print_kernel_report(pipe, args.mode)
    if report.interrupted or report.error:  # the others may be gone: no gathering
        report.remaining += len(todo) - len(mine)
        total = batch.BatchReport.merge([report])
        total.skipped = skipped
        print(total.summary(args.output) + where)
    else:
        total = batch.gather_reports(state, report)
        if not main:
            return total.exit_status
        print(total.summary(args.output))
    for src, reason in total.failed:
        print(f"  FAILED {src}: {reason}", file=sys.stderr)
    if total.error:
        print(f"error: {total.error}", file=sys.stderr)
    return total.exit_status


def add_stylize(sub) -> None:
    p = sub.add_parser(
        "stylize",
        help="stylize image files, folders or a datasets dataset (resumable; shards under accelerate launch)",
        description="Stylize images into anime scenes. Outputs are written atomically; complete ones are skipped "
        "on a rerun (--overwrite redoes them); Ctrl-C / SIGTERM stop with a summary. Under `accelerate launch -m "
        "scenimefy stylize ...` the processes share the work and the main one prints the summary.",
    )
    p.add_argument("inputs", nargs="*", help="image files and/or folders (searched recursively)")
    p.add_argument("-o", "--output", required=True, help="output folder (mirrors input folder structure)")
    p.add_argument("--dataset", default=None, help="a datasets dataset instead of files: Hub id or local folder")
    p.add_argument("--split", default="train", help="--dataset: the split (default: train)")
    p.add_argument("--image-column", default=None, help="--dataset: the image column (default: the first image one)")
    add_model_args(p)
    p.add_argument(
        "--max-side", type=int, default=None, help="cap the working resolution (output keeps the input size)"
    )
    p.add_argument("--mode", default="default", choices=["default", "exact", "reference"], help="inference mode")
    p.add_argument("--format", default="png", choices=["png", "jpg", "webp"], help="output format (png keeps alpha)")
    p.add_argument("--overwrite", action="store_true", help="redo outputs that already exist (default: skip them)")
    p.set_defaults(handler=_stylize)


def _video(args: argparse.Namespace) -> int:
    from scenimefy.inference.batch import Interrupted, stop_on_signals
    from scenimefy.inference.video import stylize_video

    if not Path(args.input).is_file():
        raise CommandError(f"{args.input}: no such file")
    if args.keyframes < 1:
        raise CommandError(f"--keyframes must be >= 1, got {args.keyframes}")
    temporal = args.temporal
    if args.stabilize is not None:  # the older switch: --no-stabilize is --temporal off
        implied = "flow" if args.stabilize else "off"
        if temporal is not None and (temporal == "off") == args.stabilize:
            raise CommandError(f"--{'' if args.stabilize else 'no-'}stabilize contradicts --temporal {temporal}")
        temporal = temporal or implied
    with stop_on_signals():  # Ctrl-C / SIGTERM: the partial output is removed on the way out
        pipe = load_pipeline(args)
        try:
            result = stylize_video(
                pipe,
                args.input,
                args.output,
                temporal=temporal,
                keyframes=args.keyframes,
                momentum=args.momentum,
                start=args.start,
                duration=args.duration,
                max_side=args.max_side,
                batch_size=args.batch_size,
                crf=args.crf,
                preset=args.preset,
                measure_flicker=args.flicker,
            )
        except Interrupted as stop:
            print(f"interrupted ({stop}); {args.output} was not written (no partial file left)", file=sys.stderr)
            return 128 + stop.signal
    print(
        f"{result.frames} frames {result.width}x{result.height} in {result.seconds:.1f} s "
        f"({result.frames_per_second:.2f} frames/s), audio {result.audio} -> {result.path}"
    )
    network = f", the network on {result.network_frames} of them" if result.keyframes > 1 else ""
    cuts = f", {result.scene_cuts} scene cut(s)" if result.scene_cuts else ""
    print(f"temporal consistency: {result.temporal}{network}{cuts}")
    if not result.complete:
        expected = f" of the ~{result.expected_frames} expected" if result.expected_frames else ""
        damaged = f", {result.damaged} damaged packet(s) skipped" if result.damaged else ""
        print(
            f"warning: {args.input} is damaged or incomplete: the output holds the {result.frames}{expected} "
            f"frames that could be read{damaged}",
            file=sys.stderr,
        )
    if result.flicker is not None:
        print(f"flicker index {result.flicker.index:.3f} (static regions: {result.flicker.static:.2f} levels/frame)")
    if args.verbose:
        print_kernel_report(pipe, "default")
    return 0


def add_video(sub) -> None:
    p = sub.add_parser(
        "video",
        help="stylize a video (keeps timing, rotation and the audio track)",
        description="Stylize a video into an H.264 anime clip; the audio is copied (or re-encoded to AAC). The "
        "output is written to a temporary file and renamed when complete; a damaged input gives the frames that "
        "could be read.",
    )
    p.add_argument("input", help="video file (anything FFmpeg reads)")
    p.add_argument("-o", "--output", required=True, help="output file: .mp4 (default choice), .m4v, .mov or .mkv")
    add_model_args(p)
    p.add_argument(
        "--temporal",
        choices=["flow", "stats", "off"],
        default=None,
        help="temporal consistency: flow (default): blend with the previous output warped by optical flow, "
        "in the low band, where the flow is trusted, plus smoothed statistics; stats: smoothed InstanceNorm "
        "statistics and a motion-gated output filter (the earlier default); off: every frame on its own",
    )
    p.add_argument(
        "--keyframes",
        type=int,
        default=1,
        metavar="N",
        help="faster: run the network on every N-th frame (and at scene cuts, and where the flow fails) and "
        "warp the frames in between from their two keyframes (default: 1, every frame)",
    )
    p.add_argument(
        "--stabilize",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="older switch: --no-stabilize is --temporal off, --stabilize the default (flow)",
    )
    p.add_argument("--momentum", type=float, default=0.9, help="statistics smoothing: weight of the past frames'")
    p.add_argument("--start", type=float, default=0.0, help="start at this many seconds")
    p.add_argument("--duration", type=float, default=None, help="stylize only this many seconds (a preview)")
    p.add_argument("--max-side", type=int, default=None, help="scale frames so the longer side is at most this")
    p.add_argument("--batch-size", type=int, default=4, help="frames per network call")
    p.add_argument("--crf", type=int, default=18, help="x264 quality: lower is better (18: visually lossless)")
    p.add_argument("--preset", default="medium", help="x264 speed preset (ultrafast .. veryslow)")
    p.add_argument("--flicker", action="store_true", help="also measure and print the flicker index")
    p.set_defaults(handler=_video)
