"""Stylizing many images: files, folder trees or a ``datasets`` dataset, on one process or many.

``scenimefy stylize`` is built on this module, and the same command shards the work when it
runs under ``accelerate launch`` (several processes, GPUs or CPU processes):

    accelerate launch --num_processes 4 -m scenimefy stylize photos/ -o out/

- Plan: every input gets one output path (folders mirrored; dataset rows numbered), computed
  the same way by every process.
- Resume: an output that already exists and decodes is skipped (``overwrite`` redoes it); outputs
  are written atomically (``outputs.atomic_output``), so an existing output is a complete one.
- Shard: all processes scan what is left, wait for each other, then each takes its contiguous
  share of the same pending list (``PartialState.split_between_processes``).
- Stop: SIGINT / SIGTERM stop the run between two writes (the file being written is removed);
  the report says how much is left, and rerunning the same command finishes it.
- Report: each process counts what it did; the main process gathers the counts and prints one
  summary.
"""

from __future__ import annotations

import os
import signal
import sys
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from scenimefy.inference.outputs import DiskFullError, image_is_complete, save_image, stale_partials


class Interrupted(KeyboardInterrupt):
    """SIGINT or SIGTERM arrived; ``signal`` is its number."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signal = signum


@dataclass(frozen=True)
class BatchItem:
    """One output to make: from an image file, or from row ``index`` of a dataset."""

    output: Path
    source: Path | None = None
    index: int | None = None

    @property
    def label(self) -> str:
        return str(self.source) if self.source is not None else f"row {self.index}"


@dataclass
class BatchReport:
    """What a run did; reports of several processes add up with :meth:`merge`."""

    done: int = 0
    skipped: int = 0  # already complete before the run
    failed: list[tuple[str, str]] = field(default_factory=list)  # (input, reason)
    remaining: int = 0  # not reached because the run stopped
    interrupted: int | None = None  # the signal that stopped the run
    error: str | None = None  # what stopped the run otherwise (a full disk)
    per_process: list[int] = field(default_factory=list)  # outputs written by each process

    @classmethod
    def merge(cls, reports: Sequence[BatchReport]) -> BatchReport:
        total = cls(skipped=reports[0].skipped if reports else 0)  # every process counted the same skips
        for report in reports:
            total.done += report.done
            total.failed += report.failed
            total.remaining += report.remaining
            total.interrupted = total.interrupted or report.interrupted
            total.error = total.error or report.error
            total.per_process.append(report.done)
        return total

    @property
    def exit_status(self) -> int:
        if self.interrupted:
            return 128 + self.interrupted
        return 1 if self.failed or self.error else 0

    def summary(self, out_dir: str | os.PathLike) -> str:
        counts = f"{self.done} stylized, {self.skipped} skipped (already done), {len(self.failed)} failed"
        if len(self.per_process) > 1:
            counts += f" ({len(self.per_process)} processes: {' + '.join(map(str, self.per_process))} written)"
        if self.interrupted or self.error:
            cause = signal.Signals(self.interrupted).name if self.interrupted else "stopped"
            return (
                f"{cause}: {counts}, {self.remaining} not done -> {out_dir}; every file there is complete, "
                "run the same command again to finish"
            )
        return f"{counts} -> {out_dir}"


# --------------------------------------------------------------------------------------- plans


def plan_files(inputs: Sequence[str | os.PathLike], out_dir: str | os.PathLike, suffix: str) -> list[BatchItem]:
    """Files and folders (searched recursively, structure mirrored) -> items with distinct outputs."""
    from scenimefy.data.images import image_files

    out_dir = Path(out_dir)
    pairs: list[tuple[Path, Path]] = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            pairs += [(p, p.relative_to(path)) for p in image_files(path)]
        else:
            pairs.append((path, Path(path.name)))
    taken: set[Path] = set()
    items = []
    for src, rel in pairs:
        target = out_dir / rel.with_suffix(suffix)
        n = 1
        while target in taken:  # photo.jpg and photo.png in one run must not overwrite each other
            target = out_dir / rel.with_name(f"{rel.stem}_{n}{suffix}")
            n += 1
        taken.add(target)
        items.append(BatchItem(output=target, source=src))
    return items


def plan_dataset(rows: int, out_dir: str | os.PathLike, suffix: str) -> list[BatchItem]:
    """Rows 0..rows-1 of a dataset -> ``out_dir/<row number, zero-padded><suffix>``."""
    width = max(5, len(str(max(rows - 1, 0))))
    return [BatchItem(output=Path(out_dir) / f"{i:0{width}d}{suffix}", index=i) for i in range(rows)]


def image_column(dataset, requested: str | None = None) -> str:
    """``requested``, else the dataset's first ``datasets.Image`` column, else "image"."""
    if requested:
        if requested not in dataset.column_names:
            raise ValueError(f"the dataset has no column {requested!r}; its columns: {dataset.column_names}")
        return requested
    from datasets import Image as ImageFeature

    for name, feature in dataset.features.items():
        if isinstance(feature, ImageFeature):
            return name
    if "image" in dataset.column_names:
        return "image"
    raise ValueError(f"the dataset has no image column; its columns: {dataset.column_names} (use --image-column)")


def pending(items: Sequence[BatchItem], overwrite: bool = False) -> tuple[list[BatchItem], int]:
    """(items still to do, count already complete). A complete output is skipped unless ``overwrite``."""
    if overwrite:
        return list(items), 0
    todo = [item for item in items if not image_is_complete(item.output)]
    return todo, len(items) - len(todo)


# --------------------------------------------------------------------------------------- signals


@contextmanager
def stop_on_signals(signals: Sequence[int] = (signal.SIGINT, signal.SIGTERM)) -> Iterator[None]:
    """Turn ``signals`` into :class:`Interrupted` raised in the main thread while the block runs."""

    def handler(signum, frame):
        raise Interrupted(signum)

    previous = {}
    try:
        for signum in signals:
            previous[signum] = signal.signal(signum, handler)
    except ValueError:  # not the main thread: leave the signals alone
        pass
    try:
        yield
    finally:
        for signum, old in previous.items():
            signal.signal(signum, old)


# --------------------------------------------------------------------------------------- running


def run_batch(
    pipe,
    items: Sequence[BatchItem],
    *,
    dataset=None,
    column: str = "image",
    mode: str = "default",
    max_side: int | None = None,
    progress: bool = True,
    desc: str = "stylize",
    log: Callable[[str], None] | None = None,
) -> BatchReport:
    """Stylize ``items`` in order (images from their files, or rows of ``dataset[column]``).

    A bad input is recorded and skipped; a full disk stops the run (every next write would fail
    too); SIGINT / SIGTERM stop it (``Interrupted`` is caught and recorded). Every output is
    written atomically.
    """
    from tqdm.auto import tqdm

    from scenimefy.data.images import InvalidImageError, load_image

    write = log or (lambda line: tqdm.write(line, file=sys.stderr))
    report = BatchReport()
    bar = tqdm(total=len(items), desc=desc, unit="img", disable=not progress)
    try:
        for item in items:
            try:
                with warnings.catch_warnings(record=True) as caught:
                    warnings.simplefilter("always")
                    image = load_image(item.source if item.source is not None else dataset[item.index][column])
                for w in caught:
                    write(f"warning: {w.message}")
                out = pipe.stylize_loaded([image], mode=mode, max_side=max_side)[0]
                for stale in stale_partials(item.output):  # left by a run that was killed outright
                    stale.unlink(missing_ok=True)
                save_image(out, item.output)
                report.done += 1
            except DiskFullError:
                raise
            except InvalidImageError as err:
                report.failed.append((item.label, str(err)))
                write(f"skipped: {err}")
            except Exception as err:  # one bad input must not stop the batch
                reason = f"{type(err).__name__}: {err}"
                report.failed.append((item.label, reason))
                write(f"failed: {item.label}: {reason}")
            bar.update(1)
    except Interrupted as stop:
        report.interrupted = stop.signal
    except DiskFullError as err:
        report.error = str(err)
    finally:
        report.remaining = len(items) - report.done - len(report.failed)
        bar.close()
    return report


def distributed_state():
    """accelerate's ``PartialState`` when several processes were launched, else None (no import)."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return None
    from accelerate import PartialState
    from accelerate.utils import parse_flag_from_env

    # PartialState does not read ACCELERATE_USE_CPU itself (AcceleratorState does): CPU processes need it.
    return PartialState(cpu=parse_flag_from_env("ACCELERATE_USE_CPU"))


def gather_reports(state, report: BatchReport) -> BatchReport:
    """One report of all processes (on every process); ``state`` None: this process alone."""
    if state is None:
        return BatchReport.merge([report])
    from accelerate.utils import gather_object

    return BatchReport.merge(gather_object([report]))
