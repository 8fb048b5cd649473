"""Import a ``train/`` script as a module, to call its ``main(argv)`` or helpers in-process."""

from __future__ import annotations

import importlib.util
import sys
from types import ModuleType

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
