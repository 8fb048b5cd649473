"""Writing outputs so that nothing is ever half-written: images, videos and batch results.

Every output goes to a hidden temporary file next to its destination (same folder, so the same
filesystem), is flushed to disk, and is renamed onto the destination only when complete. A
failure, an interrupt (Ctrl-C, SIGTERM) or a cancelled job removes the temporary file, so a
file at a destination path is always a complete one, and a rerun can trust it.

    with atomic_output("out/photo.png") as tmp:
        image.save(tmp)                          # any writer; tmp keeps the destination's suffix

A full disk (or a file size limit, ``ulimit -f``) raises :class:`DiskFullError`, whose message is
one line naming the destination; the partial file is removed first.
"""

from __future__ import annotations

import errno
import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

#: errno values that mean "the output does not fit": no space, file size limit, disk quota.
_DISK_FULL = {errno.ENOSPC, errno.EFBIG, getattr(errno, "EDQUOT", errno.ENOSPC)}
_PARTIAL = ".partial"


class DiskFullError(OSError):
    """The disk (or the file size limit) ran out while writing an output; nothing was left behind."""


def is_disk_full(err: BaseException) -> bool:
    return isinstance(err, OSError) and err.errno in _DISK_FULL


def partial_path(dst: str | os.PathLike) -> Path:
    """A fresh hidden temporary name beside ``dst`` that keeps its suffix (writers pick formats by it)."""
    dst = Path(dst)
    return dst.with_name(f".{dst.stem}.{secrets.token_hex(4)}{_PARTIAL}{dst.suffix}")


def stale_partials(dst: str | os.PathLike) -> list[Path]:
    """Temporary files of ``dst`` left by a process that was killed outright (SIGKILL, power loss)."""
    dst = Path(dst)
    if not dst.parent.is_dir():
        return []
    return sorted(dst.parent.glob(f".{dst.stem}.*{_PARTIAL}{dst.suffix}"))


def is_partial(path: str | os.PathLike) -> bool:
    return Path(path).name.startswith(".") and _PARTIAL in Path(path).suffixes


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextmanager
def atomic_output(dst: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``dst``; on a clean exit it is synced and renamed to ``dst``.

    On any exception (including KeyboardInterrupt and a closed generator) the temporary file is
    removed and the exception propagates; a full disk becomes :class:`DiskFullError`.
    """
    dst = Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = partial_path(dst)
    try:
        yield tmp
        _fsync(tmp)
        os.replace(tmp, dst)
    except OSError as err:
        tmp.unlink(missing_ok=True)
        if is_disk_full(err) and not isinstance(err, DiskFullError):
            what = {
                errno.ENOSPC: "no space left on the disk",
                errno.EFBIG: "the file size limit was reached (ulimit -f)",
            }.get(err.errno, "the disk quota is exceeded")
            full = DiskFullError(f"cannot write {dst}: {what}; the partial file was removed")
            full.errno = err.errno
            raise full from None
        raise
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def save_image(image, dst: str | os.PathLike, *, quality: int = 95) -> Path:
    """Save a PIL image or a uint8 (H, W, 3|4) array atomically; the format follows ``dst``'s suffix.

    JPEG has no alpha, so an RGBA image is flattened to RGB there; PNG and WebP keep it.
    """
    from PIL import Image

    dst = Path(dst)
    if isinstance(image, np.ndarray):
        image = Image.fromarray(image)
    jpeg = dst.suffix.lower() in (".jpg", ".jpeg")
    if jpeg and image.mode == "RGBA":
        image = image.convert("RGB")
    with atomic_output(dst) as tmp:
        if jpeg or dst.suffix.lower() == ".webp":
            image.save(tmp, quality=quality)
        else:
            image.save(tmp)
    return dst


def image_is_complete(path: str | os.PathLike) -> bool:
    """True when ``path`` is a whole image file: it exists, is not empty, and its data checks out.

    Outputs written here are complete by construction (renamed only when done); the check also
    catches files left by older tools or copied in by hand, at the cost of reading the file once.
    """
    from PIL import Image

    path = Path(path)
    try:
        if not path.is_file() or path.stat().st_size == 0:
            return False
        with Image.open(path) as image:
            image.verify()  # PNG: every chunk's CRC; others: the structure
        return True
    except Exception:
        return False
