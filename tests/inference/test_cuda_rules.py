"""What inference does differently on CUDA, checked on the CPU: the memory budget's arithmetic, the
tiling decision with the 32-bit index limit of CUDA's kernels, the channels_last reflect pad, and the
reference-counted TF32 scope under threads."""

import threading

import pytest
import torch
import torch.nn.functional as F

from scenimefy._tf32 import _tf32_flags, no_tf32
from scenimefy.inference import translate
from scenimefy.inference.graph import ops_for
from scenimefy.inference.padding import reflect_pad
from scenimefy.inference.runtime import choose_settings
from scenimefy.inference.tiling import CUDA_INDEX_LIMIT, cuda_budget, largest_map, runs_untiled, untiled_bytes
from scenimefy.models import ScenimefyTranslator

GiB = 1024**3


def test_cuda_budget_counts_the_allocators_cached_free_blocks():
    # 60 GiB free on the device, 20 GiB reserved by PyTorch of which 2 GiB hold live tensors:
    # the 18 GiB cached free blocks are as good as free for the next image.
    assert cuda_budget(60 * GiB, 20 * GiB, 2 * GiB) == 39 * GiB
    assert cuda_budget(60 * GiB, 0, 0) == 30 * GiB  # a fresh process: free memory alone
    assert cuda_budget(1001, 10, 10) == 500  # everything reserved is in use
    # the same large image after its first run: what it freed back to the cache still counts
    first = cuda_budget(76 * GiB, 0, 0)
    assert cuda_budget(76 * GiB - 30 * GiB, 30 * GiB, 0) == first


@pytest.fixture(scope="module")
def cuda_ops():
    """The op list of the full-width translator (ngf 64) with CUDA's settings (fp16, channels_last)."""
    settings = choose_settings(torch.device("cuda"))
    assert settings.dtype == torch.float16 and settings.channels_last
    model = ScenimefyTranslator(n_blocks=1).eval()
    return ops_for(model, settings, torch.device("cpu")), settings


def test_largest_map_is_the_full_size_128_channel_map(cuda_ops):
    ops, _ = cuda_ops
    # the first down block's conv writes (1, 2 * ngf, H, W) before its blur-pool; 6: padding margin
    assert largest_map(ops, 100, 200, 3) == 128 * 106 * 206


def test_on_cuda_maps_past_the_32_bit_index_limit_run_tiled_whatever_the_budget(cuda_ops):
    ops, _ = cuda_ops
    budget = cuda_budget(79 * GiB, 0, 0)  # an idle 80 GB card: ~39.5 GiB
    h, w = 6000, 8000  # 48 MP, below the 50 MP the toolkit accepts
    assert untiled_bytes(ops, h, w, 3, 2) < budget  # the budget alone would run it whole...
    assert 64 * h * w > CUDA_INDEX_LIMIT  # ...with (1, 64, H, W) maps CUDA's reflection pad refuses
    assert not runs_untiled(ops, h, w, 3, 2, budget, "cuda")
    assert runs_untiled(ops, h, w, 3, 2, budget, "cpu")  # CPU kernels index with 64 bits
    # 4K (8.3 MP) and 16 MP are below the limit: untiled on that card; 20 MP is not
    assert runs_untiled(ops, 2160, 3840, 3, 2, budget, "cuda")
    assert runs_untiled(ops, 4000, 4000, 3, 2, budget, "cuda")
    assert not runs_untiled(ops, 4000, 5000, 3, 2, budget, "cuda")
    # and the budget still applies on CUDA
    assert not runs_untiled(ops, 2160, 3840, 3, 2, untiled_bytes(ops, 2160, 3840, 3, 2) - 1, "cuda")


@pytest.mark.parametrize("pads", [(3, 3, 3, 3), (1, 1, 1, 1), (3, 0, 0, 3), (0, 1, 1, 0), (2, 1, 0, 3)])
def test_reflect_pad_keeps_channels_last_and_equals_f_pad(pads):
    x = torch.randn(1, 8, 9, 11).to(memory_format=torch.channels_last)
    y = reflect_pad(x, pads, keep_layout=True)
    assert y.is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(y, F.pad(x.contiguous(), pads, mode="reflect"))
    # half precision and contiguous input (F.pad itself) give the same values
    assert torch.equal(reflect_pad(x.half(), pads, keep_layout=True), F.pad(x.half(), pads, mode="reflect"))
    assert torch.equal(reflect_pad(x.contiguous(), pads, keep_layout=True), y)


def test_reflect_pad_refuses_a_map_too_small_to_reflect():
    x = torch.randn(1, 4, 3, 3).to(memory_format=torch.channels_last)
    with pytest.raises(ValueError, match="needs a map larger than 3x3"):
        reflect_pad(x, (3, 3, 3, 3), keep_layout=True)


def test_translate_with_channels_last_reflect_pads_matches_the_network(monkeypatch):
    """The fast path (exact mode: fp32, channels_last on this CPU) with CUDA's layout-keeping pad."""
    from scenimefy.inference import ops as ops_module

    model = ScenimefyTranslator(ngf=8, n_blocks=2).eval()
    x = torch.rand(1, 3, 40, 52) * 2 - 1
    assert choose_settings(torch.device("cpu"), exact=True).channels_last
    ref = translate(model, x, exact=True)
    calls = []
    original = ops_module.reflect_pad

    def keep_layout(t, pads, keep_layout=None):
        calls.append(t.is_contiguous(memory_format=torch.channels_last))
        return original(t, pads, keep_layout=True)

    monkeypatch.setattr(ops_module, "reflect_pad", keep_layout)
    got = translate(model, x, exact=True)
    assert len(calls) == 6 and all(calls)  # stem, 2 x 2 residual convs, head: all channels_last
    torch.testing.assert_close(got, ref, rtol=0, atol=1e-5)
    torch.testing.assert_close(got, model(x), rtol=0, atol=1e-4)


def test_no_tf32_is_a_no_op_off_cuda_and_turns_tf32_off_on_cuda():
    before = _tf32_flags()
    with no_tf32("cpu"):
        assert _tf32_flags() == before
    with no_tf32("cuda", enabled=False):
        assert _tf32_flags() == before
    with no_tf32(torch.device("cuda")):
        assert torch.backends.cudnn.allow_tf32 is False and torch.backends.cuda.matmul.allow_tf32 is False
    assert _tf32_flags() == before


def test_no_tf32_is_reference_counted_across_threads():
    """The old per-call save/restore: A enters, B enters, A leaves and restores TF32 under B."""
    torch.backends.cudnn.allow_tf32 = True
    before = _tf32_flags()
    a_in, b_in, a_out, b_checked = (threading.Event() for _ in range(4))
    seen = {}

    def a():
        with no_tf32("cuda"):
            a_in.set()
            b_in.wait(10)
        a_out.set()

    def b():
        a_in.wait(10)
        with no_tf32("cuda"):
            b_in.set()
            a_out.wait(10)
            seen["b after a left"] = torch.backends.cudnn.allow_tf32
        b_checked.set()

    threads = [threading.Thread(target=a), threading.Thread(target=b)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    assert seen == {"b after a left": False}
    assert _tf32_flags() == before  # restored once the last one left

    # many threads entering and leaving in any order
    def worker(i):
        for _ in range(50):
            with no_tf32("cuda"):
                assert torch.backends.cudnn.allow_tf32 is False

    errors = []

    def run(i):
        try:
            worker(i)
        except AssertionError as e:
            errors.append(e)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors and _tf32_flags() == before


def test_no_tf32_restores_flags_set_through_torchs_new_precision_api():
    b = torch.backends
    saved = _tf32_flags()
    try:
        b.cudnn.conv.fp32_precision, b.cudnn.rnn.fp32_precision, b.cuda.matmul.fp32_precision = "tf32", "ieee", "tf32"
        before = _tf32_flags()
        assert before[0] == "precision"
        with no_tf32("cuda"):
            assert _tf32_flags() == ("precision", "ieee", "ieee", "ieee")
        assert _tf32_flags() == before
    finally:
        b.cudnn.allow_tf32, b.cuda.matmul.allow_tf32 = True, False
    assert _tf32_flags() == saved
