import pytest

from scenimefy.inference.runtime import cpu_probe_bf16


@pytest.fixture(params=["bf16", "fp32"])
def fast_path(request, monkeypatch) -> str:
    """Run a test on the bf16 and on the fp32 fast path, forced with SCENIMEFY_CPU_BF16.

    fp32 runs everywhere; bf16 only where the CPU has native bf16 (elsewhere oneDNN emulates it,
    slowly, and the toolkit never chooses it).
    """
    if request.param == "bf16" and not cpu_probe_bf16():
        pytest.skip("no native bf16 on this CPU")
    monkeypatch.setenv("SCENIMEFY_CPU_BF16", "1" if request.param == "bf16" else "0")
    return request.param
