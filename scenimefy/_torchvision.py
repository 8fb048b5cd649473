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
"""

from __future__ import annotations

import importlib.util
import os
import sys

import torch

_LIBRARY: torch.library.Library | None = None  # kept alive: dropping it would drop the schemas


def ensure_torchvision_importable() -> None:
    global _LIBRARY
    if "torchvision" in sys.modules or _LIBRARY is not None:
        return
    spec = importlib.util.find_spec("torchvision")
    if spec is None or not spec.submodule_search_locations:
        return
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


ensure_torchvision_importable()
