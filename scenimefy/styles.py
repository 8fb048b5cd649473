"""The style registry: a style name -> where its translator weights live.

``shinkai`` is the authors' released translator (their Hugging Face Space, with the GitHub
release as a fallback), converted once to config.json + safetensors and cached. ``hosoda`` has
no public weights: it needs weights you trained (``train/train_translator.py``).
Any style can be pointed elsewhere with ``SCENIMEFY_STYLE_<NAME>=<folder | .pth | hub repo id>``.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path

from huggingface_hub import try_to_load_from_cache

from . import hub
from .hub import WeightsUnavailableError


@dataclass(frozen=True)
class Style:
    name: str
    title: str
    description: str
    repo_id: str | None = None  # Hub repository holding the weights
    repo_type: str = "model"
    filename: str | None = None  # a reference ``*_net_G.pth`` inside the repo; None = translator folder
    subfolder: str | None = None  # translator folder inside the repo
    url: str | None = None  # direct download fallback for ``filename``
    license: str = "S-Lab License 1.0 (non-commercial)"


_REGISTRY: dict[str, Style] = {}


def register_style(style: Style, *, overwrite: bool = False) -> None:
    key = style.name.lower()
    if key in _REGISTRY and not overwrite:
        raise ValueError(f"style {style.name!r} is already registered")
    _REGISTRY[key] = style


register_style(
    Style(
        name="shinkai",
        title="Makoto Shinkai",
        description="The authors' released translator, trained on 5,958 crops of nine Shinkai films.",
        repo_id="YuxinJ/Scenimefy",
        repo_type="space",
        filename="Scenimefy/pretrained_models/huggingface/Shinkai_net_G.pth",
        url="https://github.com/Yuxinn-J/Scenimefy/releases/download/v0.1.0/Shinkai_net_G.pth",
    )
)
register_style(
    Style(
        name="hosoda",
        title="Mamoru Hosoda",
        description="Paper setting with a VGG content loss (5,107 frames). No public weights exist yet.",
    )
)


def styles() -> dict[str, Style]:
    """Registered styles by lower-case name."""
    return dict(_REGISTRY)


def get_style(name: str) -> Style:
    try:
        return _REGISTRY[name.lower()]
    except KeyError:
        raise KeyError(f"unknown style {name!r}; known styles: {', '.join(sorted(_REGISTRY))}") from None


def env_var(name: str) -> str:
    return "SCENIMEFY_STYLE_" + re.sub(r"[^A-Z0-9]", "_", name.upper())


def cache_root() -> Path:
    return Path(os.environ.get("SCENIMEFY_CACHE", Path.home() / ".cache" / "scenimefy"))


def _how_to_fix(style: Style) -> str:
    var = env_var(style.name)
    lines = [
        f"  - pass weights explicitly: ScenimefyPipeline.from_pretrained('<folder | file.pth | repo id>', style={style.name!r})",
        f"    or on the command line: --weights <folder | file.pth | repo id>",
        f"  - or set {var}=<folder | file.pth | repo id>",
    ]
    if style.repo_id:
        lines.insert(0, f"  - run once with internet access (scenimefy download {style.name}) to fill the cache")
    return "\n".join(lines)


def missing_weights_message(style: Style, reason: str) -> str:
    return f"style {style.name!r} ({style.title}): {reason}\nTo fix:\n{_how_to_fix(style)}"


def _converted_dir(style: Style, checkpoint: Path) -> Path:
    # The HF cache names blobs by content hash, so a new upstream file gets a new folder.
    return cache_root() / "converted" / style.name / Path(os.path.realpath(checkpoint)).name


def _convert_cached(style: Style, checkpoint: Path) -> Path:
    from .convert import convert_reference_translator

    target = _converted_dir(style, checkpoint)
    if (target / "config.json").is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    # Convert into a private folder and rename: concurrent first uses never see a half-written one.
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=target.name + ".tmp"))
    try:
        convert_reference_translator(checkpoint, tmp)
        os.replace(tmp, target)
    except OSError:
        if not (target / "config.json").is_file():
            raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def resolve_style(name: str, *, cache_dir: str | os.PathLike | None = None) -> tuple[str, str | None]:
    """``(source, subfolder)``: a local path or Hub repo id holding the translator of ``name``.

    Raises :class:`WeightsUnavailableError` with instructions when nothing usable is found.
    """
    style = get_style(name)
    override = os.environ.get(env_var(style.name))
    if override:
        return override, None
    if style.repo_id is None:
        raise WeightsUnavailableError(missing_weights_message(style, "no public weights have been released for this style."))
    if style.filename is None:
        return style.repo_id, style.subfolder
    try:
        checkpoint = hub.download_hub_file(style.repo_id, style.filename, repo_type=style.repo_type, cache_dir=cache_dir)
    except WeightsUnavailableError as hub_error:
        fallback = cache_root() / "downloads" / style.name / Path(style.filename).name
        if not fallback.is_file() and style.url:
            try:
                hub.download_url(style.url, fallback)
            except WeightsUnavailableError:
                pass
        if not fallback.is_file():
            reason = "the weights are not in the local cache and " + (
                "downloads are disabled (HF_HUB_OFFLINE=1)." if hub.offline_mode() else "neither the Hub nor the release URL could be reached."
            )
            raise WeightsUnavailableError(missing_weights_message(style, reason)) from hub_error
        checkpoint = fallback
    return str(_convert_cached(style, checkpoint)), None


def style_status(name: str, *, cache_dir: str | os.PathLike | None = None) -> str:
    """"ready" (usable offline), "downloadable" (fetched on first use) or "needs weights"."""
    style = get_style(name)
    if os.environ.get(env_var(style.name)):
        return "ready"
    if style.repo_id is None:
        return "needs weights"
    if style.filename is not None:
        cached = try_to_load_from_cache(style.repo_id, style.filename, cache_dir=cache_dir, repo_type=style.repo_type)
        fallback = cache_root() / "downloads" / style.name / Path(style.filename).name
        if isinstance(cached, str) or fallback.is_file():
            return "ready"
    return "needs weights" if hub.offline_mode() else "downloadable"


def with_repo(name: str, repo_id: str, **changes) -> Style:
    """A copy of style ``name`` whose weights come from a translator folder on the Hub."""
    return replace(get_style(name), repo_id=repo_id, filename=None, url=None, **changes)
