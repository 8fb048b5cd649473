"""Per-layer kernel choice: which implementation runs each convolution, measured on the machine.

A conv can run as oneDNN's direct conv (in the compute dtype: bf16 on CPUs with native bf16,
else fp32) or as Winograd F(4x4, 3x3) / F(6x6, 3x3) in fp32 (``inference.winograd``); an
up block's blur-upsample + conv can also run fused (``ops.BlurUpConv``). Which is fastest depends
on the layer's widths, the map's size and the CPU: Winograd's GEMMs save 4-5x the multiplications,
but its transforms are memory traffic that a narrow layer (the lite student's 16-64 channels) or a
small frame does not amortise, and on a CPU with native bf16 the direct bf16 conv already runs at
twice the fp32 peak. A rule tuned on one model, size or CPU loses on another (issue 22: the
student lost 1.6-2.6x on an AVX2 CPU when every 3x3 conv took Winograd), so:

* ``auto`` (default): on the first call that meets a layer shape (widths, kernel, padding,
  dtype, and the output map's size in half-octave buckets), every candidate runs on that very
  input a few times, interleaved, and the fastest by its best time wins. The decision is cached in
  memory and on disk (``kernels-<machine>.json`` in ``SCENIMEFY_CACHE_DIR``, default
  ``~/.cache/scenimefy``), keyed by the CPU model, its ISA caps, the torch version and the thread
  count, so later processes on the machine start with it (a trial taken while the load average is
  above the core count stays in memory only: the next process tries again). A trial costs a few runs of the layer:
  milliseconds for the student, about a second in all for the full model at 1024 px.
* ``heuristic``: no trial; :func:`heuristic_choice` (a rule fitted to the trials of
  ``benchmarks/bench_kernels.py`` on the CPUs we have seen).
* ``direct`` / ``winograd``: one kernel everywhere (benchmarks and tests force these).

Every candidate computes the same conv to fp32 rounding, so the choice never changes the
result by more than an fp32 Winograd's ~1e-6 relative error.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import math
import os
import platform
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import torch

from scenimefy.inference.ops import Op

logger = logging.getLogger(__name__)

CACHE_ENV = "SCENIMEFY_CACHE_DIR"


class Seq(Op):
    """Ops run one after another as one op (e.g. BlurUp then its conv: one alternative of a choice)."""

    def __init__(self, *ops: Op) -> None:
        self.ops = ops
        self.factor = math.prod(op.factor for op in ops)
        self.out_channels = next(op.out_channels for op in reversed(ops) if hasattr(op, "out_channels"))

    def halo(self, m: int) -> int:
        for op in reversed(self.ops):
            m = op.halo(m)
        return m

    def __call__(self, x, rows, cols, ctx):
        for op in self.ops:
            x, rows, cols = op(x, rows, cols, ctx)
        return x, rows, cols


class ConvChoice(Op):
    """One conv layer with several kernels that compute the same thing; ``chooser`` picks one per call.

    ``alternatives`` maps a kernel name to a factory of its op; ops are built on first use (a
    Winograd weight of the full model's trunk takes 7x the direct one's memory) and dropped again
    when the trial gives them no size to run at.
    """

    def __init__(
        self,
        layer: str,
        signature: str,
        alternatives: dict[str, Callable[[], Op]],
        *,
        mode: str,
        compute_dtype: torch.dtype,
    ) -> None:
        """layer: its name in the model; signature: its shape in words (widths, kernel, padding);
        alternatives: kernel name -> op factory, the first being the direct conv (the fallback, and
            the kernel with the largest halo and maps, which tiling sizes for);
        mode: ``auto`` (timed trial) or ``heuristic``; compute_dtype: the path's dtype."""
        self.layer, self.signature, self.mode, self.compute_dtype = layer, signature, mode, compute_dtype
        self.factories = alternatives
        self.built: dict[str, Op] = {}
        self.used: set[str] = set()
        probe = self.op(next(iter(alternatives)))
        self.factor, self.out_channels = probe.factor, probe.out_channels
        self.chosen: dict[str, str] = {}  # map size -> kernel, for reports

    def op(self, name: str) -> Op:
        if name not in self.built:
            self.built[name] = self.factories[name]()
        return self.built[name]

    def halo(self, m: int) -> int:
        # Tiles must suit whichever kernel runs: the direct kernel's halo is the largest (BlurUp then
        # a conv needs one input line more than the fused conv), so it stands for all.
        return self.op(next(iter(self.factories))).halo(m)

    def __call__(self, x, rows, cols, ctx):
        return self.op(CHOOSER.pick(self, x, rows, cols, ctx))(x, rows, cols, ctx)

    def release_unused(self) -> None:
        for name in list(self.built):
            if name not in self.used and name != next(iter(self.factories)):
                del self.built[name]


def bucket(n: int) -> int:
    """A map extent rounded to half octaves (16, 23, 32, 45, 64, 91, 128, ...): one trial per bucket."""
    return round(2 ** (round(2 * math.log2(max(n, 1))) / 2))


def heuristic_choice(
    names: list[str], in_channels: int, out_channels: int, height: int, width: int, compute_dtype: torch.dtype
) -> str:
    """The kernel a layer takes without a trial (``SCENIMEFY_CONV_KERNELS=heuristic``).

    Fitted to ``benchmarks/bench_kernels.py``: fp32 Winograd pays only where its GEMMs are wide
    (in x out channels >= 64 x 128: every conv of the full translator but its stem and head, none of
    the student's) and the map large enough to amortise the transforms (>= 64 x 64 pixels); on a
    bf16 CPU the direct bf16 conv (twice the fp32 peak) wins nearly everywhere.
    """
    wide = in_channels * out_channels >= 64 * 128 and height * width >= 64 * 64
    if compute_dtype == torch.float32 and wide:
        preferred = [n for n in names if "winograd6" in n]
        if preferred:
            return preferred[0]
    return names[0]


def machine_key() -> dict:
    """What a cached decision depends on besides the layer: the CPU, its ISA caps, torch."""
    isa = os.environ.get("ONEDNN_MAX_CPU_ISA") or os.environ.get("DNNL_MAX_CPU_ISA") or ""
    return {**_cpu(), "onednn_isa": isa, "torch": torch.__version__}


@functools.cache
def _cpu() -> dict:
    """The CPU model and ATen's ISA (read once: every conv call looks its decision up)."""
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    capability = getattr(torch.backends.cpu, "get_cpu_capability", lambda: "")()
    return {"cpu": model, "capability": capability}


def machine_busy() -> bool:
    """Whether other work holds the cores (1-minute load average above their count): a trial taken
    then can crown the kernel that happened to run between bursts, so it is kept in memory only
    and the next process on the machine tries again."""
    try:
        return os.getloadavg()[0] > (os.cpu_count() or 1) + 0.5
    except OSError:
        return False


def cache_dir() -> Path:
    configured = os.environ.get(CACHE_ENV)
    if configured:
        return Path(configured)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "scenimefy"


class Chooser:
    """Decides, caches and reports the kernel of each conv layer (one per process: :data:`CHOOSER`)."""

    #: Candidates slower than this multiple of the best first run are not timed again.
    PRUNE = 1.5

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._decisions: dict[str, dict] = {}
        self._loaded_from: Path | None = None

    # ------------------------------------------------------------------ cache
    def _path(self) -> Path:
        return _cache_file(cache_dir(), json.dumps(machine_key(), sort_keys=True))

    def _load(self) -> None:
        path = self._path()
        if self._loaded_from == path:
            return
        self._loaded_from, self._decisions = path, {}
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            if data.get("machine") == machine_key():
                self._decisions = dict(data.get("decisions", {}))
        except (OSError, ValueError, AttributeError):
            pass  # no cache yet, or unreadable: trials rebuild it

    def _save(self) -> None:
        path = self._path()
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            try:  # other processes may have added decisions since we read the file
                theirs = json.loads(path.read_text(encoding="utf-8")).get("decisions", {})
            except (OSError, ValueError, AttributeError):
                theirs = {}
            data = {"machine": machine_key(), "decisions": {**theirs, **self._decisions}}
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".kernels-", suffix=".json")
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump(data, f, indent=1, sort_keys=True)
            os.replace(tmp, path)
        except OSError as err:  # a read-only home: decisions stay in memory for this process
            logger.info("kernel choice cache not written (%s): %s", path, err)

    def clear(self) -> None:
        """Forget the in-memory decisions (the disk cache is reread on next use)."""
        with self._lock:
            self._decisions, self._loaded_from = {}, None

    # ------------------------------------------------------------------ choice
    @staticmethod
    def key(op: ConvChoice, x: torch.Tensor) -> str:
        h, w = x.shape[-2:]
        return f"{op.signature} {str(x.dtype).replace('torch.', '')} {bucket(h)}x{bucket(w)} t{torch.get_num_threads()}"

    def pick(self, op: ConvChoice, x: torch.Tensor, rows, cols, ctx) -> str:
        """The kernel ``op`` runs ``x`` with (a trial first if this shape is new)."""
        names = list(op.factories)
        if op.mode == "heuristic" or len(names) == 1:
            name = heuristic_choice(names, x.shape[1], op.out_channels, x.shape[-2], x.shape[-1], op.compute_dtype)
        else:
            key = self.key(op, x)
            with self._lock:
                self._load()
                decision = self._decisions.get(key)
                if decision is None or decision.get("choice") not in op.factories:
                    decision = self._decisions[key] = self._trial(op, x, rows, cols, ctx)
                    if not machine_busy():
                        self._save()
                name = decision["choice"]
                if name not in op.used:
                    op.used.add(name)
                    op.release_unused()
        op.used.add(name)
        op.chosen[f"{x.shape[-2]}x{x.shape[-1]}"] = name
        return name

    def _trial(self, op: ConvChoice, x, rows, cols, ctx) -> dict:
        """Time every candidate on ``x``, interleaved, and keep the fastest best time."""
        names = list(op.factories)
        best = dict.fromkeys(names, math.inf)
        alive = list(names)
        for rep in range(3):
            for name in alive:
                kernel = op.op(name)
                if rep == 0:
                    kernel(x, rows, cols, ctx)  # first run: plans, buffers, page faults
                start = time.perf_counter()
                kernel(x, rows, cols, ctx)
                best[name] = min(best[name], time.perf_counter() - start)
            fastest = min(best[n] for n in alive)
            alive = [n for n in alive if best[n] <= self.PRUNE * fastest]
            # A layer that takes long is measured well enough by fewer runs: bound the trial's cost.
            if len(alive) == 1 or fastest * len(alive) > 0.25 * (rep + 1):
                break
        choice = min(names, key=best.get)
        ms = {n: round(t * 1e3, 3) for n, t in best.items() if math.isfinite(t)}
        logger.debug("kernel choice %s: %s (%s)", self.key(op, x), choice, ms)
        return {"choice": choice, "ms": ms}

    def decisions(self) -> dict[str, dict]:
        with self._lock:
            self._load()
            return dict(self._decisions)


@functools.lru_cache(maxsize=16)
def _cache_file(folder: Path, machine: str) -> Path:
    return folder / f"kernels-{hashlib.sha1(machine.encode()).hexdigest()[:12]}.json"


CHOOSER = Chooser()


def describe(ops: list[Op]) -> list[str]:
    """One line per conv layer with a choice: the kernel it ran with at each map size so far."""
    lines = []
    for op in ops:
        if isinstance(op, ConvChoice) and op.chosen:
            items = list(op.chosen.items())
            sizes = ", ".join(f"{size}: {name}" for size, name in items[:4])
            sizes += f", ... ({len(items) - 4} more tile sizes)" if len(items) > 4 else ""
            lines.append(f"{op.layer} ({op.signature}): {sizes}")
    return lines
