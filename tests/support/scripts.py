"""Import a ``train/`` script as a module, to call its ``main(argv)`` or helpers in-process; run it
on one torch thread; load the dataset it writes."""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType

import torch

from tests.support.paths import REPO


def load_script(name: str) -> ModuleType:
    """``train/<name>.py`` as the module ``train_script_<name>`` (loaded once per test session)."""
    module_name = f"train_script_{name}"
    if module_name in sys.modules:
        return sys.modules[module_name]
    spec = importlib.util.spec_from_file_location(module_name, REPO / "train" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module  # dataclasses resolve the config's annotations through it
    spec.loader.exec_module(module)
    return module


def run_in_process(script: ModuleType, argv: list[str]) -> int:
    """``script.main(argv)``, leaving no accelerate singleton behind for other tests."""
    from accelerate.state import AcceleratorState

    try:
        return script.main(argv)
    finally:
        AcceleratorState._reset_state(reset_partial_state=True)


def load_pairs(out: Path, tmp_path: Path):
    """The dataset a pairs stage wrote, through ``datasets.load_dataset`` (its cache under ``tmp_path``)."""
    from datasets import load_dataset

    return load_dataset(str(out), split="train", cache_dir=str(tmp_path / "hf-cache"))


@contextmanager
def one_torch_thread() -> Iterator[None]:
    """One thread for in-process training: on a shared 2-core machine OpenMP spin-waits make 2
    threads far slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)
