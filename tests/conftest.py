import os

# Before anything can import gradio or huggingface_hub: tests never reach the network.
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# Per-layer kernel choice: tests (and the servers and CLIs they start) take the fixed rule, so two
# processes of one test always run the same kernels (timed trials could differ by fp32 rounding
# between them); tests/inference/test_kernels.py runs the timed trials, with their disk cache kept
# out of the user's ~/.cache.
os.environ.setdefault("SCENIMEFY_CONV_KERNELS", "heuristic")
if "SCENIMEFY_CACHE_DIR" not in os.environ:
    import tempfile

    os.environ["SCENIMEFY_CACHE_DIR"] = tempfile.mkdtemp(prefix="scenimefy-test-cache-")

# One thread per core and worker: with two pytest workers on two cores, two torch threads each
# spin-wait on each other's cores, and a small op waits for a preempted thread (a 1 s video test
# took 40 s beside the other worker's large run). Servers and CLIs the tests start inherit it.
os.environ.setdefault(
    "OMP_NUM_THREADS",
    str(min(2, max(1, (os.cpu_count() or 1) // int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))))),
)

from pathlib import Path

import pytest
import torch

import scenimefy  # noqa: F401  (installs the torchvision shim first)
from tests.support.paths import PARITY, SHARED

torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))


@pytest.fixture(scope="session")
def shared() -> Path:
    if not SHARED.is_dir():
        pytest.fail(
            f"{SHARED} is missing: the tests read the shared parity vectors and samples from there "
            "(set SCENIMEFY_SHARED to its path)"
        )
    return SHARED


@pytest.fixture(scope="session")
def reference_translator():
    """The converted parity checkpoint (reference layout, seeded random weights, full size)."""
    from scenimefy.hub.convert import load_reference_translator

    return load_reference_translator(PARITY / "net_G.pth")
