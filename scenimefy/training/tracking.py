"""A dependency-free accelerate tracker: metrics as JSON lines in the run's logging directory.

accelerate's built-in trackers (TensorBoard, W&B, ...) need their own packages; this one works
everywhere, so every training run leaves a machine-readable log (``<logging_dir>/<run>/metrics.jsonl``:
one ``{"step": ..., "<name>": value, ...}`` object per ``accelerator.log`` call, plus
``config.json`` with the run's settings).
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


def read_metrics(path: str | os.PathLike) -> list[dict[str, Any]]:
    """The rows a :class:`JSONLTracker` wrote."""
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]
