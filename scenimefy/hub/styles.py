"""The style registry: a style name -> where its translator weights live.

``shinkai`` is the authors' released translator (their Hugging Face Space, with the GitHub
release as a fallback), converted once to config.json + safetensors and cached. ``hosoda`` is
looked for in the Hub repo the project publishes it to (:data:`HOSODA_REPO_ID`, a translator
folder written by ``scenimefy publish translator``); until it exists it needs weights you trained.

Where a style's weights come from, first match wins:
1. ``SCENIMEFY_STYLE_<NAME>=<folder | .pth | hub repo id>`` (environment);
2. the styles index, a JSON file that can add styles or re-point built-in ones:
   ``SCENIMEFY_STYLES_INDEX=<path | hf://[datasets/]owner/repo/file.json>``, else
   ``$XDG_CONFIG_HOME/scenimefy/styles.json`` (``~/.config/...``) when it exists;
3. the built-in default (below).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
import warnings
from dataclasses import dataclass, fields, replace
from pathlib import Path

from huggingface_hub import try_to_load_from_cache

from scenimefy.hub import download
from scenimefy.hub.download import WeightsUnavailableError


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
    lite: str | None = None  # the style's distilled fast variant (a style name), if it has one
    lite_of: str | None = None  # for a lite variant: the full style it was distilled from


#: The Hub repo the project publishes its Hosoda translator to; ``hosoda`` loads from it as soon
#: as it exists (no code change), see docs/publishing.md.
HOSODA_REPO_ID = "scenimefy/hosoda-translator"
#: The Hub repo the project publishes the distilled Shinkai student to (docs/lite.md); like hosoda,
#: ``shinkai-lite`` loads from it as soon as it exists.
SHINKAI_LITE_REPO_ID = "scenimefy/shinkai-lite"
#: Environment variable naming the styles index (an empty value disables the default file).
INDEX_ENV = "SCENIMEFY_STYLES_INDEX"

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
        lite="shinkai-lite",
    )
)
register_style(
    Style(
        name="shinkai-lite",
        title="Makoto Shinkai (fast)",
        description=f"A small student distilled from the Shinkai translator for live video; loads from "
        f"{SHINKAI_LITE_REPO_ID} once published.",
        repo_id=SHINKAI_LITE_REPO_ID,
        lite_of="shinkai",
    )
)
register_style(
    Style(
        name="hosoda",
        title="Mamoru Hosoda",
        description=f"Paper setting with a VGG content loss (5,107 frames); loads from {HOSODA_REPO_ID} once "
        "published.",
        repo_id=HOSODA_REPO_ID,
    )
)


# ------------------------------------------------------------------------------------------------
# The styles index: {"styles": [{"name": ..., "title": ..., "repo_id": ..., "subfolder": ...}]}.

_INDEX_KEYS = {f.name for f in fields(Style)}
_index_cache: dict[tuple, list[dict]] = {}


def index_source() -> str | None:
    """The styles index in use: ``$SCENIMEFY_STYLES_INDEX``, else the user config file if present."""
    env = os.environ.get(INDEX_ENV)
    if env is not None:
        return env or None
    config = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config") / "scenimefy" / "styles.json"
    return str(config) if config.is_file() else None


def _index_file(source: str) -> Path:
    if not source.startswith("hf://"):
        return Path(source).expanduser()
    # hf://owner/repo/styles.json, hf://datasets/owner/repo/styles.json (cache only when offline)
    parts = source[len("hf://") :].split("/")
    repo_type = "model"
    if parts[0] in ("datasets", "spaces", "models"):
        repo_type, parts = parts[0][:-1], parts[1:]
    if len(parts) < 3:
        raise ValueError("expected hf://[datasets/]owner/repo/path/to/styles.json")
    return download.download_hub_file("/".join(parts[:2]), "/".join(parts[2:]), repo_type=repo_type)


def _read_index(source: str) -> list[dict]:
    path = _index_file(source)
    data = json.loads(path.read_text(encoding="utf-8"))
    entries = data.get("styles") if isinstance(data, dict) else data
    if not isinstance(entries, list):
        raise ValueError('expected {"styles": [{"name": ..., "repo_id": ...}, ...]}')
    for entry in entries:
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
            raise ValueError(f"every style needs a name, got {entry!r}")
        unknown = set(entry) - _INDEX_KEYS
        if unknown:
            raise ValueError(f"style {entry['name']!r}: unknown keys {sorted(unknown)} (known: {sorted(_INDEX_KEYS)})")
    return entries


def index_entries() -> list[dict]:
    """The index's style entries; a broken or unreachable index warns and counts as empty, so
    the app and the CLI still start."""
    source = index_source()
    if source is None:
        return []
    local = Path(source).expanduser()
    # Re-read a local file when it changes; a Hub index once per process (its download probes).
    key = (source, local.stat().st_mtime_ns if not source.startswith("hf://") and local.is_file() else None)
    if key not in _index_cache:
        try:
            _index_cache[key] = _read_index(source)
        except (OSError, ValueError, WeightsUnavailableError) as err:
            warnings.warn(f"styles index {source}: {err}; ignored", stacklevel=3)
            _index_cache[key] = []
    return _index_cache[key]


def _from_index(entry: dict, base: Style | None) -> Style:
    values = {k: v for k, v in entry.items() if k != "name"}
    if base is not None:  # re-point a built-in style: a new repo replaces its reference file
        if "repo_id" in values:
            values = {"filename": None, "url": None, "subfolder": None, **values}
        return replace(base, **values)
    values.setdefault("title", entry["name"].title())
    values.setdefault("description", f"Published translator {values.get('repo_id', '')}".strip())
    return Style(name=entry["name"], **values)


def styles() -> dict[str, Style]:
    """Styles by lower-case name: registered in code, then added or changed by the index."""
    merged = dict(_REGISTRY)
    for entry in index_entries():
        key = entry["name"].lower()
        try:
            merged[key] = _from_index(entry, merged.get(key))
        except TypeError as err:
            warnings.warn(f"styles index {index_source()}: style {entry['name']!r}: {err}; ignored", stacklevel=2)
    return merged


def get_style(name: str) -> Style:
    known = styles()
    try:
        return known[name.lower()]
    except KeyError:
        raise KeyError(f"unknown style {name!r}; known styles: {', '.join(sorted(known))}") from None


def env_var(name: str) -> str:
    return "SCENIMEFY_STYLE_" + re.sub(r"[^A-Z0-9]", "_", name.upper())


def cache_root() -> Path:
    return Path(os.environ.get("SCENIMEFY_CACHE", Path.home() / ".cache" / "scenimefy"))


def is_released(style: Style) -> bool:
    """Whether the style's weights are a released file the registry names (a download can get them).

    A style read from a translator folder on the Hub (``filename`` None) may not be published yet;
    messages never suggest downloading it unless the Hub has confirmed it exists.
    """
    return style.repo_id is not None and style.filename is not None


#: What the placeholder PATH stands for in the instructions below.
PATH_HELP = "PATH is a translator folder (config.json + *.safetensors), an authors' *_net_G.pth file or a Hub repo id"


def _how_to_fix(style: Style) -> str:
    """Instructions for whoever runs the CLI or the server: every line can be copied as it is."""
    name = style.name
    lines = [
        f"  - give weights: scenimefy stylize --weights {name}=PATH ...  (or: python app.py --weights {name}=PATH)",
        f"  - or set {env_var(name)}=PATH",
        f"  - in Python: ScenimefyPipeline.from_pretrained('PATH', style='{name}')",
    ]
    if is_released(style):
        lines.insert(0, f"  - run `scenimefy download {name}` once with internet access (fills the local cache)")
    if style.filename is None:
        lines.append(
            f"  - or point the style at a published translator in the styles index (${INDEX_ENV}, docs/publishing.md)"
        )
    return "\n".join([*lines, f"  {PATH_HELP}."])


def missing_weights_message(style: Style, reason: str) -> str:
    return f"style {style.name!r} ({style.title}): {reason}\nTo fix:\n{_how_to_fix(style)}"


def _converted_dir(style: Style, checkpoint: Path) -> Path:
    # The HF cache names blobs by content hash, so a new upstream file gets a new folder.
    return cache_root() / "converted" / style.name / Path(os.path.realpath(checkpoint)).name


def _convert_cached(style: Style, checkpoint: Path) -> Path:
    from scenimefy.hub.convert import convert_reference_translator

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


def _folder_file(style: Style, name: str) -> str:
    return f"{style.subfolder.strip('/')}/{name}" if style.subfolder else name


def _resolve_folder_repo(style: Style, cache_dir: str | os.PathLike | None) -> str:
    """Local snapshot of a published translator folder (config.json + safetensors)."""
    patterns = [_folder_file(style, "*.json"), _folder_file(style, "*.safetensors")]
    try:
        local = download.download_hub_folder(
            style.repo_id, repo_type=style.repo_type, cache_dir=cache_dir, allow_patterns=patterns
        )
    except WeightsUnavailableError as err:
        where = (
            "nothing of it is in the local cache and downloads are disabled (HF_HUB_OFFLINE=1)"
            if download.offline_mode()
            else "nothing of it is in the local cache and the Hub cannot be reached or does not have it"
        )
        reason = (
            f"no public weights found for the Hub repo {style.repo_id!r}: {where}; none may have been published yet."
        )
        raise WeightsUnavailableError(missing_weights_message(style, reason)) from err
    folder = local / style.subfolder if style.subfolder else local
    if not (folder / "config.json").is_file() or not any(folder.glob("*.safetensors")):
        where = style.subfolder or "its root"
        reason = f"the Hub repo {style.repo_id!r} holds no translator (config.json + *.safetensors) in {where}."
        raise WeightsUnavailableError(missing_weights_message(style, reason))
    return str(local)


def _folder_cached(style: Style, cache_dir: str | os.PathLike | None) -> bool:
    config = try_to_load_from_cache(
        style.repo_id, _folder_file(style, "config.json"), cache_dir=cache_dir, repo_type=style.repo_type
    )
    return isinstance(config, str) and any(Path(config).parent.glob("*.safetensors"))


def _folder_on_hub(style: Style) -> bool:
    """Whether the Hub has the style's translator (one bounded request; False when unreachable)."""
    if not download.hub_reachable():
        return False
    from huggingface_hub import HfApi

    try:
        return HfApi().file_exists(style.repo_id, _folder_file(style, "config.json"), repo_type=style.repo_type)
    except Exception:
        return False


def resolve_style(name: str, *, cache_dir: str | os.PathLike | None = None) -> tuple[str, str | None]:
    """``(source, subfolder)``: a local path or Hub repo id holding the translator of ``name``.

    Raises :class:`WeightsUnavailableError` with instructions when nothing usable is found.
    """
    style = get_style(name)
    override = os.environ.get(env_var(style.name))
    if override:
        return override, None
    if style.repo_id is None:
        raise WeightsUnavailableError(
            missing_weights_message(style, "no public weights have been released for this style.")
        )
    if style.filename is None:
        return _resolve_folder_repo(style, cache_dir), style.subfolder
    try:
        checkpoint = download.download_hub_file(
            style.repo_id, style.filename, repo_type=style.repo_type, cache_dir=cache_dir
        )
    except WeightsUnavailableError as hub_error:
        fallback = cache_root() / "downloads" / style.name / Path(style.filename).name
        if not fallback.is_file() and style.url:
            try:
                download.download_url(style.url, fallback)
            except WeightsUnavailableError:
                pass
        if not fallback.is_file():
            reason = "the weights are not in the local cache and " + (
                "downloads are disabled (HF_HUB_OFFLINE=1)."
                if download.offline_mode()
                else "neither the Hub nor the release URL could be reached."
            )
            raise WeightsUnavailableError(missing_weights_message(style, reason)) from hub_error
        checkpoint = fallback
    return str(_convert_cached(style, checkpoint)), None


def style_status(name: str, *, cache_dir: str | os.PathLike | None = None) -> str:
    """ "ready" (usable offline), "downloadable" (fetched on first use) or "needs weights"."""
    style = get_style(name)
    if os.environ.get(env_var(style.name)):
        return "ready"
    if style.repo_id is None:
        return "needs weights"
    if style.filename is None:
        if _folder_cached(style, cache_dir):
            return "ready"
        return "downloadable" if not download.offline_mode() and _folder_on_hub(style) else "needs weights"
    cached = try_to_load_from_cache(style.repo_id, style.filename, cache_dir=cache_dir, repo_type=style.repo_type)
    fallback = cache_root() / "downloads" / style.name / Path(style.filename).name
    if isinstance(cached, str) or fallback.is_file():
        return "ready"
    return "needs weights" if download.offline_mode() else "downloadable"


def style_source(name: str) -> str:
    """Where the weights of style ``name`` would come from, for listings (no network access)."""
    style = get_style(name)
    override = os.environ.get(env_var(style.name))
    if override:
        return f"{env_var(style.name)}={override}"
    if style.repo_id is None:
        return "no weights configured"
    where = style.repo_id if style.repo_type == "model" else f"{style.repo_type}s/{style.repo_id}"
    return f"hf://{where}/{style.filename or style.subfolder or ''}".rstrip("/")


def with_repo(name: str, repo_id: str, **changes) -> Style:
    """A copy of style ``name`` whose weights come from a translator folder on the Hub."""
    return replace(get_style(name), repo_id=repo_id, filename=None, url=None, **changes)
