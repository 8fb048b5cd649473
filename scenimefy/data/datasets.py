"""Datasets of single images (the unpaired branch) and of (real, anime) pseudo pairs (supervised branch)."""

from __future__ import annotations

import os
from pathlib import Path

import torch
from PIL import Image
from torch.utils.data import Dataset

from scenimefy.data.images import open_image, upright_rgb
from scenimefy.data.sources import DataSourceError, find_images, is_datasets_folder, load_hf_dataset, require_columns
from scenimefy.data.transforms import check_sizes, crop_image, crop_pair


class ImageDataset(Dataset):
    """Images of one domain -> (3, crop_size, crop_size) tensors in [-1, 1].

    Args:
        source: an image folder, a ``datasets`` folder or a Hub dataset id (see ``sources``).
        load_size / crop_size: resize the shorter side to ``load_size``, then crop a square.
        random_crop: random crop and flip (training) or centre crop (evaluation, sample grids).
        image_column / split: which column and split of a ``datasets`` source hold the images.
    """

    def __init__(
        self,
        source: str | os.PathLike,
        load_size: int = 256,
        crop_size: int = 256,
        random_crop: bool = True,
        flip: bool = True,
        image_column: str = "image",
        split: str = "train",
    ) -> None:
        check_sizes(load_size, crop_size)
        self.load_size, self.crop_size = load_size, crop_size
        self.random_crop, self.flip = random_crop, flip
        self.files: list[Path] | None = None
        self.table = None
        self.image_column = image_column
        path = Path(source)
        if path.is_dir() and not is_datasets_folder(path):
            self.files = find_images(path)
        elif path.exists() and not path.is_dir():
            raise DataSourceError(f"{path} is a file; give a folder of images or a dataset")
        else:
            self.table = load_hf_dataset(source, split)
            require_columns(self.table, (image_column,), source)
            if len(self.table) == 0:
                raise DataSourceError(f"dataset {str(source)!r} split {split!r} is empty")

    def __len__(self) -> int:
        return len(self.files) if self.files is not None else len(self.table)

    def load_image(self, index: int) -> Image.Image:
        """The original RGB image ``index`` (no resize or crop)."""
        if self.files is not None:
            with open_image(self.files[index]) as image:
                return upright_rgb(image)
        return upright_rgb(self.table[index][self.image_column])

    def __getitem__(self, index: int) -> torch.Tensor:
        return crop_image(self.load_image(index), self.load_size, self.crop_size, self.random_crop, self.flip)


class UnpairedDataset(Dataset):
    """Real photos and anime images, unaligned: item i is real[i % R] with a random anime image.

    An epoch covers the larger domain once, as the reference's unaligned dataset does.
    """

    def __init__(self, real: Dataset, anime: Dataset) -> None:
        self.real, self.anime = real, anime

    def __len__(self) -> int:
        return max(len(self.real), len(self.anime))

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        anime_index = int(torch.randint(0, len(self.anime), ()).item())
        return {"real": self.real[index % len(self.real)], "anime": self.anime[anime_index]}


class PairedDataset(Dataset):
    """Pseudo pairs (x_p, y_p) from stage 2: a ``datasets`` dataset with ``real`` and ``anime`` image columns.

    Both images of a pair get the same crop and flip. Other columns (``seed``, ``lbce``,
    ``classes``) are ignored here.
    """

    def __init__(
        self,
        source: str | os.PathLike,
        load_size: int = 256,
        crop_size: int = 256,
        random_crop: bool = True,
        flip: bool = True,
        real_column: str = "real",
        anime_column: str = "anime",
        split: str = "train",
    ) -> None:
        check_sizes(load_size, crop_size)
        self.load_size, self.crop_size = load_size, crop_size
        self.random_crop, self.flip = random_crop, flip
        self.real_column, self.anime_column = real_column, anime_column
        if Path(source).is_dir() and not is_datasets_folder(source):
            raise DataSourceError(
                f"{source} holds no dataset files: the paired data is the stage-2 output folder "
                f"(parquet shards with '{real_column}' and '{anime_column}' image columns)"
            )
        self.table = load_hf_dataset(source, split)
        require_columns(self.table, (real_column, anime_column), source)
        if len(self.table) == 0:
            raise DataSourceError(f"paired dataset {str(source)!r} split {split!r} is empty")

    def __len__(self) -> int:
        return len(self.table)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        row = self.table[index]
        real, anime = crop_pair(
            row[self.real_column], row[self.anime_column], self.load_size, self.crop_size, self.random_crop, self.flip
        )
        return {"real": real, "anime": anime}
