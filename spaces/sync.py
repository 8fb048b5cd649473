"""Assemble the Hugging Face Space from the repository: ``python spaces/sync.py OUT [--examples DIR]``.

OUT receives README.md, requirements.txt and app.py from spaces/, the repository's app.py as
scenimefy_app.py and the scenimefy package (sources only), so the Space runs the very code of
this checkout. Nothing is copied into the repository itself. Publish with
``hf upload <user>/<space> OUT . --repo-type space``.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

SPACE = Path(__file__).resolve().parent
REPO = SPACE.parent
BUNDLE_FILES = ("README.md", "requirements.txt", "app.py")
EXAMPLE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".mp4", ".mov", ".webm"}


def sync(out: Path, examples: Path | None = None) -> list[Path]:
    """Write the Space bundle to ``out`` (replacing what was there); returns the files written."""
    target = out.resolve()
    if target in (REPO, SPACE, *REPO.parents) or REPO / "scenimefy" in (target, *target.parents):
        raise ValueError(f"{out}: choose a new folder outside the package and the repository root")
    if target.exists() and any(target.iterdir()):
        if not (target / "scenimefy_app.py").is_file():  # only ever replace an earlier bundle
            raise ValueError(f"{out}: exists and is not a Space bundle; choose an empty or new folder")
        shutil.rmtree(target)
    out.mkdir(parents=True, exist_ok=True)
    for name in BUNDLE_FILES:
        shutil.copy2(SPACE / name, out / name)
    shutil.copy2(REPO / "app.py", out / "scenimefy_app.py")
    shutil.copytree(REPO / "scenimefy", out / "scenimefy", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    if examples is not None:
        (out / "examples").mkdir()
        for item in sorted(examples.iterdir()):
            if item.suffix.lower() in EXAMPLE_SUFFIXES:
                shutil.copy2(item, out / "examples" / item.name)
    return sorted(p for p in out.rglob("*") if p.is_file())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="output folder (replaced)")
    parser.add_argument(
        "--examples",
        type=Path,
        default=None,
        help="photos / clips to show as examples (you must be allowed to publish them)",
    )
    args = parser.parse_args()
    files = sync(args.out, args.examples)
    print(f"Space bundle: {len(files)} files in {args.out}")


if __name__ == "__main__":
    main()
