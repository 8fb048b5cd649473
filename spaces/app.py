"""Hugging Face Space entry point: the toolkit's web app (``app.py``) with Space defaults.

In the published Space the repository's ``app.py`` (the thin entry of ``scenimefy.webapp``) sits
next to this file as ``scenimefy_app.py`` and the ``scenimefy`` package beside it (``spaces/sync.py`` assembles
both); in a checkout the repository's ``app.py`` one folder up is used, so
``python spaces/app.py`` runs exactly what the Space runs.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path
from types import ModuleType

HERE = Path(__file__).resolve().parent


def load_webapp() -> ModuleType:
    """The web app module: the bundled copy in a Space, the repository's app.py in a checkout."""
    for candidate in (HERE / "scenimefy_app.py", HERE.parent / "app.py"):
        if candidate.is_file():
            spec = importlib.util.spec_from_file_location("scenimefy_app", candidate)
            module = importlib.util.module_from_spec(spec)
            sys.modules["scenimefy_app"] = module
            spec.loader.exec_module(module)
            return module
    raise FileNotFoundError("scenimefy_app.py (Space bundle) or ../app.py (checkout) not found; run spaces/sync.py")


def space_args(cuda: bool) -> list[str]:
    """Space defaults; command-line arguments given to this script override them."""
    args = [
        "--host",
        os.environ.get("GRADIO_SERVER_NAME", "0.0.0.0"),  # Spaces route to all interfaces
        "--port",
        os.environ.get("GRADIO_SERVER_PORT", "7860"),
        "--device",
        "cuda" if cuda else "cpu",
        "--max-queue",
        "24",
    ]
    if not cuda:  # free CPU hardware: keep a request to tens of seconds, the live view to several frames a second
        args += ["--max-side", "768", "--video-max-side", "384", "--video-seconds", "4", "--live-max-side", "384"]
    if (HERE / "examples").is_dir():
        args += ["--examples", str(HERE / "examples")]
    return args


def zero_gpu() -> bool:
    """ZeroGPU hardware: a GPU only inside ``spaces.GPU`` functions (the web app's jobs, see
    ``scenimefy.webapp.context.on_gpu``); ``spaces`` must be imported before torch touches CUDA."""
    if os.environ.get("SPACES_ZERO_GPU", "").strip().lower() not in ("1", "true", "yes"):
        return False
    spec = importlib.util.find_spec("spaces")  # the package, not a folder named spaces/ (a namespace)
    return spec is not None and spec.origin not in (None, "namespace")


def main(argv: list[str] | None = None) -> None:
    on_zero_gpu = zero_gpu()
    if on_zero_gpu:
        import spaces  # noqa: F401  (before torch)
    webapp = load_webapp()
    import torch

    cuda = on_zero_gpu or torch.cuda.is_available()
    webapp.main(space_args(cuda) + list(sys.argv[1:] if argv is None else argv))


if __name__ == "__main__":
    main()
