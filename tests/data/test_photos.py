"""The real-photo loader: image folders and datasets folders, as a datasets.Dataset."""

import numpy as np
import pytest
from PIL import Image

from scenimefy.cli import main
from scenimefy.data.photos import export_photos, iter_photos, load_photos
from scenimefy.data.sources import DataSourceError


@pytest.fixture
def folder(tmp_path, monkeypatch):
    import datasets

    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "hf-datasets")  # not the user's cache
    root = tmp_path / "lhq"
    (root / "sub").mkdir(parents=True)
    for i, size in enumerate([(32, 24), (20, 20), (16, 40)]):
        rgb = np.full((size[1], size[0], 3), 40 * i, np.uint8)
        Image.fromarray(rgb).save(root / ("sub" if i == 2 else ".") / f"{i}.png")
    return root


def test_image_folder_loads_as_a_dataset(folder, tmp_path):
    ds = load_photos(folder, cache_dir=str(tmp_path / "cache"))
    assert len(ds) == 3 and "image" in ds.column_names
    sizes = sorted(image.size for image in iter_photos(ds))
    assert sizes == [(16, 40), (20, 20), (32, 24)]
    assert len(list(iter_photos(ds, limit=2))) == 2


def test_saved_dataset_with_another_image_column(folder, tmp_path):
    import datasets

    photos = datasets.Dataset.from_dict({"photo": [Image.open(p) for p in sorted(folder.rglob("*.png"))]})
    photos = photos.cast_column("photo", datasets.Image())
    photos.save_to_disk(tmp_path / "saved")
    ds = load_photos(tmp_path / "saved")
    assert "image" in ds.column_names and len(ds) == 3


def test_export_and_errors(folder, tmp_path, capsys):
    assert main(["dataset", "photos", str(folder), "-o", str(tmp_path / "out"), "--limit", "2"]) == 0
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["000000.jpg", "000001.jpg"]
    assert export_photos(folder, tmp_path / "out") == 3  # resumes: the two existing files are kept
    with pytest.raises(DataSourceError):
        load_photos(tmp_path / "missing-folder")
