"""Image adjustments applied after stylization: strength (a blend) and keeping the photo's colours.

All functions take uint8 RGB arrays of one size, (..., H, W, 3), so a photo and a batch of video
frames go through the same code:

    from scenimefy.inference.adjust import adjust
    out = adjust(photo, stylized, strength=0.7, colours=True)
"""

from __future__ import annotations

import numpy as np

# JPEG's full-range BT.601 RGB -> YCbCr.
_RGB2YCC = np.array([[0.299, 0.587, 0.114], [-0.168736, -0.331264, 0.5], [0.5, -0.418688, -0.081312]])
_YCC2RGB = np.linalg.inv(_RGB2YCC)


def keep_colours(original: np.ndarray, stylized: np.ndarray) -> np.ndarray:
    """The stylized luminance with the original's colour: Y of ``stylized``, Cb/Cr of ``original``.

    The anime shading and line work stay while hues and saturation are the photo's.
    """
    y = stylized.astype(np.float32) @ _RGB2YCC[0].astype(np.float32)
    chroma = original.astype(np.float32) @ _RGB2YCC[1:].T.astype(np.float32)
    ycc = np.concatenate([y[..., None], chroma], axis=-1)
    return np.clip(np.rint(ycc @ _YCC2RGB.T.astype(np.float32)), 0, 255).astype(np.uint8)


def blend(original: np.ndarray, stylized: np.ndarray, strength: float) -> np.ndarray:
    """``strength`` 1 = the stylized image, 0 = the original, linear in between."""
    if strength >= 1.0:
        return stylized
    mixed = original.astype(np.float32) * (1.0 - strength) + stylized.astype(np.float32) * strength
    return np.clip(np.rint(mixed), 0, 255).astype(np.uint8)


def adjust(original: np.ndarray, stylized: np.ndarray, strength: float = 1.0, colours: bool = False) -> np.ndarray:
    """Keep-colours then strength, on RGB; an alpha channel of ``stylized`` is kept as it is."""
    alpha = stylized[..., 3:] if stylized.shape[-1] == 4 else None
    rgb = stylized[..., :3]
    if colours:
        rgb = keep_colours(original[..., :3], rgb)
    rgb = blend(original[..., :3], rgb, strength)
    return np.concatenate([rgb, alpha], axis=-1) if alpha is not None else rgb


def needs_adjusting(strength: float, colours: bool) -> bool:
    return strength < 1.0 or colours
