"""ScenimefyLiteTranslator: construction, shapes, MACs, save/load, determinism, fast path."""

import json

import pytest
import torch

from scenimefy.inference import translate
from scenimefy.models.lite import ScenimefyLiteTranslator, count_macs, count_params
from scenimefy.models.translator import ScenimefyTranslator

TINY = {"channels": (4, 8, 16, 32), "n_blocks": 2}

#: multiply-adds per pixel of the full translator at its defaults (ngf 64, 9 blocks)
TEACHER_MACS = 977_280


def tiny(seed: int = 0, **config) -> ScenimefyLiteTranslator:
    torch.manual_seed(seed)
    model = ScenimefyLiteTranslator(**(config or TINY)).eval()
    for p in model.parameters():
        p.data.normal_(0, 0.2)
    return model


def test_count_macs_of_the_teacher_matches_its_layer_table():
    ngf, blocks = 8, 2
    model = ScenimefyTranslator(ngf=ngf, n_blocks=blocks)
    per_pixel = 2 * 49 * 3 * ngf + 4 * 9 * ngf * 2 * ngf + 2 * blocks * 9 * (4 * ngf) ** 2 / 16
    assert count_macs(model, 32, 48) == per_pixel * 32 * 48
    # the strided / transposed variants: down and up convs run at the lower resolution
    plain = ScenimefyTranslator(ngf=ngf, n_blocks=blocks, antialias=False, antialias_up=False)
    strided = 2 * 49 * 3 * ngf + 2 * (9 * ngf * 2 * ngf / 4 + 9 * 2 * ngf * 4 * ngf / 16)
    assert count_macs(plain, 32, 48) == (strided + 2 * blocks * 9 * (4 * ngf) ** 2 / 16) * 32 * 48


def test_default_config_costs_at_most_a_fifteenth_of_the_teacher():
    model = ScenimefyLiteTranslator()
    assert ScenimefyTranslator().config.ngf == 64  # the reference the ratio is taken against
    assert model.macs_per_pixel() == 58_080  # (16, 32, 64) x 8 blocks, 7x7 stem, 3x3 head
    assert model.macs_per_pixel() <= TEACHER_MACS / 15
    assert count_params(model) < count_params(ScenimefyTranslator()) / 5


@pytest.mark.parametrize(
    "config,size",
    [
        (TINY, (48, 64)),
        ({"channels": (4, 8, 16), "n_blocks": 1, "stem_kernel": 3, "head_kernel": 5}, (20, 28)),
        ({"channels": (4, 8, 16, 32), "n_blocks": 1, "antialias": False, "antialias_up": False}, (32, 24)),
        ({"channels": (6,), "n_blocks": 2}, (10, 14)),
    ],
)
def test_shapes_range_and_fast_path(config, size):
    model = tiny(**config)
    x = torch.rand(2, 3, *size) * 2 - 1
    with torch.no_grad():
        y = model(x)
    assert y.shape == x.shape and y.abs().max() <= 1
    if all(s % 4 == 0 for s in size) and len(config["channels"]) <= 3:
        # same op vocabulary as the full translator: its fast path compiles the lite one as is
        torch.testing.assert_close(translate(model, x, exact=True), y, atol=1e-4, rtol=0)


def test_rejects_sizes_that_are_not_multiples_of_the_downsampling():
    model = tiny()
    with pytest.raises(ValueError, match="multiples of 8"):
        model(torch.zeros(1, 3, 36, 40))
    with pytest.raises(ValueError, match="odd"):
        ScenimefyLiteTranslator(stem_kernel=4)


def test_save_load_round_trip(tmp_path):
    model = tiny(channels=(4, 8, 16, 32), n_blocks=3, head_kernel=3)
    model.save_pretrained(tmp_path)
    assert (tmp_path / "config.json").is_file() and any(tmp_path.glob("*.safetensors"))
    loaded = ScenimefyLiteTranslator.from_pretrained(tmp_path).eval()
    assert tuple(loaded.config.channels) == (4, 8, 16, 32)
    assert (loaded.config.n_blocks, loaded.config.head_kernel) == (3, 3)
    x = torch.rand(1, 3, 40, 32) * 2 - 1
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), model(x), atol=0, rtol=0)
    assert json.loads((tmp_path / "config.json").read_text())["_class_name"] == "ScenimefyLiteTranslator"


def test_deterministic():
    a, b = tiny(seed=3), tiny(seed=3)
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    with torch.no_grad():
        torch.testing.assert_close(a(x), b(x), atol=0, rtol=0)
        torch.testing.assert_close(a(x), a(x), atol=0, rtol=0)


def test_the_class_comes_from_config_json(tmp_path):
    from scenimefy.models.loading import (
        UnknownTranslatorError,
        load_translator_folder,
        model_fingerprint,
        translator_class,
    )

    tiny(seed=1).save_pretrained(tmp_path / "lite")
    ScenimefyTranslator(ngf=4, n_blocks=1).save_pretrained(tmp_path / "full")
    assert translator_class(tmp_path / "lite") is ScenimefyLiteTranslator
    assert translator_class(tmp_path / "full") is ScenimefyTranslator
    assert translator_class({"ngf": 8}) is ScenimefyTranslator  # configs written before the lite class
    assert type(load_translator_folder(tmp_path / "lite")) is ScenimefyLiteTranslator
    with pytest.raises(UnknownTranslatorError, match="not a translator"):
        translator_class({"_class_name": "UNet2DModel"})
    # the fingerprint names cached teacher outputs and ONNX exports: weights and config change it
    assert model_fingerprint(tiny(seed=1)) == model_fingerprint(load_translator_folder(tmp_path / "lite"))
    assert model_fingerprint(tiny(seed=1)) != model_fingerprint(tiny(seed=2))
