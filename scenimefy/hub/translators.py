"""Any translator source -> the network: a style name, a folder, an authors' ``.pth`` or a Hub repo id.

Every place that takes a translator from the user (the pipeline, ``scenimefy export``, the
distillation stage's ``--teacher``) goes through :func:`resolve_source` and
:func:`load_translator`, so they accept the same sources and fail with the same messages. The
class comes from config.json's ``_class_name`` (``scenimefy.models.loading``): a full
``ScenimefyTranslator`` or a distilled ``ScenimefyLiteTranslator``.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from torch import nn

from scenimefy.hub import download, styles
from scenimefy.hub.convert import CheckpointError, load_reference_translator
from scenimefy.models.loading import UnknownTranslatorError, load_translator_folder

_REPO_ID = re.compile(r"^[\w.-]+/[\w.-]+$")
_CHECKPOINT_SUFFIXES = (".pth", ".pt", ".ckpt")


def translator_dir(folder: Path) -> Path | None:
    """``folder`` or its ``translator/`` (a training run's output), whichever holds config.json."""
    for candidate in (folder, folder / "translator"):
        if (candidate / "config.json").is_file():
            return candidate
    return None


def _load_folder(folder: Path) -> nn.Module:
    try:
        return load_translator_folder(folder)
    except UnknownTranslatorError as err:
        raise CheckpointError(str(err)) from None


def is_style_name(source: str | os.PathLike | None) -> bool:
    """True when ``source`` names a registered style and no such path exists here."""
    return source is not None and not Path(source).exists() and str(source).lower() in styles.styles()


def resolve_source(
    source: str | os.PathLike | None,
    style: str | None = None,
    subfolder: str | None = None,
    cache_dir: str | os.PathLike | None = None,
) -> tuple[str | os.PathLike, str | None, str | None]:
    """``(source, subfolder, style)`` with style names resolved through the registry.

    ``source=None`` means ``style`` (default ``"shinkai"``); a source that names a style (and is no
    path here) is that style; with an explicit source, ``style`` only labels it, or picks a
    per-style subfolder when the source holds one (``<source>/<style>/config.json``).
    """
    if source is None and style is None:
        style = "shinkai"
    if source is None or is_style_name(source):
        style = style or str(source)
        source, subfolder = styles.resolve_style(style, cache_dir=cache_dir)
    elif style and subfolder is None and Path(source).is_dir() and (Path(source) / style / "config.json").is_file():
        subfolder = style
    return source, subfolder, style


def load_translator(
    source: str | os.PathLike,
    *,
    subfolder: str | None = None,
    revision: str | None = None,
    cache_dir: str | os.PathLike | None = None,
) -> nn.Module:
    """A translator from a folder (config.json + safetensors), a reference ``.pth`` or a Hub repo id."""
    path = Path(source).expanduser()
    if path.exists():
        if subfolder:
            path = path / subfolder
        if path.is_file():
            if path.suffix.lower() not in _CHECKPOINT_SUFFIXES:
                raise CheckpointError(
                    f"{path}: expected a folder with config.json or a reference *_net_G.pth checkpoint"
                )
            return load_reference_translator(path)
        folder = translator_dir(path)
        if folder is not None:
            return _load_folder(folder)
        checkpoints = sorted(p for p in path.glob("*_net_G.pth"))
        if len(checkpoints) == 1:
            return load_reference_translator(checkpoints[0])
        raise CheckpointError(f"{path}: no config.json (translator folder) or single *_net_G.pth found")
    text = str(source)
    path_like = "/" in text or "\\" in text or text.startswith((".", "~"))
    if Path(text).suffix.lower() in _CHECKPOINT_SUFFIXES or (path_like and download.looks_local(text)):
        parts = text.split("/")
        repo_like = len(parts) == 2 and _REPO_ID.match(text) and Path(parts[0]).is_dir()
        hint = f"; a Hub repo id is not looked up while a folder {parts[0]}/ exists here" if repo_like else ""
        raise CheckpointError(
            f"{source}: no such file or folder (a translator folder, a *_net_G.pth file, a style{hint})"
        )
    if _REPO_ID.match(str(source)):
        patterns = (
            ["*.json", "*.safetensors"] if not subfolder else [f"{subfolder}/*.json", f"{subfolder}/*.safetensors"]
        )
        local = download.download_hub_folder(
            str(source), revision=revision, cache_dir=cache_dir, allow_patterns=patterns
        )
        folder = translator_dir(local / subfolder if subfolder else local)
        if folder is None:
            raise CheckpointError(f"Hub repo {source!r} holds no translator (config.json + safetensors)")
        return _load_folder(folder)
    raise CheckpointError(
        f"{source!r} is neither an existing path, a style ({', '.join(styles.styles())}) nor a Hub repo id (owner/name)"
    )


def open_translator(
    source: str | os.PathLike, *, cache_dir: str | os.PathLike | None = None
) -> tuple[nn.Module, str | None]:
    """(translator, style name or None) of any source: a style, a folder, a ``.pth`` or a Hub repo id."""
    source, subfolder, style = resolve_source(source, cache_dir=cache_dir)
    return load_translator(source, subfolder=subfolder, cache_dir=cache_dir), style
