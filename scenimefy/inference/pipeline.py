"""``ScenimefyPipeline``: load a translator, stylize images (PIL in, PIL out).

    pipe = ScenimefyPipeline.from_pretrained(style="shinkai")      # or a folder, .pth, repo id
    anime = pipe("photo.jpg")                                      # PIL.Image, input's size
    pipe.to("cuda", dtype=torch.float16)

Modes: ``"default"`` pads to a multiple of 4 (reflection), runs the fast inference path and
returns the input's size; ``"exact"`` is the same geometry in fp32 eager; ``"reference"``
reproduces the authors' demo bit for bit (bicubic resize to multiples of 4, truncation to uint8,
output at the resized size).

Backends: ``"torch"`` (default; the fast ``translate`` path) and ``"onnx"`` (an exported model
through onnxruntime on the CPU: ``from_pretrained(..., backend="onnx")``, ``scenimefy.inference.onnx``).
The translator may be the full one or a distilled lite one; config.json's ``_class_name`` decides.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from itertools import groupby
from pathlib import Path
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn
from tqdm.auto import tqdm

from scenimefy.data.images import ImageInput, LoadedImage, load_image
from scenimefy.data.pixels import to_model_range, to_uint8
from scenimefy.hub.translators import load_translator, resolve_source
from scenimefy.inference.engine import translate
from scenimefy.inference.graph import UnsupportedLayerError, check_supported
from scenimefy.inference.onnx import OnnxTranslator, cached_export
from scenimefy.inference.ops import NormStatsHook
from scenimefy.inference.runtime import no_tf32
from scenimefy.models.loading import size_multiple

__all__ = ["MIN_SIDE", "Backend", "Mode", "ScenimefyPipeline", "load_translator", "reference_size"]

Mode = Literal["default", "exact", "reference"]
Backend = Literal["torch", "onnx"]
#: The network needs reflect padding of 3 at full size and 1 at 1/4 size; smaller inputs are
#: upsampled to this side first and the result scaled back.
MIN_SIDE = 16


def _fast_path_serves(model: nn.Module) -> bool:
    try:
        check_supported(model)
    except UnsupportedLayerError:
        return False
    return True


class ScenimefyPipeline:
    """Photo -> anime scene with one translator (one style).

    ``translator`` is a PyTorch translator (full or lite; the ``"torch"`` backend) or an exported
    model run by onnxruntime (:class:`~scenimefy.inference.onnx.OnnxTranslator`, the ``"onnx"``
    backend). Both get the same pre- and post-processing; only :meth:`stylize_frames` differs.
    """

    def __init__(self, translator: nn.Module | OnnxTranslator, style: str | None = None) -> None:
        if isinstance(translator, OnnxTranslator):
            self.backend: Backend = "onnx"
            self.translator = translator
            self.size_multiple = translator.size_multiple
            self._fast = False
        else:
            self.backend = "torch"
            self.translator = translator.eval().requires_grad_(False)
            self.size_multiple = size_multiple(translator)
            # Lite configs that do not resample by exactly 4 run eagerly (fp32), not through translate().
            self._fast = _fast_path_serves(translator)
        self.style = style

    @classmethod
    def from_pretrained(
        cls,
        source: str | os.PathLike | None = None,
        *,
        style: str | None = None,
        subfolder: str | None = None,
        revision: str | None = None,
        cache_dir: str | os.PathLike | None = None,
        device: str | torch.device | None = None,
        dtype: torch.dtype | None = None,
        backend: Backend = "torch",
        onnx_path: str | os.PathLike | None = None,
        onnx_threads: int | None = None,
    ) -> ScenimefyPipeline:
        """Load from a local folder / ``.pth`` / Hub repo id, or from the style registry.

        ``from_pretrained(style="shinkai")`` and ``from_pretrained("shinkai")`` use the registry;
        with an explicit ``source``, ``style`` only labels the pipeline, or picks a per-style
        subfolder when the source holds one (``<source>/<style>/config.json``). The config's
        ``_class_name`` picks the architecture (full or lite translator).

        ``backend="onnx"`` runs the translator through onnxruntime on the CPU: ``onnx_path`` is
        an exported file to run as it is when it exists (the source is then not loaded at all);
        otherwise the source is exported there first (default: a file in the scenimefy cache
        named by the weights' fingerprint, so later calls reuse it). ``onnx_threads``: intra-op
        threads (default onnxruntime's).
        """
        if backend not in ("torch", "onnx"):
            raise ValueError(f"backend must be 'torch' or 'onnx', got {backend!r}")
        if backend == "onnx":
            if (device is not None and torch.device(device).type != "cpu") or dtype is not None:
                raise ValueError("the onnx backend runs on the CPU in the exported dtype (no device or dtype)")
            if onnx_path is not None and Path(onnx_path).is_file():
                return cls(OnnxTranslator(onnx_path, threads=onnx_threads), style=style)
            if onnx_path is not None and source is None and style is None:
                # Without a source, a missing file would be filled with the default style's export.
                raise FileNotFoundError(f"{onnx_path}: no such ONNX file (give a source to export it there)")
        elif onnx_path is not None:
            raise ValueError("onnx_path is for backend='onnx'")
        source, subfolder, style = resolve_source(source, style, subfolder, cache_dir)
        translator = load_translator(source, subfolder=subfolder, revision=revision, cache_dir=cache_dir)
        if backend == "onnx":
            path = cached_export(translator, onnx_path)
            return cls(OnnxTranslator(path, threads=onnx_threads), style=style)
        return cls(translator, style=style).to(device, dtype)

    @property
    def can_smooth_stats(self) -> bool:
        """Whether video stabilisation can smooth this translator's InstanceNorm statistics (the
        fast path only; the onnx backend and eager networks get the output filter alone)."""
        return self._fast

    def save_pretrained(self, path: str | os.PathLike) -> None:
        if self.backend == "onnx":
            raise ValueError("an onnx pipeline holds no PyTorch weights to save; copy its .onnx file instead")
        self.translator.save_pretrained(path)

    def to(self, device: str | torch.device | None = None, dtype: torch.dtype | None = None) -> ScenimefyPipeline:
        if dtype is not None and not dtype.is_floating_point:
            raise ValueError(f"dtype must be a floating point type, got {dtype}")
        if self.backend == "onnx":
            if (device is not None and torch.device(device).type != "cpu") or dtype is not None:
                raise ValueError("the onnx backend runs on the CPU in the exported dtype (use backend='torch')")
            return self
        if device is not None:
            self.translator.to(device=device)
        if dtype is not None:
            self.translator.to(dtype=dtype)
        return self

    @property
    def device(self) -> torch.device:
        if self.backend == "onnx":
            return torch.device("cpu")
        return next(self.translator.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        if self.backend == "onnx":
            return torch.float16 if self.translator.dtype == np.float16 else torch.float32
        return next(self.translator.parameters()).dtype

    def __call__(
        self,
        images: ImageInput | Sequence[ImageInput],
        *,
        mode: Mode = "default",
        max_side: int | None = None,
        batch_size: int = 4,
        output_type: Literal["pil", "np"] = "pil",
        progress: bool = False,
    ) -> Image.Image | np.ndarray | list:
        """Stylize one image or a list. Returns the same structure of PIL images (or uint8 arrays).

        ``max_side`` caps the working resolution (the result is scaled back to the input's size,
        except in ``"reference"`` mode, which always returns the authors' resized size).
        """
        if mode not in ("default", "exact", "reference"):
            raise ValueError(f"mode must be 'default', 'exact' or 'reference', got {mode!r}")
        single = not isinstance(images, (list, tuple))
        items = [images] if single else list(images)
        loaded = [load_image(item) for item in items]
        outputs = self.stylize_loaded(loaded, mode=mode, max_side=max_side, batch_size=batch_size, progress=progress)
        if output_type == "pil":
            outputs = [Image.fromarray(o) for o in outputs]
        elif output_type != "np":
            raise ValueError(f"output_type must be 'pil' or 'np', got {output_type!r}")
        return outputs[0] if single else outputs

    def stylize_loaded(
        self,
        loaded: Sequence[LoadedImage],
        *,
        mode: Mode = "default",
        max_side: int | None = None,
        batch_size: int = 4,
        progress: bool = False,
    ) -> list[np.ndarray]:
        """Stylize decoded images; returns uint8 (H, W, 3) or (H, W, 4) arrays in input order."""
        if batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        if max_side is not None and max_side < MIN_SIDE:
            raise ValueError(f"max_side must be at least {MIN_SIDE}")
        # At least 2 pixels a side at the bottleneck (reflect padding): 16 px for the full translator.
        min_side = max(MIN_SIDE, 2 * self.size_multiple)
        work = [_working_size(img.rgb.shape[:2], mode, max_side, min_side) for img in loaded]
        results: list[np.ndarray | None] = [None] * len(loaded)
        order = sorted(range(len(loaded)), key=lambda i: work[i])
        batches = [list(group) for _, group in groupby(order, key=lambda i: work[i])]
        batches = [b[i : i + batch_size] for b in batches for i in range(0, len(b), batch_size)]
        bar = tqdm(total=len(loaded), desc="stylize", unit="img", disable=not progress)
        for batch in batches:
            frames = np.stack([_resize(loaded[i].rgb, work[i]) for i in batch])
            for i, out in zip(batch, self.stylize_frames(frames, mode=mode)):
                results[i] = _finish(out, loaded[i], mode)
            bar.update(len(batch))
        bar.close()
        return results  # type: ignore[return-value]

    @torch.inference_mode()
    def stylize_frames(
        self, frames: np.ndarray, *, mode: Mode = "default", norm_stats: NormStatsHook | None = None
    ) -> np.ndarray:
        """The frame API: (B, H, W, 3) uint8 frames of one size -> stylized (B, H, W, 3) uint8.

        No resizing: H and W are any sizes >= 16, reflection-padded to the network's multiple (4;
        8 for a lite translator with three downsamplings) and cropped back. ``norm_stats`` is
        ``translate``'s InstanceNorm hook (video stabilisation). Images, batches and video frames
        all run through here, and this is where the backends differ: ``translate`` (torch; eager
        fp32 for a network the fast path does not serve) or onnxruntime (onnx, always fp32 or
        the exported dtype, so ``"default"`` and ``"exact"`` are the same there).
        """
        if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
            raise ValueError(f"expected (B, H, W, 3) uint8 frames, got {frames.shape} {frames.dtype}")
        if norm_stats is not None and not self._fast:
            raise ValueError(
                f"the {self.backend} backend of this translator cannot smooth its normalisation statistics "
                "(video stabilisation 'stats'); use stabilize='filter' or False"
            )
        x = to_model_range(torch.from_numpy(np.ascontiguousarray(frames)).to(self.device).permute(0, 3, 1, 2))
        h, w = x.shape[-2:]
        pad_h, pad_w = -h % self.size_multiple, -w % self.size_multiple
        if pad_h or pad_w:  # never in reference mode with the full translator: it resizes to multiples of 4
            x = F.pad(x, (0, pad_w, 0, pad_h), mode="reflect")
        if self.backend == "onnx":
            y = self.translator(x)
        elif self._fast:
            y = translate(self.translator, x, exact=mode != "default", norm_stats=norm_stats)
        else:
            with no_tf32(self.device, enabled=mode != "default"):  # exact / reference: fp32, not TF32
                y = self.translator(x.to(self.dtype)).float()
        y = y[:, :, :h, :w]
        return to_uint8(y, truncate=mode == "reference").permute(0, 2, 3, 1).cpu().numpy()


def reference_size(height: int, width: int) -> tuple[int, int]:
    """The authors' demo resize: each side to the nearest multiple of 4 (Python rounding)."""
    return max(4, round(height / 4) * 4), max(4, round(width / 4) * 4)


def _working_size(
    shape: tuple[int, int], mode: Mode, max_side: int | None, min_side: int = MIN_SIDE
) -> tuple[int, int]:
    h, w = shape
    scale = 1.0
    if max_side is not None and max(h, w) > max_side:
        scale = max_side / max(h, w)
    if min(h, w) * scale < min_side:
        scale = min_side / min(h, w)
    if scale != 1.0:
        h, w = max(min_side, round(h * scale)), max(min_side, round(w * scale))
    return reference_size(h, w) if mode == "reference" else (h, w)


def _resize(rgb: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    if rgb.shape[:2] == size:
        return rgb
    return np.asarray(Image.fromarray(rgb).resize((size[1], size[0]), Image.BICUBIC))


def _finish(out: np.ndarray, image: LoadedImage, mode: Mode) -> np.ndarray:
    if mode == "reference":
        return out
    h, w = image.rgb.shape[:2]
    if out.shape[:2] != (h, w):
        out = np.asarray(Image.fromarray(out).resize((w, h), Image.BICUBIC))
    if image.alpha is not None:
        out = np.concatenate([out, image.alpha[..., None]], axis=2)
    return np.ascontiguousarray(out)
