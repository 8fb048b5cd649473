import numpy as np
import pytest
import torch
from PIL import Image

from scenimefy.data import DataSourceError, ImageDataset, PairedDataset, UnpairedDataset, crop_pair, to_pil, to_tensor


def _image(w, h, seed):
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))


@pytest.fixture
def image_folder(tmp_path):
    root = tmp_path / "photos"
    (root / "nested").mkdir(parents=True)
    _image(48, 40, 0).save(root / "a.jpg")
    _image(40, 40, 1).save(root / "nested" / "b.PNG")
    (root / "notes.txt").write_text("not an image")
    return root


def _paired_folder(path, pairs):
    import datasets

    table = datasets.Dataset.from_dict(
        {
            "real": [r for r, _ in pairs],
            "anime": [a for _, a in pairs],
            "seed": list(range(len(pairs))),
            "lbce": [4.3] * len(pairs),
            "classes": [3] * len(pairs),
        }
    )
    table = table.cast_column("real", datasets.Image()).cast_column("anime", datasets.Image())
    (path / "data").mkdir(parents=True)
    table.to_parquet(str(path / "data" / "train-00000-of-00001.parquet"))
    return path


def test_image_folder_is_recursive_and_crops_to_range(image_folder):
    ds = ImageDataset(image_folder, load_size=36, crop_size=32)
    assert len(ds) == 2
    for i in range(2):
        x = ds[i]
        assert x.shape == (3, 32, 32) and x.dtype == torch.float32
        assert x.min() >= -1 and x.max() <= 1


def test_centre_crop_is_deterministic(image_folder):
    ds = ImageDataset(image_folder, 36, 32, random_crop=False)
    torch.testing.assert_close(ds[0], ds[0])


def test_tensor_pil_round_trip():
    image = _image(8, 8, 3)
    assert np.array_equal(np.asarray(to_pil(to_tensor(image))), np.asarray(image))


def test_datasets_source_with_configurable_column(tmp_path):
    import datasets

    table = datasets.Dataset.from_dict({"picture": [_image(32, 32, i) for i in range(3)]}).cast_column(
        "picture", datasets.Image()
    )
    table.to_parquet(str(tmp_path / "hf" / "train.parquet"))
    ds = ImageDataset(tmp_path / "hf", 32, 32, image_column="picture")
    assert len(ds) == 3 and ds[2].shape == (3, 32, 32)
    with pytest.raises(DataSourceError, match="no column"):
        ImageDataset(tmp_path / "hf", 32, 32, image_column="image")
    table.save_to_disk(str(tmp_path / "saved"))
    assert len(ImageDataset(tmp_path / "saved", 32, 32, image_column="picture")) == 3


def test_paired_dataset_gets_one_crop_for_both_images(tmp_path):
    # anime = the inverted real image: with the same crop and flip, anime == -real exactly
    images = [_image(64, 48, i) for i in range(3)]
    pairs = [(im, Image.fromarray(255 - np.asarray(im))) for im in images]
    ds = PairedDataset(_paired_folder(tmp_path / "pairs", pairs), load_size=48, crop_size=32)
    assert len(ds) == 3
    torch.manual_seed(0)
    for _ in range(10):
        item = ds[1]
        assert item["real"].shape == item["anime"].shape == (3, 32, 32)
        torch.testing.assert_close(item["anime"], -item["real"])


def test_paired_anime_of_another_size_is_resized_to_the_real_image(tmp_path):
    # 8-px colour blocks; anime at twice the size. Aligned crops agree except near block edges.
    rng = np.random.default_rng(0)
    blocks = Image.fromarray(rng.integers(0, 256, (6, 8, 3), dtype=np.uint8))
    real = blocks.resize((64, 48), Image.NEAREST)
    anime = blocks.resize((128, 96), Image.NEAREST)
    torch.manual_seed(0)
    for _ in range(10):
        r, a = crop_pair(real, anime, 48, 32)
        assert (r - a).abs().median() < 0.02


def test_crop_pair_flips_both_or_neither():
    image = _image(40, 40, 5)
    torch.manual_seed(1)
    for _ in range(10):
        real, anime = crop_pair(image, image.copy(), 40, 32)
        torch.testing.assert_close(real, anime)


def test_unpaired_dataset_covers_the_larger_domain(image_folder, tmp_path):
    anime_root = tmp_path / "anime"
    anime_root.mkdir()
    for i in range(5):
        _image(32, 32, 10 + i).save(anime_root / f"{i}.png")
    ds = UnpairedDataset(ImageDataset(image_folder, 32, 32), ImageDataset(anime_root, 32, 32))
    assert len(ds) == 5
    item = ds[4]
    assert set(item) == {"real", "anime"} and item["real"].shape == (3, 32, 32)


def test_clear_errors(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataSourceError, match="no images"):
        ImageDataset(tmp_path / "empty")
    with pytest.raises(DataSourceError, match="not found"):
        ImageDataset(tmp_path / "missing")
    _image(8, 8, 0).save(tmp_path / "x.png")
    with pytest.raises(DataSourceError, match="holds no dataset files"):
        PairedDataset(tmp_path)
    with pytest.raises(ValueError, match="multiple of 4"):
        ImageDataset(tmp_path, 30, 30)
    with pytest.raises(ValueError, match="at least crop_size"):
        ImageDataset(tmp_path, 16, 32)
