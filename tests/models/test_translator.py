import numpy as np
import pytest
import torch

from scenimefy.hub.convert import CheckpointError, load_reference_translator, safe_torch_load, translator_from_reference
from scenimefy.models.translator import NCE_LAYERS, ScenimefyTranslator
from tests.support.paths import PARITY
from tests.support.reference_nets import RefResnetGenerator


@pytest.fixture(scope="module")
def vectors():
    return np.load(PARITY / "translator.npz")


def test_parity_output(reference_translator, vectors):
    with torch.no_grad():
        out = reference_translator(torch.from_numpy(vectors["input"]))
    np.testing.assert_allclose(out.numpy(), vectors["output"], atol=1e-4, rtol=0)


def test_parity_encoder_taps(reference_translator, vectors):
    with torch.no_grad():
        feats = reference_translator.encode(torch.from_numpy(vectors["input"]), NCE_LAYERS)
    for layer, feat in zip(NCE_LAYERS, feats):
        head = vectors[f"feat_{layer}_head"]
        assert tuple(feat.shape) == tuple(vectors[f"feat_{layer}_shape"])
        np.testing.assert_allclose(feat[:, : head.shape[1]].numpy(), head, atol=1e-4, rtol=0)
        mean, std = vectors[f"feat_{layer}_mean_std"]
        assert feat.double().mean().item() == pytest.approx(mean, abs=1e-4)
        assert feat.double().std().item() == pytest.approx(std, abs=1e-4)


@pytest.mark.parametrize(
    "ngf,n_blocks,antialias,antialias_up,size",
    [
        (8, 2, True, True, (32, 48)),
        (16, 5, True, False, (36, 28)),
        (8, 3, False, True, (40, 40)),
        (4, 1, False, False, (24, 32)),
    ],
)
def test_converter_matches_reference_on_other_configs(ngf, n_blocks, antialias, antialias_up, size):
    torch.manual_seed(ngf + n_blocks)
    ref = RefResnetGenerator(ngf, n_blocks, antialias, antialias_up).eval()
    ours = translator_from_reference(ref.state_dict())
    cfg = ours.config
    assert (cfg.ngf, cfg.n_blocks, cfg.antialias, cfg.antialias_up) == (ngf, n_blocks, antialias, antialias_up)
    x = torch.rand(2, 3, *size) * 2 - 1
    with torch.no_grad():
        torch.testing.assert_close(ours(x), ref(x), atol=1e-5, rtol=0)
        layers = (0, 4, 7, 9, 10) if not antialias else (0, 4, 8, 12, 11 + n_blocks)
        for a, b in zip(ours.encode(x, layers), ref.taps(x, layers)):
            torch.testing.assert_close(a, b, atol=1e-5, rtol=0)


def test_converter_rejects_foreign_state_dicts():
    with pytest.raises(CheckpointError, match="unexpected key"):
        translator_from_reference({"conv.weight": torch.zeros(1)})
    ref = RefResnetGenerator(4, 1).state_dict()
    ref["model.7.filt"] = torch.ones_like(ref["model.7.filt"])
    with pytest.raises(CheckpointError, match="binomial"):
        translator_from_reference(ref)


def test_encode_layers_and_errors():
    model = ScenimefyTranslator(ngf=4, n_blocks=2).eval()
    x = torch.rand(1, 3, 16, 16) * 2 - 1
    with torch.no_grad():
        (padded,) = model.encode(x, [0])
        assert padded.shape == (1, 3, 22, 22)
        deep, shallow = model.encode(x, [13, 4])  # returned in the order asked
        assert deep.shape == (1, 16, 4, 4) and shallow.shape == (1, 8, 16, 16)
    with pytest.raises(ValueError, match=r"\[0, 13\]"):
        model.encode(x, [14])


def test_save_load_round_trip(tmp_path):
    torch.manual_seed(0)
    model = ScenimefyTranslator(ngf=8, n_blocks=2, antialias_up=False).eval()
    model.save_pretrained(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.json", "diffusion_pytorch_model.safetensors"]
    loaded = ScenimefyTranslator.from_pretrained(tmp_path).eval()
    assert loaded.config.antialias_up is False and loaded.config.ngf == 8
    x = torch.rand(1, 3, 20, 24) * 2 - 1
    with torch.no_grad():
        assert torch.equal(model(x), loaded(x))


class _Exploit:
    def __init__(self, target):
        self.target = target

    def __reduce__(self):
        return (open, (self.target, "w"))


def test_malicious_checkpoint_is_refused(tmp_path):
    target = tmp_path / "pwned"
    bad = tmp_path / "evil_net_G.pth"
    torch.save({"model.1.weight": _Exploit(str(target))}, bad)
    with pytest.raises(CheckpointError, match="refused"):
        safe_torch_load(bad)
    with pytest.raises(CheckpointError):
        load_reference_translator(bad)
    assert not target.exists()


def test_half_precision_forward_runs():
    model = ScenimefyTranslator(ngf=4, n_blocks=1).eval().to(torch.bfloat16)
    with torch.no_grad():
        y = model(torch.zeros(1, 3, 16, 16, dtype=torch.bfloat16))
    assert y.dtype == torch.bfloat16 and torch.isfinite(y.float()).all()


def test_blind_to_input_contrast_and_colour_offsets(reference_translator):
    # The stem's InstanceNorm (no affine) removes any per-channel offset and a global gain of
    # the input, so G(a*x + b) = G(x): the translator cannot see a photo's exposure or colour
    # cast (why benchmarks/bench_learning.py standardises colours in its toy target style).
    x = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(0)) * 2 - 1
    shifted = 0.5 * x + torch.tensor([0.3, -0.2, 0.1]).view(1, 3, 1, 1)
    recoloured = x.clone()
    recoloured[:, 0] = -x[:, 0]  # not an offset or a gain: must change the output
    with torch.no_grad():
        y, y_shifted, y_recoloured = (reference_translator(v) for v in (x, shifted, recoloured))
    assert (y - y_shifted).abs().max() < 1e-3
    assert (y - y_recoloured).abs().mean() > 1e-2
