"""``ScenimefyPipeline``: load a translator, stylize images (PIL in, PIL out).

    pipe = ScenimefyPipeline.from_pretrained(style="shinkai")      # or a folder, .pth, repo id
    anime = pipe("photo.jpg")                                      # PIL.Image, input's size
    pipe.to("cuda", dtype=torch.float16)

Modes: ``"default"`` pads to a multiple of 4 (reflection), runs the fast inference path and
returns the input's size; ``"exact"`` is the same geometry in fp32 eager; ``"reference"``
reproduces the authors' demo bit for bit (bicubic resize to multiples of 4, truncation to uint8,
output at the resized size).
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from itertools import groupby
from pathlib import Path
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from tqdm.auto import tqdm

from scenimefy.data.images import ImageInput, LoadedImage, load_image
from scenimefy.data.pixels import to_model_range, to_uint8
from scenimefy.hub import download, styles
from scenimefy.hub.convert import CheckpointError, load_reference_translator
from scenimefy.inference.engine import translate
from scenimefy.inference.ops import NormStatsHook
from scenimefy.models.translator import ScenimefyTranslator

Mode = Literal["default", "exact", "reference"]
#: The network needs reflect padding of 3 at full size and 1 at 1/4 size; smaller inputs are
#: upsampled to this side first and the result scaled back.
MIN_SIDE = 16
_REPO_ID = re.compile(r"^[\w.-]+/[\w.-]+$")
_CHECKPOINT_SUFFIXES = (".pth", ".pt", ".ckpt")


def _translator_dir(folder: Path) -> Path | None:
    for candidate in (folder, folder / "translator"):
        if (candidate / "config.json").is_file():
            return candidate
    return None


def load_translator(
    source: str | os.PathLike,
    *,
    subfolder: str | None = None,
    revision: str | None = None,
    cache_dir: str | os.PathLike | None = None,
) -> ScenimefyTranslator:
    """A translator from a folder (config.json + safetensors), a reference ``.pth`` or a Hub repo id."""
    path = Path(source)
    if path.exists():
        if subfolder:
            path = path / subfolder
        if path.is_file():
            if path.suffix.lower() not in _CHECKPOINT_SUFFIXES:
                raise CheckpointError(
                    f"{path}: expected a folder with config.json or a reference *_net_G.pth checkpoint"
                )
            return load_reference_translator(path)
        folder = _translator_dir(path)
        if folder is not None:
            return ScenimefyTranslator.from_pretrained(folder).eval()
        checkpoints = sorted(p for p in path.glob("*_net_G.pth"))
        if len(checkpoints) == 1:
            return load_reference_translator(checkpoints[0])
        raise CheckpointError(f"{path}: no config.json (translator folder) or single *_net_G.pth found")
    if _REPO_ID.match(str(source)):
        patterns = (
            ["*.json", "*.safetensors"] if not subfolder else [f"{subfolder}/*.json", f"{subfolder}/*.safetensors"]
        )
        local = download.download_hub_folder(
            str(source), revision=revision, cache_dir=cache_dir, allow_patterns=patterns
        )
        folder = _translator_dir(local / subfolder if subfolder else local)
        if folder is None:
            raise CheckpointError(f"Hub repo {source!r} holds no translator (config.json + safetensors)")
        return ScenimefyTranslator.from_pretrained(folder).eval()
    raise CheckpointError(
        f"{source!r} is neither an existing path, a style ({', '.join(styles.styles())}) nor a Hub repo id (owner/name)"
    )


class ScenimefyPipeline:
    """Photo -> anime scene with one translator (one style)."""

    def __init__(self, translator: ScenimefyTranslator, style: str | None = None) -> None:
        self.translator = translator.eval().requires_grad_(False)
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
    ) -> ScenimefyPipeline:
        """Load from a local folder / ``.pth`` / Hub repo id, or from the style registry.

        ``from_pretrained(style="shinkai")`` and ``from_pretrained("shinkai")`` use the registry;
        with an explicit ``source``, ``style`` only labels the pipeline, or picks a per-style
        subfolder when the source holds one (``<source>/<style>/config.json``).
        """
        if source is None and style is None:
            style = "shinkai"
        if source is None or (not Path(source).exists() and str(source).lower() in styles.styles()):
            style = style or str(source)
            source, subfolder = styles.resolve_style(style, cache_dir=cache_dir)
        elif style and subfolder is None and Path(source).is_dir() and (Path(source) / style / "config.json").is_file():
            subfolder = style
        translator = load_translator(source, subfolder=subfolder, revision=revision, cache_dir=cache_dir)
        return cls(translator, style=style).to(device, dtype)

    def save_pretrained(self, path: str | os.PathLike) -> None:
        self.translator.save_pretrained(path)

    def to(self, device: str | torch.device | None = None, dtype: torch.dtype | None = None) -> ScenimefyPipeline:
        if device is not None:
            self.translator.to(device=device)
        if dtype is not None:
            if not dtype.is_floating_point:
                raise ValueError(f"dtype must be a floating point type, got {dtype}")
            self.translator.to(dtype=dtype)
        return self

    @property
    def device(self) -> torch.device:
        return next(self.translator.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
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
        work = [_working_size(img.rgb.shape[:2], mode, max_side) for img in loaded]
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

        No resizing: H and W are any sizes >= 16, reflection-padded to a multiple of 4 for the
        network and cropped back. ``norm_stats`` is ``translate``'s InstanceNorm hook (video
        stabilisation). Images, batches and video frames all run through here.
        """
        if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
            raise ValueError(f"expected (B, H, W, 3) uint8 frames, got {frames.shape} {frames.dtype}")
        x = to_model_range(torch.from_numpy(np.ascontiguousarray(frames)).to(self.device).permute(0, 3, 1, 2))
        h, w = x.shape[-2:]
        pad_h, pad_w = -h % 4, -w % 4
        if pad_h or pad_w:  # never in reference mode: it resizes to multiples of 4
            x = F.pad(x, (0, pad_w, 0, pad_h), mode="reflect")
        y = translate(self.translator, x, exact=mode != "default", norm_stats=norm_stats)[:, :, :h, :w]
        return to_uint8(y, truncate=mode == "reference").permute(0, 2, 3, 1).cpu().numpy()


def reference_size(height: int, width: int) -> tuple[int, int]:
    """The authors' demo resize: each side to the nearest multiple of 4 (Python rounding)."""
    return max(4, round(height / 4) * 4), max(4, round(width / 4) * 4)


def _working_size(shape: tuple[int, int], mode: Mode, max_side: int | None) -> tuple[int, int]:
    h, w = shape
    scale = 1.0
    if max_side is not None and max(h, w) > max_side:
        scale = max_side / max(h, w)
    if min(h, w) * scale < MIN_SIDE:
        scale = MIN_SIDE / min(h, w)
    if scale != 1.0:
        h, w = max(MIN_SIDE, round(h * scale)), max(MIN_SIDE, round(w * scale))
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
