"""Fetching files and folders from the Hugging Face Hub (or a plain URL) without ever hanging.

``huggingface_hub`` retries unreachable hosts for ~25 s before giving up. Before any online
attempt we probe the endpoint once (DNS + TCP connect, a few seconds at most); when it cannot
be reached we behave as with ``HF_HUB_OFFLINE=1``: the local cache or a clear error.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import tempfile
import urllib.request
from pathlib import Path
from urllib.parse import urlparse

from huggingface_hub import constants, hf_hub_download, snapshot_download
from huggingface_hub.errors import EntryNotFoundError, LocalEntryNotFoundError, RepositoryNotFoundError

PROBE_TIMEOUT_S = 3.0
#: The paper's segmenter (ADE20K semantic, Swin-B 384 IN21k), stage 2 and the L_BCE metric.
DEFAULT_SEGMENTER = "facebook/mask2former-swin-base-IN21k-ade-semantic"


class WeightsUnavailableError(RuntimeError):
    """Weights that are neither cached locally nor reachable; the message says what to do."""


def offline_mode() -> bool:
    return bool(constants.HF_HUB_OFFLINE)


def host_reachable(url: str, timeout: float = PROBE_TIMEOUT_S) -> bool:
    """One DNS lookup and TCP connect to ``url``'s host, bounded by ``timeout`` seconds."""
    parsed = urlparse(url)
    host, port = parsed.hostname, parsed.port or (443 if parsed.scheme == "https" else 80)
    if not host:
        return False
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def hub_reachable() -> bool:
    return not offline_mode() and host_reachable(constants.ENDPOINT)


def download_hub_file(
    repo_id: str,
    filename: str,
    *,
    repo_type: str = "model",
    revision: str | None = None,
    cache_dir: str | os.PathLike | None = None,
) -> Path:
    """Path to ``filename`` of ``repo_id``: from the cache when offline, else downloaded."""
    online = hub_reachable()
    try:
        return Path(
            hf_hub_download(
                repo_id,
                filename,
                repo_type=repo_type,
                revision=revision,
                cache_dir=cache_dir,
                local_files_only=not online,
            )
        )
    except (LocalEntryNotFoundError, EntryNotFoundError, RepositoryNotFoundError, OSError) as err:
        where = "the Hugging Face cache (offline)" if not online else "the Hub"
        raise WeightsUnavailableError(
            f"{repo_type} {repo_id!r} file {filename!r} is not available from {where}: {err}"
        ) from None


def download_hub_folder(
    repo_id: str,
    *,
    repo_type: str = "model",
    revision: str | None = None,
    cache_dir: str | os.PathLike | None = None,
    allow_patterns: list[str] | None = None,
) -> Path:
    """Local snapshot of a Hub repository (cache only when offline)."""
    online = hub_reachable()
    try:
        return Path(
            snapshot_download(
                repo_id,
                repo_type=repo_type,
                revision=revision,
                cache_dir=cache_dir,
                allow_patterns=allow_patterns,
                local_files_only=not online,
            )
        )
    except (LocalEntryNotFoundError, RepositoryNotFoundError, OSError) as err:
        where = "the Hugging Face cache (offline)" if not online else "the Hub"
        raise WeightsUnavailableError(f"{repo_type} {repo_id!r} is not available from {where}: {err}") from None


def download_url(url: str, dest: str | os.PathLike, *, timeout: float = 30.0) -> Path:
    """Download ``url`` to ``dest`` atomically (a partial file never takes its final name)."""
    dest = Path(dest)
    if offline_mode() or not host_reachable(url):
        raise WeightsUnavailableError(f"cannot reach {url} (offline)")
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=dest.name, suffix=".part")
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as response:
            shutil.copyfileobj(response, out)
        os.replace(tmp, dest)
    except OSError as err:
        raise WeightsUnavailableError(f"download of {url} failed: {err}") from None
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return dest


_HUB_PART = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


def looks_local(value: str | os.PathLike, *, owner_folder: bool = True) -> bool:
    """True when ``value`` must be a local path: it exists, or it cannot be a Hub id ``owner/name``.

    ``owner_folder``: also ``out/x`` where ``out/`` is a folder here (a mistyped local path is
    then never looked up on the Hub).
    """
    text = str(value)
    if not text or Path(text).expanduser().exists():
        return True
    if text.startswith((".", "/", "~")) or "\\" in text or os.sep != "/" and os.sep in text:
        return True
    parts = text.split("/")
    if len(parts) != 2 or not all(_HUB_PART.fullmatch(p) and ".." not in p and "--" not in p for p in parts):
        return True  # a Hub id is exactly owner/name
    return owner_folder and Path(parts[0]).is_dir()


def segmenter_folder(name_or_path: str | os.PathLike = DEFAULT_SEGMENTER) -> Path:
    """A local folder with the Mask2Former files: as given, or the Hub snapshot (never hangs)."""
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        return path
    name = str(name_or_path)
    advice = (
        "Download it once with internet access (run this command online, or `huggingface-cli download "
        f"{name if name.count('/') == 1 else DEFAULT_SEGMENTER}`), or pass a local folder saved with "
        "Mask2FormerForUniversalSegmentation.save_pretrained (config.json + model.safetensors)."
    )
    if looks_local(name, owner_folder=False):
        raise WeightsUnavailableError(f"Mask2Former weights: {name!r} is not a folder. {advice}")
    try:
        folder = download_hub_folder(name, allow_patterns=["config.json", "preprocessor_config.json", "*.safetensors"])
        if not any(folder.glob("*.safetensors")):  # older repos hold only a pickle; loaded weights_only
            download_hub_file(name, "pytorch_model.bin")
    except (WeightsUnavailableError, ValueError):
        raise WeightsUnavailableError(
            f"Mask2Former weights {name!r} are neither a local folder nor in the Hugging Face cache, "
            f"and the Hub cannot be reached (or is switched off by HF_HUB_OFFLINE). {advice}"
        ) from None
    return folder


def load_segmenter(name_or_path: str | os.PathLike = DEFAULT_SEGMENTER, *, shortest_edge: int | None = None):
    """A :class:`scenimefy.models.SemanticSegmenter` from a local folder or a Hub id (cache only when offline)."""
    from scenimefy.models.segmenter import SemanticSegmenter

    return SemanticSegmenter.from_pretrained(segmenter_folder(name_or_path), shortest_edge=shortest_edge)
