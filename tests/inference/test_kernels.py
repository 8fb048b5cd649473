"""Per-layer conv kernel choice (scenimefy.inference.kernels): every mode computes the network, the
trial picks the fastest candidate and caches it per machine, the heuristic and the settings."""

import json
import time

import pytest
import torch

from scenimefy.inference import kernels
from scenimefy.inference.engine import kernel_report, translate
from scenimefy.inference.graph import build_ops, ops_for
from scenimefy.inference.kernels import CHOOSER, ConvChoice, Seq, bucket, heuristic_choice
from scenimefy.inference.ops import BlurUp, BlurUpConv, Context, Conv, Op, Span
from scenimefy.inference.runtime import choose_settings
from tests.inference.test_engine import image, levels, small_model  # noqa: F401  (fixture)

CPU = torch.device("cpu")


@pytest.fixture
def cache(tmp_path, monkeypatch):
    """A fresh kernel cache: trials run again, and their file lands in tmp_path (however busy the
    machine running the tests is)."""
    monkeypatch.setenv("SCENIMEFY_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(kernels, "machine_busy", lambda: False)
    CHOOSER.clear()
    yield tmp_path
    CHOOSER.clear()


@pytest.mark.parametrize("mode", ["auto", "heuristic", "direct", "winograd"])
def test_every_kernel_mode_computes_the_network_whole_and_tiled(monkeypatch, cache, image, fast_path, mode):  # noqa: F811
    monkeypatch.setenv("SCENIMEFY_CONV_KERNELS", mode)
    settings = choose_settings(CPU)
    assert settings.kernels == mode
    model = small_model()
    with torch.no_grad():
        ref = model(image)
    threads = torch.get_num_threads()
    d = levels(translate(model, image), ref)
    assert torch.get_num_threads() == threads  # Winograd's single-threaded bands are scoped to the call
    tiled = levels(translate(model, image, tile_size=32), ref)
    if fast_path == "fp32":  # fp32 rounding only; tiled, the stored maps are fp16 (11 bits)
        assert d.max() <= 0.01, (mode, d.max())
        assert tiled.mean() <= 0.1 and tiled.max() <= 2, (mode, tiled.mean(), tiled.max())
    else:
        assert d.mean() <= 2.0 and tiled.mean() <= 2.0, (mode, d.mean(), tiled.mean())


def test_modes_build_the_ops_they_name(monkeypatch):
    model = small_model()
    monkeypatch.setenv("SCENIMEFY_CPU_BF16", "0")
    built = {}
    for mode in ("direct", "winograd", "auto"):
        monkeypatch.setenv("SCENIMEFY_CONV_KERNELS", mode)
        built[mode] = build_ops(model, choose_settings(CPU), CPU)
    direct = built["direct"]
    assert not any(isinstance(op, (ConvChoice, BlurUpConv)) for op in direct)
    assert all(op.winograd is None for op in direct if isinstance(op, Conv))
    assert sum(isinstance(op, Seq) and isinstance(op.ops[0], BlurUp) for op in direct) == 2
    forced = built["winograd"]
    assert sum(isinstance(op, BlurUpConv) for op in forced) == 2  # fused blur-upsampling
    # Winograd weights in fp32, as the maps: a float64 one would run the layer in float64 (2x the memory).
    assert {op.fused.u.dtype for op in forced if isinstance(op, BlurUpConv)} == {torch.float32}
    assert {op.winograd.u.dtype for op in forced if isinstance(op, Conv) and op.winograd is not None} == {torch.float32}
    assert sum(isinstance(op, Conv) and op.winograd is not None for op in forced) == 2 + 2 * 2  # down + trunk
    choices = [op for op in built["auto"] if isinstance(op, ConvChoice)]
    assert [op.layer for op in choices] == [
        "down.0.conv", "down.1.conv", "blocks.0.conv1", "blocks.0.conv2", "blocks.1.conv1", "blocks.1.conv2",
        "up.0.conv", "up.1.conv",
    ]  # fmt: skip
    assert set(choices[0].factories) == {"direct", "winograd4", "winograd6"}
    assert set(choices[-1].factories) == {"direct", "fused-winograd4", "fused-winograd6"}
    assert choices[-1].op("fused-winograd6").fused.u.dtype == torch.float32
    for choice in choices:  # tiles are cut for the direct kernel's halo: no other may need more
        assert all(choice.halo(m) >= choice.op(name).halo(m) for name in choice.factories for m in range(9))
    # The 7x7 stem and the head always run direct.
    assert isinstance(built["auto"][0], Conv) and built["auto"][0].winograd is None
    # Exact mode is direct fp32 whatever the environment asks.
    assert choose_settings(CPU, exact=True).kernels == "direct"


class Sleep(Op):
    """A real op that takes ``seconds`` longer: a candidate that must lose the trial."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    def __call__(self, x, rows, cols, ctx):
        time.sleep(self.seconds)
        return x, rows, cols


def test_the_trial_keeps_the_fastest_kernel_and_caches_it_on_disk(cache):
    torch.manual_seed(0)
    weight = torch.randn(8, 8, 3, 3)
    fast = Conv(weight, None, reflect=True)
    built = []

    def slow():  # listed second: the trial, not the order, must rule it out
        built.append(1)
        return Seq(Sleep(0.2), Conv(weight, None, reflect=True))

    op = ConvChoice("layer", "conv3x3 reflect 8->8", {"fast": lambda: fast, "slow": slow}, mode="auto",
                    compute_dtype=torch.float32)  # fmt: skip
    x = torch.randn(1, 8, 20, 24)
    span_r, span_c = Span(0, 20, 20), Span(0, 24, 24)
    y = op(x, span_r, span_c, Context())[0]
    torch.testing.assert_close(y, fast(x, span_r, span_c, Context())[0])
    assert op.chosen == {"20x24": "fast"}
    assert "slow" not in op.built  # the loser's op (its weights) is dropped again
    files = list(cache.glob("kernels-*.json"))
    assert len(files) == 1
    data = json.loads(files[0].read_text())
    assert data["machine"] == kernels.machine_key()
    (key, decision), *_ = data["decisions"].items()
    assert key.startswith("conv3x3 reflect 8->8 float32 23x23 t")  # buckets: 20 -> 2^4.5 ~ 23, 24 -> 23
    assert (
        decision["choice"] == "fast"
        and decision["ms"]["slow"] >= 200
        and decision["ms"]["slow"] > decision["ms"]["fast"]
    )

    # A new process reads the file: no trial (the slow candidate is never built), the cached kernel runs.
    CHOOSER.clear()
    built.clear()
    again = ConvChoice("layer", "conv3x3 reflect 8->8", {"fast": lambda: fast, "slow": slow}, mode="auto",
                       compute_dtype=torch.float32)  # fmt: skip
    again(x + 1, span_r, span_c, Context())
    assert built == []  # the slow candidate is never built: no trial
    assert again.chosen == {"20x24": "fast"}


def test_a_cached_decision_is_what_runs(cache, monkeypatch, image):  # noqa: F811
    """Hand-write the cache: translate follows it (and its result does not depend on it)."""
    monkeypatch.setenv("SCENIMEFY_CPU_BF16", "0")
    monkeypatch.setenv("SCENIMEFY_CONV_KERNELS", "auto")
    model = small_model()
    reference = translate(model, image, exact=True)
    translate(model, image)  # trials for every layer, written to the cache
    path = next(cache.glob("kernels-*.json"))
    data = json.loads(path.read_text())
    for key, decision in data["decisions"].items():
        decision["choice"] = "fused-winograd4" if key.startswith("blur-up") else "winograd4"
    path.write_text(json.dumps(data))
    CHOOSER.clear()
    fresh = small_model()  # new ops (the old ones remember their choices for reports)
    out = translate(fresh, image)
    report = kernel_report(fresh)
    assert "per-layer conv kernels timed on this machine" in report[0]
    layers = report[1:]
    assert len(layers) == 8 and all(line.endswith("winograd4") for line in layers), layers
    assert levels(out, reference).max() <= 0.01


def test_the_cache_is_per_machine(cache, monkeypatch):
    first = CHOOSER._path()
    # another ISA cap (an AVX2-only CPU's kernels: other timings); AVX512 where AVX2 is forced already
    other = "AVX512_CORE" if kernels.machine_key()["onednn_isa"] == "AVX2" else "AVX2"
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", other)
    assert CHOOSER._path() != first and kernels.machine_key()["onednn_isa"] == other


def test_an_unwritable_cache_only_costs_the_file(tmp_path, monkeypatch, image):  # noqa: F811
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("SCENIMEFY_CACHE_DIR", str(blocker / "cache"))
    monkeypatch.setenv("SCENIMEFY_CONV_KERNELS", "auto")
    CHOOSER.clear()
    try:
        out = translate(small_model(), image)
    finally:
        CHOOSER.clear()
    assert torch.isfinite(out).all()


def test_heuristic_rule():
    names = ["direct", "winograd4", "winograd6"]
    assert heuristic_choice(names, 256, 256, 128, 128, torch.float32) == "winograd6"  # full model's trunk
    assert heuristic_choice(names, 64, 128, 512, 512, torch.float32) == "winograd6"  # full model's first down conv
    assert heuristic_choice(names, 64, 64, 128, 128, torch.float32) == "direct"  # the student's trunk
    assert heuristic_choice(names, 256, 256, 48, 64, torch.float32) == "direct"  # a small frame's trunk
    assert heuristic_choice(names, 256, 256, 128, 128, torch.bfloat16) == "direct"  # native bf16
    fused = ["direct", "fused-winograd4", "fused-winograd6"]
    assert heuristic_choice(fused, 256, 128, 256, 256, torch.float32) == "fused-winograd6"


def test_buckets_are_half_octaves():
    assert [bucket(n) for n in (16, 20, 23, 32, 48, 64, 100, 128, 1024)] == [16, 23, 23, 32, 45, 64, 91, 128, 1024]


def test_a_bad_mode_is_one_clear_error(monkeypatch):
    monkeypatch.setenv("SCENIMEFY_CONV_KERNELS", "fastest")
    with pytest.raises(ValueError, match="SCENIMEFY_CONV_KERNELS='fastest': expected one of auto, heuristic"):
        choose_settings(CPU)
    monkeypatch.delenv("SCENIMEFY_CONV_KERNELS")
    assert choose_settings(CPU).kernels == "auto"  # the default: timed trials
    monkeypatch.setenv("SCENIMEFY_WINOGRAD", "0")  # the older switch still means direct convs
    assert choose_settings(CPU).kernels == "direct"


def test_ops_cache_is_per_mode(monkeypatch):
    model = small_model()
    monkeypatch.setenv("SCENIMEFY_CONV_KERNELS", "direct")
    direct = ops_for(model, choose_settings(CPU), CPU)
    monkeypatch.setenv("SCENIMEFY_CONV_KERNELS", "auto")
    assert ops_for(model, choose_settings(CPU), CPU) is not direct


def test_a_trial_on_a_busy_machine_is_not_written_down(cache, monkeypatch, image):  # noqa: F811
    monkeypatch.setattr(kernels, "machine_busy", lambda: True)
    monkeypatch.setenv("SCENIMEFY_CONV_KERNELS", "auto")
    translate(small_model(), image)
    assert CHOOSER.decisions() and not list(cache.glob("kernels-*.json"))  # decided, kept in memory only
