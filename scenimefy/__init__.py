"""Scenimefy: real photos and videos to anime scenes (Jiang et al., ICCV 2023).

Public names are imported on first use, so ``import scenimefy`` (and the CLI's start-up) stays
cheap; the torchvision shim is installed eagerly because it must precede any torchvision import.
"""

from importlib import import_module
from typing import TYPE_CHECKING

from . import _torchvision  # noqa: F401  (must run before anything imports torchvision)
from ._version import __version__

_EXPORTS = {
    "ScenimefyPipeline": "scenimefy.pipeline",
    "ScenimefyTranslator": "scenimefy.models.translator",
    "Style": "scenimefy.styles",
    "register_style": "scenimefy.styles",
}

__all__ = [*_EXPORTS, "__version__"]

if TYPE_CHECKING:
    from .models.translator import ScenimefyTranslator
    from .pipeline import ScenimefyPipeline
    from .styles import Style, register_style


def __getattr__(name: str):
    if name in _EXPORTS:
        value = getattr(import_module(_EXPORTS[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'scenimefy' has no attribute {name!r}")
