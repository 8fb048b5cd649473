"""ONNX export prototype: full and lite translators, dynamic H/W, checked with onnxruntime."""

import pytest
import torch

pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

from scenimefy import _onnx_proto as onnx_proto  # noqa: E402
from scenimefy.models.lite import ScenimefyLiteTranslator  # noqa: E402
from scenimefy.models.translator import ScenimefyTranslator  # noqa: E402


def randomised(model):
    for p in model.parameters():
        p.data.normal_(0, 0.2)  # larger than the default init: differences would show
    return model.eval()


@pytest.fixture(scope="module")
def models():
    torch.manual_seed(0)
    return {
        # blur-pool (grouped Conv), blur upsampling (grouped ConvTranspose + Slice)
        "full": randomised(ScenimefyTranslator(ngf=4, n_blocks=1)),
        # three downsamplings, 3x3 head, strided / transposed convs
        "lite": randomised(
            ScenimefyLiteTranslator(channels=(4, 8, 8, 16), n_blocks=1, head_kernel=3, antialias_up=False)
        ),
    }


@pytest.mark.parametrize("name", ["full", "lite"])
def test_export_is_dynamic_and_matches_pytorch(models, name, tmp_path):
    model = models[name]
    m = onnx_proto.size_multiple(model)
    path = onnx_proto.export_onnx(model, tmp_path / f"{name}.onnx", example_size=(9 * m, 8 * m))
    sess = onnx_proto.session(path, threads=1)
    torch.manual_seed(1)
    # two sizes and a batch the export never saw, non-square both ways
    for size in [(2, 5 * m, 12 * m), (1, 14 * m, 3 * m)]:
        x = torch.rand(size[0], 3, *size[1:]) * 2 - 1
        result = onnx_proto.verify_onnx(path, model, x, sess=sess)
        assert result["shape"] == tuple(x.shape)
        assert result["max_abs"] <= 1e-4, (name, size, result)


def test_rejects_example_sizes_off_the_grid(models, tmp_path):
    with pytest.raises(ValueError, match="multiples of 8"):
        onnx_proto.export_onnx(models["lite"], tmp_path / "x.onnx", example_size=(36, 40))
