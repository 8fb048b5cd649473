"""The real-photo side: LHQ (or any landscape photos) as a ``datasets`` dataset or image files.

The paper trains on 90,000 LHQ landscapes (Skorokhodov et al., "Aligning Latent and Image Spaces
to Connect the Unconnectable", ICCV 2021; distributed by its authors, with copies on the Hub) and
tests on 6,656 CycleGAN scene photos. Pass whichever copy you have:

    photos = load_photos("path/to/lhq_1024")           # a folder of images (recursive)
    photos = load_photos("<owner>/<lhq copy>", streaming=True)   # a Hub dataset, streamed
    for image in iter_photos(photos, limit=100): ...   # PIL RGB images
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

from PIL import Image

from scenimefy.data.sources import DataSourceError, is_datasets_folder, load_hf_dataset


def _image_column(dataset) -> str:
    from datasets import Image as ImageFeature

    features = dataset.features or {}
    for name, feature in features.items():
        if isinstance(feature, ImageFeature):
            return name
    if "image" in (dataset.column_names or []):
        return "image"
    raise DataSourceError(f"the dataset has no image column (columns: {dataset.column_names})")


def load_photos(
    source: str | os.PathLike, *, split: str = "train", streaming: bool = False, cache_dir: str | None = None
):
    """A ``datasets.Dataset`` (``IterableDataset`` when streaming) with an ``image`` column.

    ``source``: a folder of image files, a ``datasets`` folder, or a Hub dataset id (read from the
    local cache when ``HF_HUB_OFFLINE=1``).
    """
    import datasets

    path = Path(source).expanduser()
    if path.is_dir() and not is_datasets_folder(path):
        try:
            dataset = datasets.load_dataset(
                "imagefolder", data_dir=str(path), split="train", streaming=streaming, cache_dir=cache_dir
            )
        except (FileNotFoundError, ValueError) as err:
            raise DataSourceError(f"{path}: no images datasets' imagefolder can read ({err})") from None
    elif streaming and not path.exists():
        try:
            dataset = datasets.load_dataset(str(source), split=split, streaming=True, cache_dir=cache_dir)
        except (FileNotFoundError, ValueError, ConnectionError) as err:
            raise DataSourceError(f"could not stream dataset {str(source)!r} split {split!r}: {err}") from None
    else:
        dataset = load_hf_dataset(source, split=split)
    column = _image_column(dataset)
    return dataset if column == "image" else dataset.rename_column(column, "image")


def iter_photos(dataset, *, limit: int | None = None) -> Iterator[Image.Image]:
    """RGB PIL images of a dataset from :func:`load_photos` (the first ``limit`` if given)."""
    for i, row in enumerate(dataset):
        if limit is not None and i >= limit:
            return
        yield row["image"].convert("RGB")


def export_photos(
    source: str | os.PathLike,
    out: str | os.PathLike,
    *,
    split: str = "train",
    limit: int | None = None,
    image_format: str = "jpg",
) -> int:
    """Write the photos of ``source`` as ``out/000000.jpg`` ... (for tools that take folders);
    returns how many. Existing files are kept, so an interrupted export resumes."""
    from tqdm.auto import tqdm

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    dataset = load_photos(source, split=split, streaming=not Path(source).exists())
    count = 0
    for i, image in enumerate(tqdm(iter_photos(dataset, limit=limit), total=limit, desc="photos", unit="img")):
        target = out / f"{i:06d}.{image_format}"
        if not target.is_file():
            tmp = target.with_name(target.name + ".part")
            image.save(
                tmp,
                format="JPEG" if image_format == "jpg" else image_format.upper(),
                **({"quality": 95} if image_format == "jpg" else {}),
            )
            os.replace(tmp, target)
        count += 1
    return count
