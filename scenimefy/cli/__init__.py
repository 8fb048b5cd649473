"""``scenimefy`` command line: stylize, video, convert, export, styles, download, evaluate, publish, dataset.

Each command module registers its subcommands with ``add_<name>(subparsers)`` and a handler.
Heavy imports happen inside handlers so ``scenimefy --help`` stays fast. User errors print one
line and exit 2; per-file failures in batch commands are summarised and exit 1; a full disk
prints one line and exits 1 (outputs are atomic: nothing half-written stays); Ctrl-C / SIGTERM
exit 130 / 143.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from scenimefy.cli.common import CommandError
from scenimefy.cli.dataset import add_dataset
from scenimefy.cli.evaluate import add_evaluate
from scenimefy.cli.export import add_export
from scenimefy.cli.hub import add_convert, add_download, add_publish, add_styles
from scenimefy.cli.stylize import add_stylize, add_video

COMMANDS = [
    add_stylize,
    add_video,
    add_convert,
    add_export,
    add_styles,
    add_download,
    add_evaluate,
    add_publish,
    add_dataset,
]


def build_parser() -> argparse.ArgumentParser:
    from scenimefy._version import __version__

    parser = argparse.ArgumentParser(
        prog="scenimefy", description="Turn photos and videos into anime scenes (Scenimefy)."
    )
    parser.add_argument("--version", action="version", version=f"scenimefy {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in COMMANDS:
        add(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from scenimefy import _torchvision  # noqa: F401  (before any handler imports lpips/open_clip/transformers)
    from scenimefy.data.images import InvalidImageError
    from scenimefy.hub.convert import CheckpointError
    from scenimefy.hub.download import WeightsUnavailableError
    from scenimefy.inference.outputs import DiskFullError, is_disk_full

    try:
        return args.handler(args)
    except DiskFullError as err:  # before ValueError/OSError: one line, the partial output is gone
        print(f"error: {err}", file=sys.stderr)
        return 1
    except (
        CommandError,
        CheckpointError,
        WeightsUnavailableError,
        InvalidImageError,
        FileNotFoundError,
        ValueError,
    ) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyError as err:  # unknown style names
        print(f"error: {err.args[0] if err.args else err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as err:  # Ctrl-C, or SIGTERM where a handler turned it into one
        signum = getattr(err, "signal", 2)
        print(f"interrupted ({'SIGTERM' if signum == 15 else 'SIGINT'})", file=sys.stderr)
        return 128 + signum
    except OSError as err:
        if is_disk_full(err):
            print(f"error: the disk is full ({err.strerror})", file=sys.stderr)
            return 1
        raise


if __name__ == "__main__":
    sys.exit(main())
