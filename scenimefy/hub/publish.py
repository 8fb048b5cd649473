"""Publish translators, StyleGAN2 networks and datasets to the Hugging Face Hub, with a card.

    publish_translator("outputs/translator-hosoda/translator", "scenimefy/hosoda-translator",
                       style="hosoda", metrics={"FID": 48.92}, training_config=config_dict)
    scenimefy publish translator DIR REPO_ID --dry-run OUT      # writes what would be uploaded

Each call first stages the repository: the files that belong in it (nothing else from the source
folder) plus a ``README.md`` from the one card writer, ``scenimefy.hub.cards``. ``dry_run_dir``
writes exactly that folder and uploads nothing; otherwise the staged folder goes up with
``create_repo`` + ``upload_folder``: the one upload path of the toolkit (the training scripts'
``--push_to_hub`` too), with the offline check and the token kept out of every message. The token
is huggingface_hub's (``HF_TOKEN`` or ``hf auth login``); this module never reads it except to
blank it out of error messages.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from scenimefy.hub import cards, download

logger = logging.getLogger(__name__)

S_LAB = cards.S_LAB
#: A dataset card with this key set to false must not go to a public repo (frames of films).
NO_REDISTRIBUTION_KEY = "scenimefy_redistributable"
_TRAINING_CONFIG_NAMES = (cards.TRAINING_RECORD, "training_config.yaml", "training_config.yml")


class PublishError(ValueError):
    """A folder that cannot be published as asked, or an upload that failed; the message says why."""


@dataclass
class PublishResult:
    repo_id: str
    repo_type: str
    files: list[str]  # repository paths, sorted
    folder: Path | None  # the dry-run folder (None after a real upload: the staging is deleted)
    url: str | None  # None for a dry run


# ------------------------------------------------------------------------------------------------
# Staging helpers.


def _link_or_copy(src: Path, dst: Path) -> None:
    # Hard links make staging a 15 GB dataset free; the card is always a new file, so the source
    # folder is never written through a link.
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def load_metrics(metrics: Mapping[str, Any] | Sequence[Mapping[str, Any]] | str | os.PathLike | None) -> Any:
    """Metrics as given, or read from a JSON file (e.g. ``scenimefy evaluate --json``)."""
    if metrics is None or isinstance(metrics, (Mapping, list, tuple)):
        return metrics
    path = Path(metrics)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as err:
        raise PublishError(f"metrics file {path}: {err}") from None


def _training_config(folder: Path, given: Mapping[str, Any] | str | os.PathLike | None) -> tuple[str, str] | None:
    """(repo file name, text) of the training config: as given, else a ``training_config.*``
    file in the folder or its parent (a training run's output_dir)."""
    if isinstance(given, Mapping):
        return cards.TRAINING_RECORD, json.dumps(dict(given), indent=2, default=str) + "\n"
    if given is not None:
        path = Path(given)
        if not path.is_file():
            raise PublishError(f"training config {path}: no such file")
        suffix = ".json" if path.suffix == ".json" else ".yaml"
        return "training_config" + suffix, path.read_text(encoding="utf-8")
    found = [where / name for where in (folder, folder.parent) for name in _TRAINING_CONFIG_NAMES]
    path = next((p for p in found if p.is_file()), None)
    return (path.name, path.read_text(encoding="utf-8")) if path else None


def _card_inputs(out: Path, src: Path, metrics: Any, training_config: Any, license: str | None):
    """Write metrics.json and the training config into ``out``; returns (metrics table, record,
    config file name, licence). ``license=None``: the training record's, else S-Lab."""
    metrics = load_metrics(metrics)
    table = None
    if metrics:
        (out / "metrics.json").write_text(json.dumps(metrics, indent=1) + "\n")
        try:
            table = cards.metrics_table(metrics)
        except ValueError as err:
            raise PublishError(str(err)) from None
    config = _training_config(src, training_config)
    record = None
    if config:
        (out / config[0]).write_text(config[1])
        record = cards.parse_record(config[1]) if config[0].endswith(".json") else None
    if license is None:
        license = str(record["license"]) if record and record.get("license") else S_LAB
    return table, record, config[0] if config else None, license


def _model_folders(folder: Path) -> list[Path]:
    """Folders holding config.json + *.safetensors: ``folder`` itself, or its direct subfolders."""

    def is_model(p: Path) -> bool:
        return (p / "config.json").is_file() and any(p.glob("*.safetensors"))

    if is_model(folder):
        return [folder]
    return sorted(p for p in folder.iterdir() if p.is_dir() and is_model(p)) if folder.is_dir() else []


def _check_safetensors(path: Path) -> None:
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            f.keys()
    except Exception as err:
        raise PublishError(f"{path}: not a readable safetensors file ({err})") from None


# ------------------------------------------------------------------------------------------------
# Staging per kind: each writes ``out``.


def stage_translator(
    folder: str | os.PathLike,
    out: str | os.PathLike,
    *,
    repo_id: str,
    style: str | None = None,
    title: str | None = None,
    description: str | None = None,
    metrics: Any = None,
    training_config: Mapping[str, Any] | str | os.PathLike | None = None,
    license: str | None = None,
) -> None:
    """Stage a translator folder (config.json + safetensors, or a run's ``translator/``) into ``out``."""
    from scenimefy.models.loading import load_translator_folder

    src = Path(folder)
    if (src / "translator" / "config.json").is_file() and not (src / "config.json").is_file():
        src = src / "translator"
    if not (src / "config.json").is_file() or not any(src.glob("*.safetensors")):
        raise PublishError(
            f"{folder}: not a translator folder (config.json + *.safetensors); convert a .pth with `scenimefy convert`"
        )
    try:  # never publish something ScenimefyPipeline.from_pretrained cannot load (full or lite translator)
        model = load_translator_folder(src)
    except Exception as err:
        raise PublishError(f"{src}: not loadable as a translator ({type(err).__name__}: {err})") from None
    out = Path(out)
    for path in [src / "config.json", *sorted(src.glob("*.safetensors"))]:
        _link_or_copy(path, out / path.name)
    table, record, config_file, license = _card_inputs(out, src, metrics, training_config, license)
    if style and title is None:
        from scenimefy.hub.styles import styles

        known = styles().get(style.lower())
        title = f"Scenimefy translator: {known.title if known else style} style"
    card = cards.translator_card(
        {**dict(model.config), "_class_name": type(model).__name__},
        repo_id,
        license=license,
        style=style,
        title=title,
        description=description,
        metrics=table,
        record=record,
        config_file=config_file,
    )
    (out / "README.md").write_text(card, encoding="utf-8")


def stage_stylegan2(
    folder: str | os.PathLike,
    out: str | os.PathLike,
    *,
    repo_id: str,
    title: str | None = None,
    description: str | None = None,
    metrics: Any = None,
    training_config: Mapping[str, Any] | str | os.PathLike | None = None,
    license: str | None = None,
) -> None:
    """Stage StyleGAN2 networks: a folder with config.json + safetensors, or one whose
    subfolders are (``generator/``, ``discriminator/`` as ``train_stylegan.py`` and
    ``scenimefy convert`` write them)."""
    src = Path(folder)
    models = _model_folders(src)
    if not models:
        raise PublishError(f"{folder}: no config.json + *.safetensors in it or in its subfolders")
    out = Path(out)
    networks = []
    for model_dir in models:
        rel = "" if model_dir == src else model_dir.name
        try:
            config = json.loads((model_dir / "config.json").read_text())
        except json.JSONDecodeError as err:
            raise PublishError(f"{model_dir / 'config.json'}: not JSON ({err})") from None
        for path in sorted(model_dir.glob("*.safetensors")):
            _check_safetensors(path)
            _link_or_copy(path, out / rel / path.name)
        _link_or_copy(model_dir / "config.json", out / rel / "config.json")
        networks.append((rel, config.get("_class_name", "StyleGAN2Generator")))
    table, record, config_file, license = _card_inputs(out, src, metrics, training_config, license)
    card = cards.stylegan_card(
        networks,
        repo_id,
        license=license,
        title=title,
        description=description,
        metrics=table,
        record=record,
        config_file=config_file,
    )
    (out / "README.md").write_text(card, encoding="utf-8")


def stage_dataset(
    folder: str | os.PathLike,
    out: str | os.PathLike,
    *,
    repo_id: str,
    private_repo: bool = False,
    title: str | None = None,
    description: str | None = None,
    license: str | None = None,
) -> None:
    """Stage a dataset folder (its README card kept, or a minimal one written) with all its files."""
    src = Path(folder)
    if not src.is_dir():
        raise PublishError(f"{folder}: no such folder")
    files = sorted(
        p for p in src.rglob("*") if p.is_file() and not any(part.startswith(".") for part in p.relative_to(src).parts)
    )
    data = [p for p in files if p.name != "README.md" or p.parent != src]
    if not data:
        raise PublishError(f"{folder}: no data files")
    card_path = src / "README.md"
    card = card_path.read_text(encoding="utf-8") if card_path.is_file() else ""
    if cards.front_matter(card).get(NO_REDISTRIBUTION_KEY) is False and not private_repo:
        raise PublishError(
            f"{folder}: its card says the data may not be redistributed (frames of commercial films); "
            "a public upload is refused. Use a private repo (--private) for your own copies."
        )
    out = Path(out)
    for path in data:
        _link_or_copy(path, out / path.relative_to(src))
    if not card:
        usage = f'Load with:\n\n```python\nimport datasets\nds = datasets.load_dataset("{repo_id}")\n```\n'
        card = cards.render(
            {"license": license or "other", "tags": ["scenimefy", "anime"], "task_categories": ["image-to-image"]},
            title or repo_id.split("/")[-1],
            [description or "", usage],
            license=None,
        )
    (out / "README.md").write_text(card, encoding="utf-8")


# ------------------------------------------------------------------------------------------------
# Publishing: stage, then dry-run or upload.


def _redact(text: str) -> str:
    from huggingface_hub import get_token

    try:
        token = get_token()
    except Exception:
        token = None
    return text.replace(token, "***") if token else text


def _upload(staged: Path, repo_id: str, repo_type: str, *, private: bool, token: str | None, message: str) -> str:
    from huggingface_hub import HfApi, constants
    from huggingface_hub.errors import HfHubHTTPError, LocalTokenNotFoundError

    if download.offline_mode():
        raise PublishError(
            "HF_HUB_OFFLINE is set: uploads are disabled (use --dry-run DIR to see what would be uploaded)"
        )
    if not download.host_reachable(constants.ENDPOINT):
        raise PublishError(f"cannot reach {constants.ENDPOINT}: nothing was uploaded (use --dry-run DIR offline)")
    api = HfApi(endpoint=constants.ENDPOINT, token=token)
    try:
        url = api.create_repo(repo_id, repo_type=repo_type, private=private, exist_ok=True)
        api.upload_folder(repo_id=url.repo_id, repo_type=repo_type, folder_path=str(staged), commit_message=message)
    except LocalTokenNotFoundError:
        raise PublishError("not logged in to the Hugging Face Hub: set HF_TOKEN or run `hf auth login`") from None
    except (HfHubHTTPError, OSError, ValueError) as err:
        # huggingface_hub messages carry server replies; make sure no credential rides along.
        raise PublishError(_redact(f"upload to {repo_type} {repo_id} failed: {err}")) from None
    return str(url)


def _work_dir(near: Path) -> Path:
    # Staging next to the source (or the dry-run target) keeps hard links and the final rename
    # on one file system; a read-only parent falls back to the temp folder.
    try:
        work = Path(tempfile.mkdtemp(prefix=".scenimefy-publish-", dir=near))
    except OSError:
        work = Path(tempfile.mkdtemp(prefix="scenimefy-publish-"))
    umask = os.umask(0)
    os.umask(umask)
    work.chmod(0o777 & ~umask)  # mkdtemp makes it private; the dry-run folder is an ordinary one
    return work


def _publish(
    stage, folder, repo_id: str, repo_type: str, *, dry_run_dir, private: bool, token: str | None, message: str, **kw
) -> PublishResult:
    if repo_id.count("/") != 1:
        raise PublishError(f"repo id must look like owner/name, got {repo_id!r}")
    if dry_run_dir is not None:
        target = Path(dry_run_dir)
        if target.exists() and (not target.is_dir() or any(target.iterdir())):
            raise PublishError(f"{target} exists and is not an empty folder: choose a new --dry-run folder")
        target.parent.mkdir(parents=True, exist_ok=True)
    work = _work_dir(Path(dry_run_dir).parent if dry_run_dir is not None else Path(folder).resolve().parent)
    try:
        stage(folder, work, repo_id=repo_id, **kw)
        files = sorted(p.relative_to(work).as_posix() for p in work.rglob("*") if p.is_file())
        if dry_run_dir is not None:
            if target.exists():
                target.rmdir()
            os.replace(work, target)  # the dry-run folder appears complete or not at all
            logger.info("dry run: %d files for %s %s written to %s", len(files), repo_type, repo_id, target)
            return PublishResult(repo_id, repo_type, files, target, None)
        logger.info("uploading %d files to %s %s", len(files), repo_type, repo_id)
        url = _upload(work, repo_id, repo_type, private=private, token=token, message=message)
        return PublishResult(repo_id, repo_type, files, None, url)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def publish_translator(
    folder: str | os.PathLike,
    repo_id: str,
    *,
    style: str | None = None,
    title: str | None = None,
    description: str | None = None,
    metrics: Any = None,
    training_config: Mapping[str, Any] | str | os.PathLike | None = None,
    license: str | None = None,
    private: bool = False,
    token: str | None = None,
    commit_message: str = "Upload Scenimefy translator",
    dry_run_dir: str | os.PathLike | None = None,
) -> PublishResult:
    """Publish a translator folder as a model repo (what ``train_translator.py --push_to_hub`` calls).

    ``metrics``: ``{name: value}``, ``evaluate --json`` rows, or a JSON file of either.
    ``training_config``: a dict, a file, or None to pick up ``training_config.*`` next to the folder
    (the training record ``train_translator.py`` writes there: what was trained, on what, licence).
    ``license``: ``"s-lab"`` (weights derived from the authors'), an SPDX id, or None: the training
    record's licence, else ``"s-lab"``.
    """
    card = {"title": title, "description": description, "metrics": metrics, "training_config": training_config}
    return _publish(
        stage_translator,
        folder,
        repo_id,
        "model",
        dry_run_dir=dry_run_dir,
        private=private,
        token=token,
        message=commit_message,
        style=style,
        license=license,
        **card,
    )


def publish_stylegan2(
    folder: str | os.PathLike,
    repo_id: str,
    *,
    title: str | None = None,
    description: str | None = None,
    metrics: Any = None,
    training_config: Mapping[str, Any] | str | os.PathLike | None = None,
    license: str | None = None,
    private: bool = False,
    token: str | None = None,
    commit_message: str = "Upload Scenimefy StyleGAN2",
    dry_run_dir: str | os.PathLike | None = None,
) -> PublishResult:
    """Publish StyleGAN2 networks (config.json + safetensors folders) as a model repo (what the
    StyleGAN2 scripts' ``--push_to_hub`` calls); ``license`` and ``training_config`` as for
    :func:`publish_translator`."""
    card = {"title": title, "description": description, "metrics": metrics, "training_config": training_config}
    return _publish(
        stage_stylegan2,
        folder,
        repo_id,
        "model",
        dry_run_dir=dry_run_dir,
        private=private,
        token=token,
        message=commit_message,
        license=license,
        **card,
    )


def publish_dataset(
    folder: str | os.PathLike,
    repo_id: str,
    *,
    title: str | None = None,
    description: str | None = None,
    license: str | None = None,
    private: bool = False,
    token: str | None = None,
    commit_message: str = "Upload dataset",
    dry_run_dir: str | os.PathLike | None = None,
) -> PublishResult:
    """Publish a dataset folder (README card + data files) as a dataset repo. Datasets whose card
    forbids redistribution (``scenimefy dataset anime`` output) only go to private repos."""
    card = {"title": title, "description": description, "license": license}
    return _publish(
        stage_dataset,
        folder,
        repo_id,
        "dataset",
        dry_run_dir=dry_run_dir,
        private=private,
        token=token,
        message=commit_message,
        private_repo=private,
        **card,
    )
