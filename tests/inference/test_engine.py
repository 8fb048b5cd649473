"""The inference paths of ``translate``: exact, fast (bf16 / fp16), tiled, fallbacks, memory."""

import copy
import json
import os
import subprocess
import sys
import textwrap

import pytest
import torch

from scenimefy.inference import engine, runtime
from scenimefy.inference.engine import translate
from scenimefy.inference.runtime import ExecutionSettings, choose_settings, cpu_has_fast_bf16, cpu_probe_bf16
from scenimefy.models.translator import ScenimefyTranslator
from tests.support.paths import REPO

CONFIGS = [
    {"ngf": 8, "n_blocks": 2},
    {"ngf": 8, "n_blocks": 2, "antialias": False},
    {"ngf": 8, "n_blocks": 1, "antialias_up": False},
    {"ngf": 8, "n_blocks": 1, "antialias": False, "antialias_up": False},
]


def small_model(seed: int = 0, **config) -> ScenimefyTranslator:
    torch.manual_seed(seed)
    model = ScenimefyTranslator(**(config or CONFIGS[0])).eval()
    for p in model.parameters():
        p.data.normal_(0, 0.2)  # biases too: dropping the ones InstanceNorm cancels must not matter
    return model


def levels(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """|a - b| in 8-bit levels of the [-1, 1] output."""
    return (a - b).abs() * 127.5


@pytest.fixture(scope="module")
def image() -> torch.Tensor:
    torch.manual_seed(1)
    # A smooth image with some edges, closer to a photo than uniform noise.
    y, x = torch.meshgrid(torch.linspace(-1, 1, 64), torch.linspace(-1, 1, 96), indexing="ij")
    rgb = torch.stack([torch.sin(3 * x + y), torch.cos(2 * y), (x * y > 0.1).float() * 1.6 - 0.8])
    return (rgb + 0.1 * torch.randn(3, 64, 96)).clamp(-1, 1)[None]


def test_exact_matches_model(reference_translator, image):
    x = torch.cat([image, image.flip(-1)])
    with torch.no_grad():
        ref = reference_translator(x)
    out = translate(reference_translator, x, exact=True)
    assert out.dtype == torch.float32 and out.shape == x.shape and out.is_contiguous()
    torch.testing.assert_close(out, ref, atol=1e-4, rtol=0)


def test_fast_close_to_exact(reference_translator, image, fast_path):
    exact = translate(reference_translator, image, exact=True)
    fast = translate(reference_translator, image)
    d = levels(fast, exact)
    assert fast.dtype == torch.float32 and fast.shape == image.shape
    assert fast.abs().max() <= 1
    # bf16: ~1.4 levels on average with the parity weights; fp32: the targets of docs/inference.md.
    if fast_path == "bf16":
        assert d.mean() <= 2.0, d.mean()
    else:
        assert d.mean() <= 0.5 and d.max() <= 2, (d.mean(), d.max())


@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: ",".join(f"{k}={v}" for k, v in c.items()))
@pytest.mark.parametrize("tile", [16, 32, 128])  # 128: one tile per segment
def test_tiled_equals_untiled_exact(config, tile):
    model = small_model(**config)
    x = torch.rand(2, 3, 52, 68) * 2 - 1
    with torch.no_grad():
        ref = model(x)
    torch.testing.assert_close(translate(model, x, exact=True, tile_size=tile), ref, atol=1e-4, rtol=0)


def test_tiled_close_to_untiled_fast(reference_translator, image, fast_path):
    untiled = translate(reference_translator, image)
    tiled = translate(reference_translator, image, tile_size=48)  # 2 x 2 tiles
    # bf16: rounding noise of another summation order; fp32: the maps stored between tiling
    # segments in fp16 (one rounding), far below a level.
    assert levels(tiled, untiled).mean() <= (2.0 if fast_path == "bf16" else 0.25)


def test_memory_budget_switches_to_tiles(monkeypatch, image):
    model = small_model()
    calls = []
    real = engine.run_tiled
    monkeypatch.setattr(engine, "run_tiled", lambda *a, **k: calls.append(1) or real(*a, **k))
    untiled = translate(model, image, exact=True)
    assert not calls
    tiled = translate(model, image, exact=True, memory_budget=200_000)
    assert calls
    torch.testing.assert_close(tiled, untiled, atol=1e-4, rtol=0)


def test_cpu_without_bf16_falls_back_to_fp32(monkeypatch, image):
    monkeypatch.setenv("SCENIMEFY_CPU_BF16", "0")
    settings = choose_settings(torch.device("cpu"))
    assert settings.dtype == torch.float32 and "SCENIMEFY_CPU_BF16=0" in settings.reason
    model = small_model()
    with torch.no_grad():
        ref = model(image)
    torch.testing.assert_close(translate(model, image), ref, atol=1e-4, rtol=0)


def test_settings_per_device(monkeypatch):
    monkeypatch.setenv("SCENIMEFY_CPU_BF16", "1")
    assert choose_settings(torch.device("cpu")).dtype == torch.bfloat16
    assert choose_settings(torch.device("cpu"), exact=True).dtype == torch.float32
    assert choose_settings(torch.device("cpu"), dtype=torch.float32).dtype == torch.float32
    cuda = choose_settings(torch.device("cuda"))
    assert (cuda.dtype, cuda.channels_last) == (torch.float16, True)
    assert choose_settings(torch.device("cuda"), exact=True) == ExecutionSettings(
        torch.float32, False, stable_norms=True
    )
    assert not choose_settings(torch.device("cpu"), dtype=torch.float32).stable_norms


def test_capability_probe_never_raises():
    assert isinstance(cpu_has_fast_bf16(), bool)


def test_an_isa_cap_below_bf16_means_no_native_bf16(monkeypatch):
    """ONEDNN_MAX_CPU_ISA=AVX2 makes oneDNN emulate bf16: the probe answers as an AVX2-only CPU would.
    Caps oneDNN reads as 'no cap' (DEFAULT, ALL, unknown names) or at bf16 and above keep it."""
    for name in ("SCENIMEFY_CPU_BF16", "ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(torch.backends.mkldnn, "is_available", lambda: True)
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: True)  # a bf16 CPU, whatever runs this
    assert cpu_probe_bf16() is True
    for cap in ("AVX2", "avx512_core", "AVX512_CORE_VNNI", "AVX2_VNNI_2"):
        for name in ("ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA"):
            monkeypatch.setenv(name, cap)
            assert cpu_probe_bf16() is False and cpu_has_fast_bf16() is False, (name, cap)
            assert choose_settings(torch.device("cpu")).dtype == torch.float32
            monkeypatch.delenv(name)
    for cap in ("AVX512_CORE_BF16", "AVX512_CORE_AMX", "AVX10_1_512", "DEFAULT", "ALL", "SOMETHING_NEW"):
        monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", cap)
        assert cpu_probe_bf16() is True, cap


def test_weight_cache_follows_parameter_updates(image):
    model = small_model()
    before = translate(model, image, exact=True)
    with torch.no_grad():
        model.head.bias.add_(0.5)
        ref = model(image)
    after = translate(model, image, exact=True)
    assert not torch.allclose(before, after)
    torch.testing.assert_close(after, ref, atol=1e-4, rtol=0)


def test_norm_stats_hook(image):
    model = small_model()
    seen = []

    def identity(layer, mean, var):
        seen.append((layer, tuple(mean.shape)))
        return mean, var

    plain = translate(model, image, exact=True)
    hooked = translate(model, image, exact=True, norm_stats=identity)
    torch.testing.assert_close(hooked, plain, atol=1e-4, rtol=0)
    assert [layer for layer, _ in seen] == list(range(len(seen))) and len(seen) == 3 + 2 * 2 + 2
    seen.clear()
    tiled = translate(model, image, exact=True, norm_stats=identity, tile_size=48)
    torch.testing.assert_close(tiled, plain, atol=1e-4, rtol=0)
    assert sorted(layer for layer, _ in seen) == list(range(9))


def test_restores_allocator_state(image):
    translate(small_model(), image)
    assert runtime._heap_users == 0


@pytest.mark.parametrize(
    "shape,message",
    [
        ((3, 64, 64), "expected a"),
        ((1, 4, 64, 64), "expected a"),
        ((1, 3, 62, 64), "multiples of 4"),
        ((1, 3, 12, 64), "at least 16"),
    ],
)
def test_rejects_bad_input(shape, message):
    with pytest.raises(ValueError, match=message):
        translate(small_model(), torch.zeros(shape))


def test_rejects_integer_images():
    with pytest.raises(TypeError, match="floating point"):
        translate(small_model(), torch.zeros(1, 3, 64, 64, dtype=torch.uint8))


def test_rejects_bad_tile_size(image):
    with pytest.raises(ValueError, match="tile_size"):
        translate(small_model(), image, tile_size=20)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_paths(reference_translator, image):
    model = copy.deepcopy(reference_translator).cuda()
    x = image.cuda()
    with torch.no_grad():
        ref = model(x)
    torch.testing.assert_close(translate(model, x, exact=True), ref, atol=1e-4, rtol=0)
    fast = translate(model, x)
    assert fast.device == x.device and fast.dtype == torch.float32
    assert levels(fast, ref).mean() <= 2.0
    assert levels(translate(model, x, tile_size=48), fast).mean() <= 2.0


@pytest.mark.slow
def test_tiled_close_to_untiled_fast_1080p(reference_translator):
    """Full-size tiles of a 1080p-high frame on the default path: 1080 x 960, 3 x 2 tiles of 512
    px (half a 1080p frame: every kind of seam, half the compute). The parity weights with their
    first residual block only: the tiling is the same for any number of blocks, compute is 1/3."""
    model = ScenimefyTranslator(n_blocks=1).eval()
    assert not model.load_state_dict(reference_translator.state_dict(), strict=False).missing_keys
    torch.manual_seed(2)
    x = torch.nn.functional.interpolate(torch.rand(1, 3, 135, 120) * 2 - 1, size=(1080, 960), mode="bicubic")
    untiled = translate(model, x.clamp(-1, 1))
    tiled = translate(model, x.clamp(-1, 1), tile_size=512)
    assert levels(tiled, untiled).mean() <= 2.0


@pytest.mark.slow
@pytest.mark.parametrize("bf16", ["1", "0"], ids=["bf16", "fp32"])
def test_large_photo_stays_within_the_memory_budget_subprocess(bf16):
    """A photo above the activation budget runs tiled within it, on the bf16 path (where the CPU
    has native bf16) and on the fp32 path, whose maps are twice as large: once the model and its
    prepared weights are in memory, the process grows by at most the budget.

    1920x1080 under a 1 GiB budget (``SCENIMEFY_MEMORY_BUDGET``) stands for 3840x2160 under the
    default 3 GiB at a quarter of the compute: the same stored maps per pixel, a tile workspace of
    half the budget (measured here: +0.45 GB bf16, +0.68 GB fp32; benchmarks/bench_inference.py
    measures 4K itself: +2.0 GB fp32, +1.4 GB bf16). Untiled, the fp32 run grows by ~2.7 GB (the
    memory model's estimate is checked to be above the budget).
    The full-width network (ngf=64) with 1 residual block instead of 9: the blocks run one after
    another on the same stored maps, so memory does not depend on their number.
    """
    if bf16 == "1" and not cpu_probe_bf16():
        pytest.skip("this CPU has no native bf16: the bf16 path would be emulated (slow) and never chosen")
    code = textwrap.dedent(
        """
        import json, torch
        import scenimefy
        from scenimefy.inference.engine import translate
        from scenimefy.inference.graph import ops_for
        from scenimefy.inference.runtime import choose_settings
        from scenimefy.inference.tiling import default_budget, untiled_bytes
        from scenimefy.models.translator import ScenimefyTranslator

        def status(key):  # VmHWM: ru_maxrss would include the pytest parent's size (Linux keeps it across exec)
            return int(next(l for l in open("/proc/self/status") if l.startswith(key)).split()[1]) * 1024

        model = ScenimefyTranslator(n_blocks=1).eval()
        x = torch.rand(1, 3, 1080, 1920) * 2 - 1
        settings = choose_settings(torch.device("cpu"))
        translate(model, x[:, :, :512, :512])  # the fast path's prepared weights (fp32 Winograd's: ~0.3 GB)
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # resets VmHWM to the current size
        before = status("VmRSS:")
        y = translate(model, x)
        assert y.shape == x.shape and torch.isfinite(y).all()
        untiled = untiled_bytes(ops_for(model, settings, x.device), 1080, 1920, 3, settings.dtype.itemsize)
        print(json.dumps({"grew": status("VmHWM:") - before, "budget": default_budget(x.device),
                          "untiled": untiled, "dtype": str(settings.dtype)}))
        """
    )
    env = {**os.environ, "SCENIMEFY_CPU_BF16": bf16, "SCENIMEFY_MEMORY_BUDGET": str(1024**3)}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, env=env, timeout=900)
    assert out.returncode == 0, out.stderr[-2000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["dtype"] == ("torch.bfloat16" if bf16 == "1" else "torch.float32")
    assert result["budget"] == 1024**3 and result["untiled"] > result["budget"]
    assert result["grew"] <= result["budget"], f"grew by {result['grew'] / 2**20:.0f} MiB"


class _Doubler(torch.nn.Module):
    def forward(self, x):
        return 2 * x


@pytest.mark.parametrize(
    "surgery, named",
    [
        (lambda m: setattr(m.blocks, "0", _Doubler()), "blocks.0 is a _Doubler"),
        (lambda m: setattr(m.down[0], "blur", torch.nn.AvgPool2d(2)), "down.0.blur is a AvgPool2d"),
        (lambda m: setattr(m.blocks[1], "extra", torch.nn.Identity()), "blocks.1 has the children"),
        (lambda m: setattr(m.down[1], "conv", torch.nn.Conv2d(16, 32, 3, padding=2, dilation=2)), "dilation"),
        (lambda m: setattr(m.up[0], "conv", torch.nn.Conv2d(32, 16, 3, stride=1, padding=0)), "up.0.conv"),
    ],
)
def test_fast_path_refuses_layers_it_does_not_know(image, surgery, named):
    """The op list is written from the architecture: an unknown or altered layer fails loudly."""
    from scenimefy.inference.graph import UnsupportedLayerError

    model = small_model()
    surgery(model)
    with pytest.raises(UnsupportedLayerError, match=named):
        translate(model, image, exact=True)


def test_subclass_with_another_forward_is_refused(image):
    from scenimefy.inference.graph import UnsupportedLayerError

    class Brighter(ScenimefyTranslator):
        def forward(self, x):
            return super().forward(x) * 0.5

    model = Brighter(ngf=8, n_blocks=2).eval()
    with pytest.raises(UnsupportedLayerError, match="Brighter"):
        translate(model, image)


@pytest.mark.parametrize(
    "config",
    [
        {"channels": (8, 16, 32), "n_blocks": 2},
        {"channels": (8, 16, 24), "n_blocks": 1, "stem_kernel": 3, "head_kernel": 5},
    ],
)
def test_lite_translator_runs_on_the_fast_path(image, config):
    from scenimefy.models.lite import ScenimefyLiteTranslator

    torch.manual_seed(3)
    model = ScenimefyLiteTranslator(**config).eval()
    with torch.no_grad():
        ref = model(image)
    torch.testing.assert_close(translate(model, image, exact=True), ref, atol=1e-4, rtol=0)
    torch.testing.assert_close(translate(model, image, exact=True, tile_size=32), ref, atol=1e-4, rtol=0)


def test_lite_translator_with_a_narrow_stem_runs_on_each_fast_path(image, fast_path):
    """A stem with fewer than 8 channels: only the 3-channel head takes the folded (fp32) conv."""
    from scenimefy.models.lite import ScenimefyLiteTranslator

    torch.manual_seed(4)
    model = ScenimefyLiteTranslator(channels=(4, 8, 16), n_blocks=1, head_kernel=3).eval()
    with torch.no_grad():
        ref = model(image)
    out = translate(model, image)
    assert out.dtype == torch.float32 and out.shape == ref.shape
    assert (out - ref).abs().mean() < (0.02 if fast_path == "bf16" else 1e-4)


def test_fast_path_refuses_other_resampling_depths(image):
    from scenimefy.inference.graph import UnsupportedLayerError
    from scenimefy.models.lite import ScenimefyLiteTranslator

    with pytest.raises(UnsupportedLayerError, match="3 down and 3 up blocks"):
        translate(ScenimefyLiteTranslator(channels=(8, 16, 32, 32), n_blocks=1), image)
