import numpy as np
import pytest
import torch
from PIL import Image

from scenimefy.data.images import InvalidImageError, load_image
from tests.support.fixtures import write_awkward_images


@pytest.fixture(scope="module")
def awkward(tmp_path_factory):
    return write_awkward_images(tmp_path_factory.mktemp("awkward"))


@pytest.mark.parametrize(
    "name,message",
    [
        ("empty", "empty"),
        ("truncated", "broken or truncated"),
        ("text", "not an image"),
        ("bomb", "decompression bomb|MP limit"),
    ],
)
def test_bad_files_give_clear_errors(awkward, name, message):
    with pytest.raises(InvalidImageError, match=message) as err:
        load_image(awkward[name])
    assert str(awkward[name]) in str(err.value)


def test_missing_file():
    with pytest.raises(InvalidImageError, match="no such file"):
        load_image("/nonexistent/photo.jpg")


def test_cmyk_becomes_rgb(awkward):
    img = load_image(awkward["cmyk"])
    assert img.rgb.shape == (24, 40, 3) and img.alpha is None
    # The gradient's blue channel is a constant 90; the CMYK JPEG round trip keeps it close.
    assert abs(float(img.rgb[..., 2].mean()) - 90) < 6


def test_sixteen_bit_is_rescaled_not_clipped(awkward):
    img = load_image(awkward["sixteen"])
    raw = np.asarray(Image.open(awkward["sixteen"])).astype(np.float64)
    expected = np.round(raw / 65535 * 255)
    assert img.rgb.shape == (20, 36, 3)
    np.testing.assert_array_equal(img.rgb[..., 0], expected)
    assert img.rgb.min() == 0 and img.rgb.max() == 255  # a clip at 255 would be mostly white


def test_palette_transparency_keeps_alpha(awkward):
    img = load_image(awkward["palette"])
    assert img.alpha is not None
    assert img.alpha[10, 15] == 255 and img.alpha[0, 0] == 0
    assert tuple(img.rgb[10, 15]) == (0, 255, 0)


def test_exif_orientation_applied(awkward):
    img = load_image(awkward["rotated"])
    assert img.rgb.shape[:2] == (48, 24)  # stored 48 wide x 24 high, displayed rotated


def test_animated_gif_uses_first_frame(awkward):
    with pytest.warns(UserWarning, match="first frame"):
        img = load_image(awkward["animated"])
    assert abs(int(img.rgb.mean()) - 30) <= 2


def test_arrays_and_tensors_agree():
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (10, 12, 3), dtype=np.uint8)
    as_float = load_image(rgb.astype(np.float32) / 255).rgb
    as_tensor = load_image(torch.from_numpy(rgb).permute(2, 0, 1)).rgb
    as_float_tensor = load_image(torch.from_numpy(rgb).permute(2, 0, 1).float() / 255).rgb
    as_pil = load_image(Image.fromarray(rgb)).rgb
    for other in (as_float, as_tensor, as_float_tensor, as_pil):
        np.testing.assert_array_equal(other, rgb)
    grey = load_image(rgb[..., 0]).rgb
    np.testing.assert_array_equal(grey, np.repeat(rgb[..., :1], 3, axis=2))


def test_array_errors():
    with pytest.raises(InvalidImageError, match=r"\[0, 1\]"):
        load_image(np.full((4, 4, 3), 2.0))
    with pytest.raises(InvalidImageError, match="NaN"):
        load_image(np.full((4, 4, 3), np.nan))
    with pytest.raises(InvalidImageError, match="expected"):
        load_image(np.zeros((4, 4, 5), np.uint8))
    with pytest.raises(InvalidImageError, match="unsupported input"):
        load_image(42)
