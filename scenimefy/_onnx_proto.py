"""Prototype: ONNX export of the full and the lite translator, verified with onnxruntime.

R&D code for issue 14 (docs/lite-notes.md has the findings). Both translators export through
the dynamo-based exporter of ``torch.onnx.export(..., dynamo=True)`` (onnxscript), which is
the default in torch 2.13; the TorchScript exporter (``dynamo=False``) still works there but is
deprecated. Height and width are dynamic, constrained to multiples of ``2**n_down`` (4 for the
full translator, 8 for the default lite one) as ``torch.export`` derived dims, so the graph
holds no size guards beyond what the network needs. Reflect padding becomes ``Pad(reflect)``,
InstanceNorm ``InstanceNormalization`` (or its decomposition), the blur-pool a grouped
``Conv`` and the blur upsampling a grouped ``ConvTranspose`` with a ``Slice``.
"""

from __future__ import annotations

import copy
import os
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

DEFAULT_OPSET = 18


def size_multiple(model: nn.Module) -> int:
    """Input sides must be multiples of this: 2 ** (number of downsamplings)."""
    return 2 ** len(model.down)


def export_onnx(
    model: nn.Module,
    path: str | os.PathLike,
    *,
    opset: int = DEFAULT_OPSET,
    dynamic: bool = True,
    fp16: bool = False,
    example_size: tuple[int, int] | None = None,
    dynamo: bool = True,
) -> Path:
    """Write ``model`` (a translator) to ``path`` as one self-contained ONNX file.

    Args:
        opset: ONNX opset (18: the dynamo exporter's native one, onnxruntime >= 1.14).
        dynamic: batch, height and width dynamic (height/width multiples of ``size_multiple``);
            else fixed at ``example_size``.
        fp16: weights and activations in float16 (input and output too). onnxruntime's CPU
            provider runs it (max |diff| ~2e-3 to fp32 on a tiny model) but upcasts around
            the ops it has no fp16 kernels for: meant for GPU providers.
        example_size: the (H, W) traced with (default 8 * multiple a side, a size no one uses).
        dynamo: the torch.export-based exporter (default); False: the deprecated TorchScript one.
    """
    path = Path(path)
    multiple = size_multiple(model)
    h, w = example_size or (8 * multiple + multiple, 8 * multiple)
    if h % multiple or w % multiple:
        raise ValueError(f"example_size must be multiples of {multiple}, got {(h, w)}")
    dtype = torch.float16 if fp16 else torch.float32
    param = next(model.parameters())
    model = model.eval()
    if fp16:
        model = copy.deepcopy(model)
        for p in model.parameters():  # not .to(dtype): diffusers warns about fp32-only modules
            p.data = p.data.to(torch.float16)
    x = torch.zeros(1, model.config.in_channels, h, w, dtype=dtype, device=param.device)
    path.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if dynamo:
            shapes = None
            if dynamic:
                batch = torch.export.Dim("batch", min=1, max=1024)
                # Derived dims: H = multiple * h_blocks, so strided / transposed ops line up.
                hb = torch.export.Dim("h_blocks", min=2, max=4096)
                wb = torch.export.Dim("w_blocks", min=2, max=4096)
                shapes = {"x": {0: batch, 2: multiple * hb, 3: multiple * wb}}
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
            program.save(str(path), external_data=False)
        else:
            axes = {"image": {0: "batch", 2: "height", 3: "width"}, "output": {0: "batch", 2: "height", 3: "width"}}
            torch.onnx.export(
                model,
                (x,),
                str(path),
                input_names=["image"],
                output_names=["output"],
                opset_version=opset,
                dynamo=False,
                dynamic_axes=axes if dynamic else None,
            )
    return path


def session(path: str | os.PathLike, threads: int | None = None):
    """An onnxruntime CPU session (``threads``: intra-op threads, default the runtime's)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def run_onnx(sess, x: torch.Tensor) -> torch.Tensor:
    """Run a session on a (B, 3, H, W) tensor; the output as a float32 tensor."""
    dtype = np.float16 if sess.get_inputs()[0].type == "tensor(float16)" else np.float32
    (y,) = sess.run(None, {sess.get_inputs()[0].name: x.detach().cpu().numpy().astype(dtype)})
    return torch.from_numpy(y.astype(np.float32))


@torch.no_grad()
def verify_onnx(path: str | os.PathLike, model: nn.Module, image: torch.Tensor, *, sess=None) -> dict:
    """Compare the ONNX file with ``model(image)`` in fp32 eager PyTorch.

    ``image``: (B, 3, H, W) in [-1, 1], sides multiples of ``size_multiple(model)``.
    Returns ``{"max_abs", "mean_abs", "shape"}`` (|difference| in output units, [-1, 1]).
    """
    sess = sess or session(path)
    ref = model.float().eval()(image.float())
    out = run_onnx(sess, image)
    if out.shape != ref.shape:
        raise AssertionError(f"ONNX output shape {tuple(out.shape)} != PyTorch {tuple(ref.shape)}")
    diff = (out - ref).abs()
    return {"max_abs": float(diff.max()), "mean_abs": float(diff.mean()), "shape": tuple(out.shape)}


def time_onnx(sess, x: torch.Tensor, reps: int = 5) -> list[float]:
    """Wall seconds of ``reps`` runs (after one warm-up)."""
    run_onnx(sess, x)
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        run_onnx(sess, x)
        times.append(time.perf_counter() - start)
    return times
