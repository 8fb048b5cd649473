"""Where and how inference runs: compute dtype and layout per device, and the process-wide
state ``translate`` changes while it runs (scoped here, restored afterwards).

``SCENIMEFY_CPU_BF16=0|1`` forces the CPU capability probe (tests run both paths anywhere).
"""

from __future__ import annotations

import ctypes
import os
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch

from scenimefy._tf32 import no_tf32

#: How the fast path picks the kernel of each convolution (docs/inference.md, "Kernel choice"):
#: ``auto`` (default): per layer and map size, the fastest of its kernels on this machine, found by a
#: short timed trial on first use and cached on disk (``scenimefy.inference.kernels``);
#: ``heuristic``: the same choice from a fixed rule, no trial; ``direct``: oneDNN's direct convs
#: everywhere; ``winograd``: Winograd F(6x6, 3x3) in fp32 for every 3x3 conv and fused blur-upsampling.
KERNELS_ENV = "SCENIMEFY_CONV_KERNELS"
KERNEL_MODES = ("auto", "heuristic", "direct", "winograd")
#: Older switch, still honoured: "0" means ``SCENIMEFY_CONV_KERNELS=direct``.
WINOGRAD_ENV = "SCENIMEFY_WINOGRAD"
#: Output tile of forced Winograd: F(6x6, 3x3) does 5.1x fewer multiplications than a direct conv
#: (F(4x4, 3x3): 4x) and measured 7-8% faster over the whole network at 512-1024 px on an idle
#: machine; its ~4x larger rounding error (~3e-6 relative) stays far below an 8-bit level, its
#: transformed weights take 1.8x F(4x4)'s (docs/inference.md).
WINOGRAD_TILE = 6
#: Forces the CPU capability probe: "1" runs the bf16 path (emulated, slowly, where the CPU lacks
#: bf16), "0" the fp32 path; unset or anything else probes the CPU.
FORCE_BF16_ENV = "SCENIMEFY_CPU_BF16"


def cpu_has_fast_bf16() -> bool:
    """Whether this CPU multiplies bf16 natively (AVX512-BF16 or AMX) and oneDNN can use it.

    Without it bf16 convs are emulated and slower than fp32, so the fast path stays in fp32.
    ``SCENIMEFY_CPU_BF16=0|1`` overrides the answer.
    """
    forced = os.environ.get(FORCE_BF16_ENV)
    if forced in ("0", "1"):
        return forced == "1"
    return cpu_probe_bf16()


#: ``ONEDNN_MAX_CPU_ISA`` caps below bf16: under them oneDNN emulates bf16 even where the hardware
#: has it. Any other value (``DEFAULT``, ``ALL``, the bf16 ISAs and above, or a name oneDNN does not
#: know) leaves oneDNN uncapped, as oneDNN itself reads it.
_BELOW_BF16_ISAS = ("SSE41", "AVX", "AVX2", "AVX2_VNNI", "AVX2_VNNI_2", "AVX512_CORE", "AVX512_CORE_VNNI")


def cpu_probe_bf16() -> bool:
    """The hardware answer of :func:`cpu_has_fast_bf16` (as capped by ``ONEDNN_MAX_CPU_ISA``), ignoring
    ``SCENIMEFY_CPU_BF16``."""
    if not torch.backends.mkldnn.is_available():
        return False
    cap = (os.environ.get("ONEDNN_MAX_CPU_ISA") or os.environ.get("DNNL_MAX_CPU_ISA") or "").strip().upper()
    if cap in _BELOW_BF16_ISAS or cap.startswith("AVX512_MIC"):
        return False
    probes = ("_is_amx_tile_supported", "_is_avx512_bf16_supported")  # torch >= 2.1
    for name in probes:
        probe = getattr(torch.cpu, name, None)
        try:
            if probe is not None and probe():
                return True
        except RuntimeError:
            pass
    return False


@dataclass(frozen=True)
class ExecutionSettings:
    """How ``translate`` runs on one device: compute dtype, memory layout and conv kernels, and why."""

    dtype: torch.dtype
    channels_last: bool
    kernels: str = "direct"  # one of KERNEL_MODES: how each conv's kernel is chosen (KERNELS_ENV)
    stable_norms: bool = False  # exact mode: InstanceNorm statistics the slower, stable way (moments.channel_moments)
    reason: str = field(default="", compare=False)


def kernel_mode() -> str:
    """The conv kernel mode asked for by the environment (``SCENIMEFY_CONV_KERNELS``, default ``auto``)."""
    mode = os.environ.get(KERNELS_ENV, "").strip().lower()
    if mode:
        if mode not in KERNEL_MODES:
            raise ValueError(f"{KERNELS_ENV}={mode!r}: expected one of {', '.join(KERNEL_MODES)}")
        return mode
    return "direct" if os.environ.get(WINOGRAD_ENV) == "0" else "auto"


def choose_settings(
    device: torch.device, *, exact: bool = False, dtype: torch.dtype | None = None
) -> ExecutionSettings:
    """The fastest settings for ``device`` (``exact``: fp32; ``dtype`` overrides the choice).

    ``reason`` says in words what runs and why, e.g. for logs and benchmarks.
    """
    if exact:
        dtype, why = torch.float32, "exact mode: fp32"
    elif dtype is not None:
        why = f"{str(dtype).replace('torch.', '')} as requested"
    elif device.type == "cuda":
        dtype, why = torch.float16, "CUDA: fp16"
    elif device.type == "cpu":
        forced = os.environ.get(FORCE_BF16_ENV) in ("0", "1")
        if cpu_has_fast_bf16():
            dtype = torch.bfloat16
            why = f"bf16 ({FORCE_BF16_ENV}=1)" if forced else "bf16: the CPU has native bf16 (AVX512-BF16 or AMX)"
        else:
            dtype = torch.float32
            why = f"fp32 ({FORCE_BF16_ENV}=0)" if forced else "fp32: the CPU has no native bf16"
    else:
        dtype, why = torch.float32, f"{device.type}: fp32"
    if device.type == "cpu":
        # oneDNN's channels_last kernels are the fast ones for both fp32 and bf16 here.
        channels_last = torch.backends.mkldnn.is_available()
    else:
        channels_last = device.type == "cuda" and dtype in (torch.float16, torch.bfloat16)
    layout = "channels_last" if channels_last else "contiguous"
    # Only CPU convs have a choice: Winograd (always in fp32: in bf16 its transforms cost 2-5x the
    # direct conv's rounding error, docs/winograd-notes.md) against oneDNN's direct conv in the
    # compute dtype. Exact mode keeps the reference arithmetic: direct fp32.
    kernels = "direct"
    if not exact and device.type == "cpu" and channels_last and dtype in (torch.float32, torch.bfloat16):
        kernels = kernel_mode()
    algorithm = {
        "direct": "direct convs",
        "auto": "per-layer conv kernels timed on this machine (direct or Winograd; kernel cache)",
        "heuristic": "per-layer conv kernels by a fixed rule (direct or Winograd; no trial)",
        "winograd": f"Winograd F({WINOGRAD_TILE}x{WINOGRAD_TILE}, 3x3) in fp32 for 3x3 convs, fused blur-upsampling",
    }[kernels]
    return ExecutionSettings(dtype, channels_last, kernels, exact, reason=f"{why}, {layout}, {algorithm}")


@contextmanager
def inference_state(device: torch.device, *, exact: bool) -> Iterator[None]:
    """Every process-wide setting ``translate`` changes, for the duration of one call.

    Both are restored on exit, also when the call raises: TF32 (off in exact mode, :func:`no_tf32`)
    and glibc's allocator tuning (freed large blocks reused on CPU, see below).
    """
    with no_tf32(device, exact), _reuse_freed_memory(device):
        yield


# Winograd runs bands of an image concurrently on Python threads with single-threaded ops (an
# OpenMP barrier per op costs milliseconds whenever another process holds a core). PyTorch's
# intra-op thread count is one process-wide setting, so it is lowered for as long as any such
# call runs and restored when the last one ends, whatever order concurrent calls finish in.
_threads_lock = threading.Lock()
_threads_users = 0
_threads_before = 1


@contextmanager
def single_threaded_ops() -> Iterator[None]:
    """PyTorch ops run on one thread each while inside (reference-counted across threads)."""
    global _threads_users, _threads_before
    with _threads_lock:
        if _threads_users == 0:
            _threads_before = torch.get_num_threads()
            torch.set_num_threads(1)
        _threads_users += 1
    try:
        yield
    finally:
        with _threads_lock:
            _threads_users -= 1
            if _threads_users == 0:
                torch.set_num_threads(_threads_before)


# glibc hands every block above 32 MB to the OS on free() and maps fresh pages for the next one;
# faulting them in costs ~0.7 ms per MB on this machine, more than an elementwise op's own work
# (F.batch_norm on a 64 MB map: 43 ms with fresh pages, 10 ms with reused ones; a conv output
# pays the same). During ``translate`` large blocks therefore come from the heap, where freed
# ones are reused, and afterwards the defaults are restored and the free memory is returned.
_M_TRIM_THRESHOLD, _M_MMAP_MAX = -1, -4  # mallopt parameters (malloc.h)
_GLIBC_DEFAULTS = {_M_MMAP_MAX: 65536, _M_TRIM_THRESHOLD: 128 * 1024}
_heap_lock = threading.Lock()
_heap_users = 0


def _glibc():
    if not sys.platform.startswith("linux") or os.environ.get("SCENIMEFY_MALLOC_TUNING", "1") == "0":
        return None
    try:
        libc = ctypes.CDLL(None)
        knobs = ("gnu_get_libc_version", "mallopt", "malloc_trim")  # only glibc has these
        return libc if all(hasattr(libc, name) for name in knobs) else None
    except (OSError, AttributeError):
        return None


_LIBC = _glibc()


def release_free_memory(device: torch.device) -> None:
    """Return the heap's free blocks to the OS (between tiling segments, whose blocks differ in size)."""
    if _LIBC is not None and device.type == "cpu":
        _LIBC.malloc_trim(0)


@contextmanager
def _reuse_freed_memory(device: torch.device) -> Iterator[None]:
    global _heap_users
    if _LIBC is None or device.type != "cpu":
        yield
        return
    with _heap_lock:
        _heap_users += 1
        if _heap_users == 1:
            _LIBC.mallopt(_M_MMAP_MAX, 0)
            _LIBC.mallopt(_M_TRIM_THRESHOLD, 2**31 - 1)
    try:
        yield
    finally:
        with _heap_lock:
            _heap_users -= 1
            if _heap_users == 0:
                for param, value in _GLIBC_DEFAULTS.items():
                    _LIBC.mallopt(param, value)
                _LIBC.malloc_trim(0)
