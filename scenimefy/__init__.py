"""Scenimefy: real photos and videos to anime scenes (Jiang et al., ICCV 2023).

Where things live (each subpackage's ``__init__`` says more):

- ``inference``: the pipeline, the fast translate path, tiling, video, stabilisation, adjustments
- ``hub``: downloads, the style registry, converters of the authors' checkpoints, publishing, cards
- ``training``: configs, checkpoints and tracking shared by the stages; one module per stage
- ``evaluation``: FID/KID and L_BCE
- ``models``, ``losses``, ``data``: networks, the paper's losses, images and datasets
- ``cli``: the ``scenimefy`` command

Public names are imported on first use, so ``import scenimefy`` (and the CLI's start-up) never
loads torch; the torchvision fix is an import hook that runs when torchvision is first imported.
"""

from importlib import import_module
from typing import TYPE_CHECKING

from scenimefy import _torchvision
from scenimefy._version import __version__

_torchvision.install_import_hook()

_EXPORTS = {
    "ScenimefyLiteTranslator": "scenimefy.models.lite",
    "ScenimefyPipeline": "scenimefy.inference.pipeline",
    "ScenimefyTranslator": "scenimefy.models.translator",
    "Style": "scenimefy.hub.styles",
    "register_style": "scenimefy.hub.styles",
}

__all__ = [
    "ScenimefyLiteTranslator",
    "ScenimefyPipeline",
    "ScenimefyTranslator",
    "Style",
    "__version__",
    "register_style",
]

if TYPE_CHECKING:
    from scenimefy.hub.styles import Style, register_style
    from scenimefy.inference.pipeline import ScenimefyPipeline
    from scenimefy.models.lite import ScenimefyLiteTranslator
    from scenimefy.models.translator import ScenimefyTranslator


def __getattr__(name: str):
    if name in _EXPORTS:
        value = getattr(import_module(_EXPORTS[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'scenimefy' has no attribute {name!r}")
