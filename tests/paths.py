"""Where the read-only shared material lives (never copied into the repo)."""

from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
PARITY = SHARED / "parity"
SAMPLES = SHARED / "samples"
DATA = SHARED / "data"
