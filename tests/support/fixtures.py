"""Generated test inputs: awkward image files and a pre-filled Hugging Face cache."""

from __future__ import annotations

import hashlib
import io
import shutil
import struct
import zlib
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from scenimefy.models.translator import ScenimefyTranslator


def tiny_translator(seed: int = 0) -> ScenimefyTranslator:
    torch.manual_seed(seed)
    return ScenimefyTranslator(ngf=8, n_blocks=2).eval()


def gradient(width: int, height: int) -> np.ndarray:
    x = np.linspace(0, 255, width)[None, :, None]
    y = np.linspace(0, 255, height)[:, None, None]
    return np.concatenate(
        [
            np.broadcast_to(x, (height, width, 1)),
            np.broadcast_to(y, (height, width, 1)),
            np.full((height, width, 1), 90.0),
        ],
        axis=2,
    ).astype(np.uint8)


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def write_png_bomb(path: Path, side: int = 30000) -> None:
    """A valid 1-bit PNG of side x side pixels that is a few hundred KB on disk."""
    row = b"\x00" + b"\x00" * ((side + 7) // 8)
    comp = zlib.compressobj(9)
    body = b"".join(comp.compress(row) for _ in range(side)) + comp.flush()
    ihdr = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", body) + _png_chunk(b"IEND", b"")
    )


def write_awkward_images(folder: Path) -> dict[str, Path]:
    """The inputs of the issue's bad-input list; returns name -> path."""
    folder.mkdir(parents=True, exist_ok=True)
    files: dict[str, Path] = {}

    def path(name: str) -> Path:
        files[name.split(".")[0]] = folder / name
        return folder / name

    path("empty.jpg").write_bytes(b"")
    buf = io.BytesIO()
    Image.fromarray(gradient(64, 48)).save(buf, "JPEG", quality=90)
    path("truncated.jpg").write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    path("text.jpg").write_text("this is not an image\n")
    Image.new("RGB", (1, 1), (200, 30, 40)).save(path("one.png"))
    write_png_bomb(path("bomb.png"))
    Image.fromarray(gradient(40, 24)).convert("CMYK").save(path("cmyk.jpg"), "JPEG", quality=95)
    sixteen = (np.linspace(0, 65535, 36 * 20).reshape(20, 36)).astype(np.uint16)
    Image.fromarray(sixteen).save(path("sixteen.png"))
    pal = Image.new("P", (30, 22), 0)
    pal.putpalette([255, 0, 0, 0, 255, 0, 0, 0, 255] + [0] * (256 * 3 - 9))
    pal.paste(1, (10, 5, 20, 15))
    pal.save(path("palette.png"), transparency=0)
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90 degrees clockwise to display
    Image.fromarray(gradient(48, 24)).save(path("rotated.jpg"), "JPEG", exif=exif.tobytes(), quality=95)
    frames = [Image.fromarray(np.full((20, 28, 3), c, np.uint8)) for c in (30, 120, 220)]
    frames[0].save(path("animated.gif"), save_all=True, append_images=frames[1:], duration=100, loop=0)
    return files


def fill_hf_cache(cache: Path, repo_id: str, files: dict[str, Path], repo_type: str = "model") -> Path:
    """Lay out ``files`` (repo path -> local file) as the Hub cache does; returns the snapshot dir."""
    repo_dir = cache / f"{repo_type}s--{repo_id.replace('/', '--')}"
    commit = hashlib.sha1(repo_id.encode()).hexdigest()
    snapshot = repo_dir / "snapshots" / commit
    (repo_dir / "blobs").mkdir(parents=True, exist_ok=True)
    (repo_dir / "refs").mkdir(parents=True, exist_ok=True)
    (repo_dir / "refs" / "main").write_text(commit)
    for rel, src in files.items():
        digest = hashlib.sha256(Path(src).read_bytes()).hexdigest()
        blob = repo_dir / "blobs" / digest
        shutil.copyfile(src, blob)
        link = snapshot / rel
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(Path("../" * (len(Path(rel).parts) + 1)) / "blobs" / digest)
    return snapshot
