"""The one writer of model and dataset cards (the ``README.md`` of a model folder or Hub repo).

Every card is YAML front matter (licence first) + a title + sections + a licence section + the
citation, rendered by :func:`render`. What a card says about training comes from the run's
*training record*, ``training_config.json`` next to the weights, which the training scripts write
(:func:`training_record`)::

    {"script": "train/finetune_stylegan.py", "steps": 1000, "uses_authors_weights": true,
     "data": {"train_data": "data/anime"}, "notes": ["CLIP and LPIPS were random ..."],
     "license": "s-lab", "provenance": "fine-tuned from outputs/stylegan-lhq ...", "config": {...}}

so a card states what really happened (random priors, trained from scratch, the data used) and the
licence that really applies: ``"s-lab"`` (weights derived from the authors' release, the S-Lab
License 1.0, non-commercial) or an SPDX id / ``"other"`` for weights that owe nothing to them.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

PAPER_URL = "https://arxiv.org/abs/2308.12968"
CODE_URL = "https://github.com/Yuxinn-J/Scenimefy"
S_LAB_LINK = "https://github.com/Yuxinn-J/Scenimefy/blob/main/LICENSE.md"
CITATION = """@inproceedings{jiang2023scenimefy,
  title={Scenimefy: Learning to Craft Anime Scene via Semi-Supervised Image-to-Image Translation},
  author={Jiang, Yuxin and Jiang, Liming and Yang, Shuai and Loy, Chen Change},
  booktitle={ICCV},
  year={2023}
}"""
#: ``license="s-lab"``: weights derived from the authors' release (converted or fine-tuned).
S_LAB = "s-lab"
#: The training record written next to final weights.
TRAINING_RECORD = "training_config.json"
#: Formats of the authors' released checkpoints: a source in one of them is derived from their weights.
RELEASE_SUFFIXES = (".pt", ".pth")


# ------------------------------------------------------------------------------------------------
# Pieces.


def license_front_matter(license: str) -> dict[str, str]:
    if license == S_LAB:
        return {"license": "other", "license_name": "s-lab-license-1.0", "license_link": S_LAB_LINK}
    return {"license": license}


def license_section(
    license: str, subject: str, provenance: str | None = None, uses_authors_weights: bool | None = None
) -> str:
    """The licence paragraph. ``uses_authors_weights=False`` (known from the training records) states
    that the S-Lab licence does not apply; None (unknown) keeps the caveat that it may."""
    where = f" {provenance[0].upper()}{provenance[1:].rstrip('.')}." if provenance else ""
    if license == S_LAB:
        return (
            f"## License\n\n{subject} are released under the [S-Lab License 1.0]({S_LAB_LINK}) of the Scenimefy "
            "authors' release: **non-commercial use only**, and redistributions (weights converted from or fine-tuned "
            f"on the authors' release included) must keep it.{where} The Scenimefy toolkit code that loads them is "
            "Apache-2.0.\n"
        )
    if uses_authors_weights is False:
        return (
            f"## License\n\n{subject}: `{license}`.{where} No weights of the Scenimefy authors were used, so their "
            "S-Lab License does not apply; the terms of the training data may.\n"
        )
    return (
        f"## License\n\n{subject}: `{license}`.{where} If they were converted from or fine-tuned on the Scenimefy "
        f"authors' weights, the [S-Lab License 1.0]({S_LAB_LINK}) (non-commercial) applies instead.\n"
    )


def citation_section() -> str:
    return f"## Citation\n\n[Paper]({PAPER_URL}) · [authors' code]({CODE_URL})\n\n```bibtex\n{CITATION}\n```\n"


def front_matter(card: str) -> dict:
    """The YAML front matter of a card's text ({} when it has none or it does not parse)."""
    if not card.startswith("---"):
        return {}
    try:
        return yaml.safe_load(card.split("---", 2)[1]) or {}
    except yaml.YAMLError:
        return {}


def render(
    front: Mapping[str, Any],
    title: str,
    sections: Sequence[str],
    *,
    license: str | None,
    subject: str = "These weights",
    provenance: str | None = None,
    uses_authors_weights: bool | None = None,
) -> str:
    """A whole card: front matter (licence keys first), ``# title``, sections, licence, citation.

    ``license=None`` leaves the licence to ``front`` and writes no licence section (dataset cards
    whose data terms are stated in their own sections).
    """
    head = {**(license_front_matter(license) if license else {}), **front}
    parts = [f"# {title}\n", *(s.rstrip() + "\n" for s in sections if s)]
    if license:
        parts.append(license_section(license, subject, provenance, uses_authors_weights))
    parts.append(citation_section())
    return "---\n" + yaml.safe_dump(head, sort_keys=False, allow_unicode=True) + "---\n\n" + "\n".join(parts)


# ------------------------------------------------------------------------------------------------
# Training records and the licence they imply.


def training_record(
    *,
    script: str,
    steps: int,
    config: Mapping[str, Any],
    data: Mapping[str, str],
    license: str,
    provenance: str,
    uses_authors_weights: bool,
    notes: Sequence[str] = (),
) -> dict[str, Any]:
    return {
        "script": script,
        "steps": steps,
        "uses_authors_weights": uses_authors_weights,
        "data": dict(data),
        "notes": list(notes),
        "license": license,
        "provenance": provenance,
        "config": dict(config),
    }


def parse_record(text: str) -> dict[str, Any] | None:
    """A training record from JSON text; None for anything else (e.g. a plain settings dict)."""
    try:
        record = json.loads(text)
    except json.JSONDecodeError:
        return None
    return record if isinstance(record, dict) and "script" in record else None


def read_record(folder: str | os.PathLike) -> dict[str, Any] | None:
    """The training record in ``folder`` or its parent (a run's output_dir), if there is one."""
    for where in (Path(folder), Path(folder).parent):
        path = where / TRAINING_RECORD
        if path.is_file():
            return parse_record(path.read_text(encoding="utf-8"))
    return None


def read_license(source: str | os.PathLike) -> str | None:
    """The licence a local model or dataset declares (training record, else card), or None."""
    path = Path(source)
    if path.suffix in RELEASE_SUFFIXES:
        return S_LAB
    record = read_record(path) if path.exists() else None
    if record and record.get("license"):
        return str(record["license"])
    for where in (path, path.parent):
        card = where / "README.md"
        if card.is_file():
            meta = front_matter(card.read_text(encoding="utf-8"))
            if meta.get("license_name") == "s-lab-license-1.0":
                return S_LAB
            if meta.get("license"):
                return str(meta["license"])
    return None


def inherited_license(sources: Mapping[str, str]) -> tuple[str, str, bool]:
    """(licence, provenance sentence, whether the authors' weights may be in it) of weights trained
    from ``sources``
    ({setting: path or Hub id} of the weights and generated data the run started from).

    A source whose licence cannot be read here (a converted folder without a card, a Hub id) is
    treated as derived from the authors' release: S-Lab.
    """
    used = {k: v for k, v in sources.items() if v}
    if not used:
        return "other", "trained from scratch with the Scenimefy toolkit", False
    found = {}
    for setting, value in used.items():
        found[setting] = read_license(value) if Path(value).exists() else None
    names = ", ".join(f"`{v}` ({k})" for k, v in used.items())
    unknown = [used[k] for k, lic in found.items() if lic is None]
    if unknown or S_LAB in found.values():
        why = (
            f"; the licence of {', '.join(f'`{u}`' for u in unknown)} is not recorded, so it is treated as derived "
            "from the authors' release"
            if unknown
            else ""
        )
        return S_LAB, f"derived from {names}{why}", True
    licenses = set(found.values())
    return (licenses.pop() if len(licenses) == 1 else "other"), f"derived from {names}", False


def resolve_license(setting: str, sources: Mapping[str, str]) -> tuple[str, str, bool]:
    """A training script's ``hub_license``: ``"auto"`` -> :func:`inherited_license`; anything
    else (an SPDX id, ``"s-lab"``, ``"other"``) is taken as given, with the same provenance."""
    license, provenance, uses_authors_weights = inherited_license(sources)
    return (license if setting == "auto" else setting), provenance, uses_authors_weights


# ------------------------------------------------------------------------------------------------
# Sections shared by the model cards.


def metrics_section(table: str, note: str = "") -> str:
    return "## Metrics\n\n" + table + (f"\n{note}\n" if note else "")


def metrics_table(metrics: Any) -> str:
    """A markdown table: ``{name: value}`` as two columns, ``evaluate --json`` rows as Table 1."""
    if isinstance(metrics, Mapping) and {"metric", "mean"} <= set(metrics):  # evaluate --metric lbce --json
        metrics = {str(metrics["metric"]).upper().replace("LBCE", "L_BCE"): metrics["mean"]}
    if isinstance(metrics, Mapping):
        lines = ["| Metric | Value |", "| :--- | ---: |"]
        lines += [f"| {k} | {v:.4g} |" if isinstance(v, float) else f"| {k} | {v} |" for k, v in metrics.items()]
        return "\n".join(lines) + "\n"
    if isinstance(metrics, (list, tuple)) and all(isinstance(r, Mapping) and "method" in r for r in metrics):
        from scenimefy.evaluation.fid import markdown_table, rows_from_json

        return markdown_table(rows_from_json(metrics))
    raise ValueError("metrics must be {name: value} or the rows written by `scenimefy evaluate --json`")


def training_section(record: Mapping[str, Any] | None, config_file: str | None) -> str:
    """What the training record says happened, or a pointer to a foreign configuration file."""
    if not config_file and not record:
        return ""
    if not record or "script" not in record:
        return f"## Training\n\nThe full configuration is in [`{config_file}`]({config_file}).\n"
    origin = str(record.get("provenance") or "")
    steps = record.get("steps", "?")
    lines = [
        f"Trained with `{record['script']}` of the Scenimefy toolkit for {steps} steps"
        + (f"; {origin}." if origin else ".")
    ]
    data = record.get("data") or {}
    if data:
        lines.append("\nData used:\n")
        lines += [f"- `{name}`: `{value}`" for name, value in data.items() if value]
    notes = record.get("notes") or []
    if notes:
        lines.append("")
        lines += [f"**Note:** {note}" for note in notes]
    if config_file:
        lines.append(f"\nEvery setting of the run is in [`{config_file}`]({config_file}).")
    return "## Training\n\n" + "\n".join(lines) + "\n"


def architecture_sentence(model_config: Mapping[str, Any]) -> str:
    """What network a translator folder holds, from its config (``_class_name`` picks full or lite)."""
    if model_config.get("_class_name") == "ScenimefyLiteTranslator":
        channels = ", ".join(str(c) for c in model_config.get("channels") or ())
        return (
            "A *Scenimefy-Lite* photo → anime-scene translator: a small student distilled from a full *Scenimefy* "
            f"translator (Jiang et al., ICCV 2023) for video, webcam and ONNX use (`ScenimefyLiteTranslator`, "
            f"widths ({channels}), {model_config.get('n_blocks')} residual blocks), saved as `config.json` + "
            "safetensors. It trades detail for speed: see docs/lite.md of the toolkit.\n"
        )
    return (
        "Photo → anime-scene translator of *Scenimefy* (Jiang et al., ICCV 2023): the CUT ResNet generator "
        f"(ngf {model_config.get('ngf')}, {model_config.get('n_blocks')} residual blocks), saved as `config.json` "
        "+ safetensors.\n"
    )


def translator_card(
    model_config: Mapping[str, Any],
    location: str,
    *,
    license: str,
    style: str | None = None,
    title: str | None = None,
    description: str | None = None,
    metrics: str | None = None,
    record: Mapping[str, Any] | None = None,
    config_file: str | None = None,
) -> str:
    """The card of a translator folder; ``location`` (Hub id or folder) goes into the usage snippets."""
    style_line = (
        f"\n# or, as the `{style}` style of the app and CLI (no code change):\n"
        f"# export SCENIMEFY_STYLE_{style.upper()}={location}"
        if style
        else ""
    )
    summary = (description + "\n\n" if description else "") + architecture_sentence(model_config)
    usage = (
        "## Usage\n\n```python\nfrom scenimefy import ScenimefyPipeline\n\n"
        f'pipe = ScenimefyPipeline.from_pretrained("{location}")\nimage = pipe("photo.jpg")  # PIL in, PIL out\n'
        'image.save("anime.png")\n```\n\n'
        f"```bash\nscenimefy stylize photos/ -o anime/ --weights {location}{style_line}\n```\n"
    )
    metrics_text = (
        metrics_section(
            metrics,
            "FID/KID against the anime reference set, L_BCE against the source photos "
            "(`scenimefy evaluate`, docs/evaluation.md).",
        )
        if metrics
        else ""
    )
    front = {
        "library_name": "scenimefy",
        "pipeline_tag": "image-to-image",
        "tags": [
            "scenimefy",
            "anime",
            "image-to-image",
            "style-transfer",
            *(["scenimefy-lite"] if model_config.get("_class_name") == "ScenimefyLiteTranslator" else []),
            *([style] if style else []),
        ],
    }
    return render(
        front,
        title
        or (
            "Scenimefy-Lite translator"
            if model_config.get("_class_name") == "ScenimefyLiteTranslator"
            else "Scenimefy translator"
        ),
        [summary, usage, metrics_text, training_section(record, config_file)],
        license=license,
        provenance=(record or {}).get("provenance"),
        uses_authors_weights=(record or {}).get("uses_authors_weights"),
    )


def stylegan_card(
    networks: Sequence[tuple[str, str]],
    location: str,
    *,
    license: str,
    title: str | None = None,
    description: str | None = None,
    metrics: str | None = None,
    record: Mapping[str, Any] | None = None,
    config_file: str | None = None,
) -> str:
    """The card of StyleGAN2 networks: ``networks`` = [(subfolder or "", class name)]."""
    classes = sorted({cls for _, cls in networks})
    lines = ["import torch", f"from scenimefy.models import {', '.join(classes)}", ""]
    for sub, cls in networks:
        arg = f', subfolder="{sub}"' if sub else ""
        lines.append(f'{sub or "model"} = {cls}.from_pretrained("{location}"{arg})')
    generator = next((sub or "model" for sub, cls in networks if cls == "StyleGAN2Generator"), None)
    if generator:
        lines += [
            f"w = {generator}.mapping(torch.randn(4, {generator}.style_dim))",
            f"images = {generator}(w)  # (4, 3, H, W) in [-1, 1]",
        ]
    summary = (
        (description + "\n\n" if description else "")
        + "StyleGAN2 network(s) of *Scenimefy* stage 1 (pseudo-pair generation, Jiang et al., ICCV 2023), "
        "saved as `config.json` + safetensors.\n"
    )
    usage = "## Usage\n\n```python\n" + "\n".join(lines) + "\n```\n"
    front = {
        "library_name": "scenimefy",
        "pipeline_tag": "unconditional-image-generation",
        "tags": ["scenimefy", "stylegan2", "anime", "unconditional-image-generation"],
    }
    return render(
        front,
        title or "Scenimefy StyleGAN2",
        [summary, usage, metrics_section(metrics) if metrics else "", training_section(record, config_file)],
        license=license,
        provenance=(record or {}).get("provenance"),
        uses_authors_weights=(record or {}).get("uses_authors_weights"),
    )


def write_model_folder_card(folder: str | os.PathLike, card: str, record: Mapping[str, Any]) -> None:
    """``README.md`` + ``training_config.json`` into a final model folder, each written atomically."""
    folder = Path(folder)
    for name, text in ((TRAINING_RECORD, json.dumps(record, indent=2, default=str) + "\n"), ("README.md", card)):
        tmp = folder / f".{name}.tmp"
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, folder / name)
