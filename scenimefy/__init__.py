"""Scenimefy: real photos and videos to anime scenes (Jiang et al., ICCV 2023)."""

from . import _torchvision  # noqa: F401  (must run before anything imports torchvision)
from ._version import __version__
from .models import ScenimefyTranslator

__all__ = ["ScenimefyTranslator", "__version__"]
