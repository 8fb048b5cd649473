"""Start-up checks of the training scripts: run before anything heavy loads or any file is written.

Every failure is a :class:`~scenimefy.training.config.ConfigError` whose one-line message names
the setting(s) and a value that works. Paths are checked before the Hub is ever asked: a value
that looks local (``./x``, ``/abs``, ``~/x``, ``out/no_pairs`` where ``out/`` is a folder here, a
name without an owner) is never looked up as a Hub repository.
"""

from __future__ import annotations

import os
from pathlib import Path

from scenimefy.hub.download import looks_local
from scenimefy.training.config import ConfigError


def _missing(setting: str, value: str, what: str) -> ConfigError:
    text = str(value)
    hint = ""
    parts = text.split("/")
    if len(parts) == 2 and not text.startswith((".", "/", "~")) and Path(parts[0]).is_dir():
        hint = f" ({parts[0]}/ is a folder here, so this is read as a local path, not a Hub id)"
    elif "/" not in text and not text.startswith((".", "~")):
        hint = " (a Hub id is written owner/name)"
    return ConfigError(f"--{setting} {text}: no such {what}{hint}")


def check_image_source(setting: str, value: str, required: bool = True) -> None:
    """An image folder, a ``datasets`` folder, or (not local-looking) a Hub dataset id."""
    from scenimefy.data.images import IMAGE_SUFFIXES, image_files
    from scenimefy.data.sources import is_datasets_folder

    if not value:
        if required:
            raise ConfigError(f"--{setting} is required (a folder of images, a `datasets` folder or a Hub dataset id)")
        return
    if not looks_local(value):
        return  # a Hub dataset id: the loader reads it (from the cache when offline)
    path = Path(value).expanduser()
    if not path.exists():
        raise _missing(setting, value, "folder")
    if not path.is_dir():
        raise ConfigError(f"--{setting} {value}: not a folder (a folder of images or a `datasets` folder)")
    if not is_datasets_folder(path) and not image_files(path):
        raise ConfigError(f"--{setting} {value}: no images ({', '.join(sorted(IMAGE_SUFFIXES))}) under it")


def count_images(value: str) -> int | None:
    """Images in a local image folder (None for a `datasets` folder or a Hub id: counted when loaded)."""
    from scenimefy.data.images import image_files
    from scenimefy.data.sources import is_datasets_folder

    path = Path(value).expanduser()
    if not value or not path.is_dir() or is_datasets_folder(path):
        return None
    return len(image_files(path))


def process_count() -> int:
    """Processes of the run, as ``accelerate launch`` sets ``WORLD_SIZE`` (1 without it)."""
    return int(os.environ.get("WORLD_SIZE", "1") or 1)


def check_translator_source(setting: str, value: str) -> None:
    """A style name, a translator folder (config.json, or ``translator/``, or one ``*_net_G.pth``),
    a reference checkpoint file, or (not local-looking) a Hub repo id."""
    from scenimefy.hub.styles import styles

    if not value:
        raise ConfigError(
            f"--{setting} is required (a style name, a translator folder, a *_net_G.pth or a Hub repo id)"
        )
    path = Path(value).expanduser()
    if not path.exists() and value.lower() in styles():
        return
    if not path.exists() and Path(value).suffix.lower() in (".pth", ".pt", ".ckpt"):
        raise _missing(setting, value, "file")
    if not looks_local(value):
        return
    if not path.exists():
        known = ", ".join(sorted(styles()))
        raise ConfigError(f"--{setting} {value}: no such folder or file, and not a style ({known})")
    if path.is_file():
        if path.suffix.lower() not in (".pth", ".pt", ".ckpt"):
            raise ConfigError(f"--{setting} {value}: not a translator (a folder with config.json or a *_net_G.pth)")
        return
    if not any((p / "config.json").is_file() for p in (path, path / "translator")) and not any(
        path.glob("*_net_G.pth")
    ):
        raise ConfigError(f"--{setting} {value}: not a translator folder (no config.json or *_net_G.pth in it)")


def check_batch_fits(setting: str, value: str, batch_size: int, batch_setting: str = "train_batch_size") -> None:
    """At least one full batch per process (``WORLD_SIZE`` processes, as the launcher sets it)."""
    n = count_images(value)
    processes = process_count()
    if n is not None and n < batch_size * processes:
        per = f" x {processes} processes" if processes > 1 else ""
        raise ConfigError(
            f"--{setting} {value} has {n} images, fewer than one batch (--{batch_setting} {batch_size}{per}): "
            f"use --{batch_setting} {max(1, n // processes)} or more images"
        )


def check_model_source(setting: str, value: str, marker: str = "config.json", what: str = "model folder") -> None:
    """A local folder holding ``marker`` (or a file, when ``marker`` is empty), or a Hub id."""
    if not value:
        raise ConfigError(f"--{setting} is required ({what})")
    if not looks_local(value):
        return
    path = Path(value).expanduser()
    if not path.exists():
        raise _missing(setting, value, "folder or file" if not marker else "folder")
    if marker and path.is_dir() and not (path / marker).is_file():
        raise ConfigError(f"--{setting} {value}: not a {what} (no {marker} in it)")


def check_push_to_hub(push_to_hub: bool, hub_model_id: str | None) -> None:
    """``--push_to_hub`` is refused now rather than after days of training."""
    if not push_to_hub:
        return
    from scenimefy.hub.download import offline_mode

    if not hub_model_id or hub_model_id.count("/") != 1:
        raise ConfigError("--push_to_hub needs --hub_model_id owner/name")
    if offline_mode():
        raise ConfigError("--push_to_hub with HF_HUB_OFFLINE set: uploads are disabled (unset it, or publish later)")


def check_resume(output_dir: str, resume: str | None) -> None:
    if resume and resume != "latest":
        from scenimefy.training.checkpoints import resolve_resume

        resolve_resume(output_dir, resume)  # raises for a folder that is not a complete checkpoint


def require(condition: bool, message: str) -> None:
    if not condition:
        raise ConfigError(message)
