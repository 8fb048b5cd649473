"""Turning whatever a user hands us into RGB uint8 pixels (+ optional alpha), with clear errors.

Accepted: file paths, PIL images, numpy arrays (H, W), (H, W, 1|3|4) uint8/uint16/float in [0, 1],
and torch tensors (C, H, W) or (H, W) in [0, 1] (float) or uint8. EXIF orientation is applied;
palette transparency, LA and RGBA keep their alpha; CMYK, 16-bit and float images are converted.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

#: The image files the toolkit reads everywhere: stylize, training data, evaluation, app examples.
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff", ".gif"})

#: Refuse images above this many pixels before decoding them (decompression bombs).
#: 12 MP phone photos and 8K frames (33 MP) pass; override with SCENIMEFY_MAX_PIXELS.
DEFAULT_MAX_PIXELS = 50_000_000

ImageInput = str | os.PathLike | Image.Image | np.ndarray | torch.Tensor


class InvalidImageError(ValueError):
    """An input that is not a usable image; the message names the input and the reason.

    ``kind`` says which, for programs that word it for their own users (the web app): "missing",
    "empty", "unreadable" (not an image), "broken" (damaged or truncated data), "too_large"
    (then ``size`` = (width, height) and ``limit`` = pixels), "invalid" (an in-memory input).
    """

    def __init__(
        self, message: str, kind: str = "invalid", *, size: tuple[int, int] | None = None, limit: int | None = None
    ) -> None:
        super().__init__(message)
        self.kind, self.size, self.limit = kind, size, limit


@dataclass
class LoadedImage:
    rgb: np.ndarray  # (H, W, 3) uint8
    alpha: np.ndarray | None  # (H, W) uint8, or None when the input is opaque
    name: str  # for messages: the path, or a description of the in-memory input


def max_pixels() -> int:
    return int(os.environ.get("SCENIMEFY_MAX_PIXELS", DEFAULT_MAX_PIXELS))


def _describe(obj: object) -> str:
    if isinstance(obj, (str, os.PathLike)):
        return str(obj)
    if isinstance(obj, Image.Image):
        return f"PIL image {obj.mode} {obj.width}x{obj.height}"
    if isinstance(obj, (np.ndarray, torch.Tensor)):
        return f"{type(obj).__name__} {tuple(obj.shape)} {obj.dtype}"
    return type(obj).__name__


def image_header(path: str | os.PathLike) -> tuple[str | None, tuple[int, int] | None]:
    """(format, (width, height)) from the file's first bytes and header, without decoding the
    pixels and without PIL's decompression-bomb refusal (so a huge image can be reported with its
    size). format: the image format whose signature the file starts with (None: no known one);
    size: None when the header cannot be read (a damaged or truncated file of that format)."""
    Image.init()
    recognised = None
    with open(path, "rb") as fp:
        prefix = fp.read(16)
        for fmt in Image.ID:  # what Image.open does, minus the pixel-count check
            factory, accept = Image.OPEN[fmt]
            try:
                matched = accept is not None and bool(accept(prefix))
            except Exception:  # e.g. a file shorter than the signature
                matched = False
            if accept is not None and not matched:
                continue
            recognised = recognised or (fmt if matched else None)
            fp.seek(0)
            try:
                return fmt, factory(fp, str(path)).size
            except Exception:  # not this format: try the next, as PIL does
                continue
    return recognised, None


def read_image_size(path: str | os.PathLike) -> tuple[int, int] | None:
    """(width, height) from the file's header (see :func:`image_header`); None if unreadable."""
    return image_header(path)[1]


def _too_large(name: str, width: int, height: int, limit: int) -> InvalidImageError:
    return InvalidImageError(
        f"{name}: {width}x{height} is {width * height / 1e6:.0f} MP, above the {limit / 1e6:.0f} MP limit "
        "(SCENIMEFY_MAX_PIXELS raises it)",
        "too_large",
        size=(width, height),
        limit=limit,
    )


def open_image(path: str | os.PathLike) -> Image.Image:
    """Open and fully decode an image file, turning PIL's many failure modes into one error."""
    path = Path(path)
    if not path.is_file():
        raise InvalidImageError(f"{path}: no such file", "missing")
    if path.stat().st_size == 0:
        raise InvalidImageError(f"{path}: the file is empty (0 bytes)", "empty")
    limit = max_pixels()
    fmt, size = image_header(path)
    if size is not None and size[0] * size[1] > limit:
        raise _too_large(str(path), *size, limit)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(path)
            if image.width * image.height > limit:
                raise _too_large(str(path), image.width, image.height, limit)
            if getattr(image, "n_frames", 1) > 1:
                warnings.warn(
                    f"{path}: animated image with {image.n_frames} frames; only the first frame is stylized "
                    "(use `scenimefy video` for clips)",
                    stacklevel=3,
                )
                image.seek(0)
            image.load()
    except InvalidImageError:
        raise
    except UnidentifiedImageError:
        if fmt is not None:  # it starts like an image of that format: its header is cut or damaged
            raise InvalidImageError(f"{path}: the image data is broken or truncated ({fmt} header)", "broken") from None
        raise InvalidImageError(
            f"{path}: not an image file PIL can read (wrong extension or corrupt)", "unreadable"
        ) from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise InvalidImageError(
            f"{path}: refused as a decompression bomb (too many pixels for its file size)", "too_large", limit=limit
        ) from None
    except (OSError, SyntaxError, ValueError, EOFError) as err:
        reason = getattr(err, "strerror", None) or str(err)
        raise InvalidImageError(f"{path}: the image data is broken or truncated ({reason})", "broken") from None
    return image


def is_image_file(path: str | os.PathLike) -> bool:
    return Path(path).suffix.lower() in IMAGE_SUFFIXES


def image_files(root: str | os.PathLike) -> list[Path]:
    """Image files under ``root`` (recursive), sorted for a stable order; [] if there are none."""
    return sorted(p for p in Path(root).rglob("*") if is_image_file(p) and p.is_file())


def upright_rgb(image: Image.Image) -> Image.Image:
    """``image`` turned as its EXIF orientation says, in RGB (training data, as stylization sees it)."""
    return ImageOps.exif_transpose(image).convert("RGB")


def _pil_to_arrays(image: Image.Image) -> tuple[np.ndarray, np.ndarray | None]:
    image = ImageOps.exif_transpose(image)
    mode = image.mode
    if mode == "P":
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
    elif mode in ("PA", "LA", "La", "RGBa"):
        image = image.convert("RGBA")
    elif mode in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F"):
        # 16-bit / float greyscale: rescale to 8 bits instead of clipping at 255.
        data = np.asarray(image).astype(np.float64)
        scale = 1.0 if mode == "F" and data.max(initial=0) <= 1.0 else (65535.0 if data.max(initial=0) > 255 else 255.0)
        grey = np.clip(np.round(data / scale * 255.0), 0, 255).astype(np.uint8)
        return np.repeat(grey[..., None], 3, axis=2), None
    if image.mode == "RGBA":
        arr = np.asarray(image)
        alpha = arr[..., 3]
        return np.ascontiguousarray(arr[..., :3]), None if alpha.min() == 255 else np.ascontiguousarray(alpha)
    return np.asarray(image.convert("RGB")), None


def _array_to_arrays(arr: np.ndarray, name: str) -> tuple[np.ndarray, np.ndarray | None]:
    if arr.ndim == 2:
        arr = arr[..., None]
    if arr.ndim != 3 or arr.shape[2] not in (1, 3, 4):
        raise InvalidImageError(f"{name}: expected (H, W), (H, W, 1), (H, W, 3) or (H, W, 4), got {arr.shape}")
    if arr.dtype == np.uint8:
        data = arr
    elif arr.dtype == np.uint16:
        data = np.round(arr.astype(np.float64) / 65535.0 * 255.0).astype(np.uint8)
    elif np.issubdtype(arr.dtype, np.floating):
        if not np.isfinite(arr).all():
            raise InvalidImageError(f"{name}: contains NaN or infinite values")
        if arr.min() < -1e-3 or arr.max() > 1 + 1e-3:
            raise InvalidImageError(
                f"{name}: float images must lie in [0, 1], found [{arr.min():.3g}, {arr.max():.3g}]"
            )
        data = np.round(np.clip(arr, 0, 1) * 255.0).astype(np.uint8)
    elif arr.dtype == np.bool_:
        data = arr.astype(np.uint8) * 255
    else:
        raise InvalidImageError(f"{name}: unsupported dtype {arr.dtype}")
    alpha = data[..., 3] if data.shape[2] == 4 else None
    rgb = np.repeat(data[..., :1], 3, axis=2) if data.shape[2] == 1 else data[..., :3]
    if alpha is not None and alpha.min() == 255:
        alpha = None
    return np.ascontiguousarray(rgb), alpha


def load_image(obj: ImageInput) -> LoadedImage:
    """Any accepted input -> :class:`LoadedImage`; raises :class:`InvalidImageError`."""
    name = _describe(obj)
    if isinstance(obj, (str, os.PathLike)):
        rgb, alpha = _pil_to_arrays(open_image(obj))
    elif isinstance(obj, Image.Image):
        rgb, alpha = _pil_to_arrays(obj)
    elif isinstance(obj, torch.Tensor):
        t = obj.detach().cpu()
        if t.ndim == 4 and t.shape[0] == 1:
            t = t[0]
        if t.ndim == 3:
            if t.shape[0] not in (1, 3, 4):
                raise InvalidImageError(f"{name}: tensors are (C, H, W) with C in 1, 3, 4")
            t = t.permute(1, 2, 0)
        rgb, alpha = _array_to_arrays(t.float().numpy() if t.is_floating_point() else t.numpy(), name)
    elif isinstance(obj, np.ndarray):
        rgb, alpha = _array_to_arrays(obj, name)
    else:
        raise InvalidImageError(
            f"unsupported input type {type(obj).__name__}: pass a path, PIL image, numpy array or tensor"
        )
    if rgb.shape[0] < 1 or rgb.shape[1] < 1:
        raise InvalidImageError(f"{name}: the image is empty ({rgb.shape[1]}x{rgb.shape[0]})", "empty")
    if rgb.shape[0] * rgb.shape[1] > max_pixels():
        raise _too_large(name, rgb.shape[1], rgb.shape[0], max_pixels())
    return LoadedImage(rgb=rgb, alpha=alpha, name=name)
