"""ONNX export of any translator (full or lite), and onnxruntime as a second CPU runtime.

    path = export_onnx(model, "shinkai.onnx")            # dynamic batch / height / width, fp32
    check = verify_onnx(path, model, image)              # onnxruntime vs PyTorch fp32 eager
    runtime = OnnxTranslator("shinkai.onnx")             # what ScenimefyPipeline(backend="onnx") runs
    y = runtime(x)                                       # (B, 3, H, W) in [-1, 1] -> float32

Export goes through ``torch.onnx.export(..., dynamo=True)`` (torch.export + onnxscript, the
default exporter of torch 2.13; the TorchScript one is deprecated). Height and width are
declared as multiples of the network's resampling factor (``H = 4 * h_blocks`` as a derived
``torch.export.Dim``), so the graph holds no size-specific constants: one file serves every size.
The graph uses only ``Pad`` (reflect), ``Conv``, ``InstanceNormalization``, ``Relu``,
``ConvTranspose`` (the blur upsampling, grouped), ``Slice``, ``Add`` and ``Tanh``, opset 18.
The file is written atomically (``outputs.atomic_output``) and records in its metadata the
translator's class, config and size multiple, which :class:`OnnxTranslator` reads back.

onnxruntime has no bf16 CPU kernels for these ops: on a CPU with native bf16 the default
``translate`` path is ~2x faster than onnxruntime fp32 (docs/lite.md); ONNX is for portability
(other runtimes, browsers, mobile, GPU providers) and as a second CPU runtime. ``fp16=True``
exports float16 weights and activations, meant for GPU providers.
"""

from __future__ import annotations

import copy
import json
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from scenimefy.inference.outputs import atomic_output
from scenimefy.models.loading import model_fingerprint, size_multiple

#: The dynamo exporter's native opset (onnxruntime >= 1.14 runs it).
DEFAULT_OPSET = 18
INSTALL_HINT = 'ONNX export and the onnx backend need the [onnx] extra: pip install "scenimefy[onnx]"'
_META = "scenimefy."


class OnnxUnavailableError(ImportError):
    """onnx / onnxscript / onnxruntime are not installed; the message says how to get them."""


def require(*modules: str):
    """Import ``modules`` (the last one is returned); a missing one is an ``OnnxUnavailableError``."""
    imported = None
    for module in modules:
        try:
            imported = __import__(module)
        except ImportError:
            raise OnnxUnavailableError(f"{module} is not installed. {INSTALL_HINT}") from None
    return imported


def export_onnx(
    model: nn.Module,
    path: str | os.PathLike,
    *,
    opset: int = DEFAULT_OPSET,
    dynamic: bool = True,
    fp16: bool = False,
    example_size: tuple[int, int] | None = None,
) -> Path:
    """Write ``model`` (a full or lite translator) to ``path`` as one self-contained ONNX file.

    Args:
        opset: ONNX opset of the graph.
        dynamic: batch, height and width dynamic (height and width multiples of the network's
            resampling factor, ``size_multiple(model)``); else every size fixed at ``example_size``.
        fp16: float16 weights, input and output (for GPU providers; onnxruntime's CPU provider
            runs it too, ~2e-3 from fp32).
        example_size: (H, W) traced; default 9 x 8 multiples, a size nobody uses, so a dynamic
            graph that still held a traced size would fail its verification at any other size.
    """
    require("onnxscript")
    path = Path(path)
    multiple = size_multiple(model)
    h, w = example_size or (9 * multiple, 8 * multiple)
    if h % multiple or w % multiple or min(h, w) < 2 * multiple:
        raise ValueError(f"the example size must be multiples of {multiple}, at least {2 * multiple}, got {h}x{w}")
    dtype = torch.float16 if fp16 else torch.float32
    model = copy.deepcopy(model).eval().cpu()
    for p in model.parameters():  # not .to(dtype): diffusers warns about its fp32-only modules
        p.data = p.data.to(dtype)
    x = torch.zeros(1, model.config.in_channels, h, w, dtype=dtype)
    shapes = None
    if dynamic:
        batch = torch.export.Dim("batch", min=1, max=1024)
        # Derived dims: H = multiple * h_blocks, so the strided and transposed ops' size guards hold.
        hb = torch.export.Dim("h_blocks", min=2, max=8192 // multiple)
        wb = torch.export.Dim("w_blocks", min=2, max=8192 // multiple)
        shapes = {"x": {0: batch, 2: multiple * hb, 3: multiple * wb}}
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # the exporter's deprecation and "falling back" chatter
        program = torch.onnx.export(
            model,
            (x,),
            input_names=["image"],
            output_names=["output"],
            opset_version=opset,
            dynamo=True,
            dynamic_shapes=shapes,
            external_data=False,
            optimize=True,
            verbose=False,
        )
    config = {k: v for k, v in dict(model.config).items() if not k.startswith("_")}
    program.model.metadata_props.update(
        {
            f"{_META}class": type(model).__name__,
            f"{_META}config": json.dumps(config, default=list),
            f"{_META}size_multiple": str(multiple),
            f"{_META}dtype": "float16" if fp16 else "float32",
        }
    )
    with atomic_output(path) as tmp:
        program.save(str(tmp), external_data=False)
    return path


def cached_export(model: nn.Module, path: str | os.PathLike | None = None) -> Path:
    """``path`` if it exists, else ``model`` exported there (dynamic, fp32) first; default path:
    ``<scenimefy cache>/onnx/<class>-<weights fingerprint>.onnx``, so each set of weights is
    exported once."""
    if path is None:
        from scenimefy.hub.styles import cache_root

        path = cache_root() / "onnx" / f"{type(model).__name__}-{model_fingerprint(model)}.onnx"
    path = Path(path)
    if not path.is_file():
        export_onnx(model, path)
    return path


def session(path: str | os.PathLike, threads: int | None = None):
    """An onnxruntime CPU session, all graph optimisations on (``threads``: intra-op threads)."""
    ort = require("onnxruntime")
    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3  # errors only
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


class OnnxTranslator:
    """An exported translator run by onnxruntime: ``runtime(x)`` computes what ``model(x)`` does.

    ``x`` is (B, 3, H, W) in [-1, 1] with H and W multiples of :attr:`size_multiple` (or exactly
    the exported size of a static model); the result is float32 on the CPU.
    """

    def __init__(self, path: str | os.PathLike, threads: int | None = None) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"{self.path}: no such ONNX file")
        try:
            self.session = session(self.path, threads)
        except OnnxUnavailableError:
            raise
        except Exception as err:  # onnxruntime raises its own types for invalid files
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise ValueError(f"{self.path}: not a loadable ONNX model ({first})") from None
        meta = self.session.get_modelmeta().custom_metadata_map
        self.metadata = {k[len(_META) :]: v for k, v in meta.items() if k.startswith(_META)}
        self.size_multiple = int(self.metadata.get("size_multiple", 4))
        (inp,) = self.session.get_inputs()
        self.input_name = inp.name
        self.dtype = np.float16 if inp.type == "tensor(float16)" else np.float32
        dims = inp.shape[2:]
        self.fixed_size = tuple(dims) if all(isinstance(d, int) for d in dims) else None
        # A static export also fixes the batch (1): larger batches then run one image at a time.
        self.fixed_batch = inp.shape[0] if isinstance(inp.shape[0], int) else None

    @property
    def class_name(self) -> str | None:
        return self.metadata.get("class")

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        if self.fixed_size is not None and (h, w) != self.fixed_size:
            raise ValueError(
                f"{self.path.name} was exported for {self.fixed_size[0]}x{self.fixed_size[1]} only (--static); "
                f"got {h}x{w}: export it with dynamic sizes"
            )
        if h % self.size_multiple or w % self.size_multiple:
            raise ValueError(f"H and W must be multiples of {self.size_multiple}, got {h}x{w}")
        feed = x.detach().cpu().numpy().astype(self.dtype, copy=False)
        step = self.fixed_batch or len(feed)
        outs = [self.session.run(None, {self.input_name: feed[i : i + step]})[0] for i in range(0, len(feed), step)]
        y = outs[0] if len(outs) == 1 else np.concatenate(outs)
        return torch.from_numpy(y.astype(np.float32, copy=False))


@dataclass(frozen=True)
class OnnxCheck:
    """onnxruntime vs PyTorch fp32 eager on one batch: |difference| in output units ([-1, 1])."""

    max_abs: float
    mean_abs: float
    shape: tuple[int, ...]

    @property
    def max_levels(self) -> float:
        """The largest difference in 8-bit levels (an output unit is 127.5 levels)."""
        return self.max_abs * 127.5


@torch.no_grad()
def verify_onnx(
    path: str | os.PathLike, model: nn.Module, image: torch.Tensor, *, runtime: OnnxTranslator | None = None
) -> OnnxCheck:
    """Compare the ONNX file with ``model(image)`` in fp32 eager PyTorch.

    ``image``: (B, 3, H, W) in [-1, 1], sides multiples of ``size_multiple(model)``.
    """
    runtime = runtime or OnnxTranslator(path)
    reference = copy.deepcopy(model).float().eval().cpu()(image.float().cpu())
    out = runtime(image)
    if out.shape != reference.shape:
        raise AssertionError(f"ONNX output shape {tuple(out.shape)} != PyTorch {tuple(reference.shape)}")
    diff = (out - reference).abs()
    return OnnxCheck(float(diff.max()), float(diff.mean()), tuple(out.shape))
