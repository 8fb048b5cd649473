"""Make ``import torchvision`` work on a CPU-only torch.

The only torchvision wheel that matches torch 2.13.0 on PyPI (0.28.0) is a CUDA build. On the CPU
torch wheel its compiled extension ``torchvision/_C.so`` cannot load, so no ``torchvision::*`` op is
registered, and ``import torchvision`` dies in ``_meta_registrations`` with
``operator torchvision::nms does not exist``. lpips, open_clip and transformers' Mask2Former
image processor all import torchvision, so this must run before any of them.

When the extension loads (matching CUDA torch, or a CPU torchvision build) nothing is changed.
Otherwise the ``nms``/``qnms`` schemas are defined without kernels: the import succeeds, and
torchvision's compiled ops (nms, roi_align, image IO) stay unavailable. This project uses Pillow
and PyAV for IO and never calls them.

``import scenimefy`` installs an import hook that runs the fix when torchvision is first imported
(so ``import scenimefy`` itself never imports torch). Programs that import torchvision before any
of our code (``accelerate launch`` imports timm, which imports torchvision) need it earlier:
``python -c "import scenimefy._torchvision as t; t.install_startup_hook()"`` (``make`` does this) writes a ``.pth`` file
into site-packages holding a tiny import hook that runs the fix the first time anything imports
torchvision. It costs nothing at start-up: torch is imported only when torchvision is.
"""

from __future__ import annotations

import importlib.util
import os
import sys
import sysconfig
from pathlib import Path

_LIBRARY = None  # the torch.library.Library kept alive: dropping it would drop the schemas


def ensure_torchvision_importable() -> None:
    global _LIBRARY
    if "torchvision" in sys.modules or _LIBRARY is not None:
        return
    _unhook()
    spec = importlib.util.find_spec("torchvision")
    if spec is None or not spec.submodule_search_locations:
        return
    import torch

    if hasattr(torch.ops.torchvision, "nms"):
        return
    extension = os.path.join(list(spec.submodule_search_locations)[0], "_C.so")
    if os.path.exists(extension):
        try:
            torch.ops.load_library(extension)
            return
        except OSError:
            pass
    _LIBRARY = torch.library.Library("torchvision", "DEF")
    _LIBRARY.define("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    _LIBRARY.define("qnms(Tensor qdets, Tensor scores, float iou_threshold) -> Tensor")


HOOK_FILE = "scenimefy-torchvision-shim.pth"

# site.py executes .pth lines that start with "import"; this one installs a meta-path finder that
# steps aside (removes itself) and runs the fix when "torchvision" is first imported.
_HOOK_LINE = (
    'import sys; exec("class _ScenimefyTorchvisionHook:\\n'
    " def find_spec(self, name, path=None, target=None):\\n"
    "  if name == 'torchvision':\\n"
    "   sys.meta_path.remove(self)\\n"
    "   try:\\n"
    "    from scenimefy._torchvision import ensure_torchvision_importable; ensure_torchvision_importable()\\n"
    "   except ImportError:\\n"
    "    pass\\n"
    "  return None\\n"
    'sys.meta_path.insert(0, _ScenimefyTorchvisionHook())")\n'
)


def install_startup_hook(site_packages: str | os.PathLike | None = None) -> Path:
    """Write the start-up hook into ``site_packages`` (default: this interpreter's purelib)."""
    target = Path(site_packages or sysconfig.get_paths()["purelib"]) / HOOK_FILE
    target.write_text(_HOOK_LINE)
    return target


class _ImportHook:
    """A meta-path finder that runs the fix just before torchvision is first imported."""

    def find_spec(self, name, path=None, target=None):
        if name == "torchvision":
            ensure_torchvision_importable()
        return None


def _unhook() -> None:
    sys.meta_path[:] = [finder for finder in sys.meta_path if not isinstance(finder, _ImportHook)]


def install_import_hook() -> None:
    """Run the fix when this process first imports torchvision (at once if torch is loaded)."""
    if "torchvision" in sys.modules or _LIBRARY is not None:
        return
    if not any(isinstance(finder, _ImportHook) for finder in sys.meta_path):
        sys.meta_path.insert(0, _ImportHook())
