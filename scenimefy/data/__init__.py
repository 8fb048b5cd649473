"""Training data of the translator: unpaired real/anime images and stage-2 pseudo pairs."""

from scenimefy.data.datasets import ImageDataset, PairedDataset, UnpairedDataset
from scenimefy.data.sources import DataSourceError, find_images, is_datasets_folder, load_hf_dataset
from scenimefy.data.transforms import crop_image, crop_pair, to_pil, to_tensor

__all__ = [
    "DataSourceError",
    "ImageDataset",
    "PairedDataset",
    "UnpairedDataset",
    "crop_image",
    "crop_pair",
    "find_images",
    "is_datasets_folder",
    "load_hf_dataset",
    "to_pil",
    "to_tensor",
]
