"""Where training images come from: a folder of image files, or a Hugging Face ``datasets`` dataset.

A ``datasets`` source is a Hub id (read from the local cache when ``HF_HUB_OFFLINE=1``), a folder
written by ``Dataset.save_to_disk``, or a folder of parquet/arrow files that
``datasets.load_dataset(folder)`` reads (e.g. ``data/train-*.parquet``). A folder holding none of
those files is read as plain images (recursively; the suffixes of ``scenimefy.data.images``).
"""

from __future__ import annotations

import os
from pathlib import Path

from scenimefy.data.images import IMAGE_SUFFIXES, image_files

_DATASET_FILES = ("*.parquet", "*.arrow", "dataset_info.json", "dataset_dict.json", "state.json")


class DataSourceError(ValueError):
    """A training data source that cannot be read."""


def find_images(root: str | os.PathLike) -> list[Path]:
    """Image files under ``root`` (recursive), sorted for a stable order."""
    root = Path(root)
    if not root.is_dir():
        raise DataSourceError(f"image folder not found: {root}")
    files = image_files(root)
    if not files:
        raise DataSourceError(f"no images ({', '.join(sorted(IMAGE_SUFFIXES))}) found under {root}")
    return files


def is_datasets_folder(path: str | os.PathLike) -> bool:
    """True for a local folder that holds a ``datasets`` dataset rather than plain image files."""
    path = Path(path)
    return path.is_dir() and any(next(path.rglob(pattern), None) is not None for pattern in _DATASET_FILES)


def load_hf_dataset(source: str | os.PathLike, split: str = "train"):
    """A ``datasets.Dataset`` from a Hub id, a ``save_to_disk`` folder or a parquet/arrow folder."""
    import datasets

    path = Path(source)
    if (path.is_absolute() or str(source).startswith((".", "~"))) and not path.exists():
        raise DataSourceError(f"dataset folder not found: {path}")
    try:
        if (path / "dataset_dict.json").is_file() or (path / "state.json").is_file():
            loaded = datasets.load_from_disk(str(path))
            return loaded[split] if isinstance(loaded, datasets.DatasetDict) else loaded
        return datasets.load_dataset(str(source), split=split)
    except (FileNotFoundError, ValueError, ConnectionError, KeyError) as err:
        hint = (
            " (HF_HUB_OFFLINE is set: only datasets already in the local cache can be used)"
            if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes")
            else ""
        )
        raise DataSourceError(f"could not load dataset {str(source)!r} split {split!r}{hint}: {err}") from None


def require_columns(dataset, columns: tuple[str, ...], source: str | os.PathLike) -> None:
    missing = [c for c in columns if c not in dataset.column_names]
    if missing:
        raise DataSourceError(
            f"dataset {str(source)!r} has no column(s) {missing}; its columns: {dataset.column_names}"
        )
