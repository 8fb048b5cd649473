"""A dependency-free accelerate tracker: metrics as JSON lines in the run's logging directory.

accelerate's built-in trackers (TensorBoard, W&B, ...) need their own packages; this one works
everywhere, so every training run leaves a machine-readable log (``<logging_dir>/<run>/metrics.jsonl``:
one ``{"step": ..., "<name>": value, ...}`` object per ``accelerator.log`` call, plus
``config.json`` with the run's settings). A resumed run first drops the rows past the step it
resumes from (:meth:`JSONLTracker.truncate_after`), so the log never holds a step twice.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from accelerate.tracking import GeneralTracker, on_main_process


class JSONLTracker(GeneralTracker):
    name = "jsonl"
    requires_logging_directory = True
    main_process_only = True

    def __init__(self, run_name: str, logging_dir: str | os.PathLike) -> None:
        super().__init__()
        self.run_dir = Path(logging_dir) / run_name
        self.metrics_path = self.run_dir / "metrics.jsonl"

    @property
    def tracker(self) -> Path:
        return self.metrics_path

    @on_main_process
    def store_init_configuration(self, values: dict[str, Any]) -> None:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        (self.run_dir / "config.json").write_text(json.dumps(values, indent=2, default=str))

    @on_main_process
    def log(self, values: dict[str, Any], step: int | None = None, **kwargs: Any) -> None:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        row = {"step": step, **{k: v for k, v in values.items() if isinstance(v, (int, float, str, bool))}}
        with self.metrics_path.open("a") as f:
            f.write(json.dumps(row) + "\n")

    @on_main_process
    def truncate_after(self, step: int) -> None:
        """Drop the rows of steps after ``step`` (logged by a run that stopped before its next checkpoint)."""
        if not self.metrics_path.is_file():
            return
        rows = [line for line in self.metrics_path.read_text().splitlines() if line.strip()]
        kept = [line for line in rows if (json.loads(line).get("step") or 0) <= step]
        if len(kept) != len(rows):
            tmp = self.metrics_path.with_name(self.metrics_path.name + ".tmp")
            tmp.write_text("".join(line + "\n" for line in kept))
            os.replace(tmp, self.metrics_path)


def make_trackers(report_to: str, logging_dir: str | os.PathLike, project: str) -> list:
    """accelerate ``log_with`` from a comma list: "jsonl" (always available), installed tracker
    names ("tensorboard", "wandb", ...), "all", or "none"."""
    trackers = []
    for name in (n.strip() for n in report_to.split(",")):
        if name and name != "none":
            trackers.append(JSONLTracker(project, logging_dir) if name == "jsonl" else name)
    return trackers


def read_metrics(path: str | os.PathLike) -> list[dict[str, Any]]:
    """The rows a :class:`JSONLTracker` wrote."""
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]
