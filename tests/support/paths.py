"""Where the read-only shared material lives (never copied into the repo)."""

import os
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def find_shared() -> Path:
    """``../shared`` beside the checkout, as in CI; ``SCENIMEFY_SHARED`` overrides it.

    A clone of a local checkout made elsewhere (``git clone . /tmp/fresh``) has no ``../shared``
    of its own: it uses the one beside the checkout it was cloned from.
    """
    if os.environ.get("SCENIMEFY_SHARED"):
        return Path(os.environ["SCENIMEFY_SHARED"])
    beside = REPO.parent / "shared"
    if beside.is_dir():
        return beside
    try:
        origin = subprocess.run(
            ["git", "-C", str(REPO), "config", "--get", "remote.origin.url"],
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        origin = ""
    if origin and "://" not in origin and Path(origin).is_dir():
        candidate = Path(origin).resolve().parent / "shared"
        if candidate.is_dir():
            return candidate
    return beside  # missing: the `shared` fixture says so


SHARED = find_shared()
PARITY = SHARED / "parity"
SAMPLES = SHARED / "samples"
DATA = SHARED / "data"
