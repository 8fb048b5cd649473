"""Which translator a saved folder holds: config.json's ``_class_name`` picks the class.

Both translators save as ``config.json`` + safetensors and write their class name into the
config (``"_class_name": "ScenimefyLiteTranslator"``), so every loader (the pipeline, publishing,
the cards, the distillation stage) builds the right network from the folder alone. A config
without a class name (older folders, hand-written configs) is the full translator.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from torch import nn

from scenimefy.models.lite import ScenimefyLiteTranslator
from scenimefy.models.translator import ScenimefyTranslator

#: Translator classes by the name config.json records.
TRANSLATORS: dict[str, type] = {cls.__name__: cls for cls in (ScenimefyTranslator, ScenimefyLiteTranslator)}


class UnknownTranslatorError(ValueError):
    """A config.json naming a class that is not a translator; the message names the known ones."""


def read_config(folder: str | os.PathLike) -> dict[str, Any]:
    """The config.json of a translator folder, as a dict."""
    path = Path(folder) / "config.json"
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as err:
        raise UnknownTranslatorError(f"{path}: not a readable translator config ({err})") from None


def translator_class(config: Mapping[str, Any] | str | os.PathLike) -> type:
    """The class of a translator config (a dict or a folder holding config.json)."""
    values = config if isinstance(config, Mapping) else read_config(config)
    name = values.get("_class_name") or ScenimefyTranslator.__name__
    if name not in TRANSLATORS:
        raise UnknownTranslatorError(
            f"config.json names {name!r}, which is not a translator (known: {', '.join(sorted(TRANSLATORS))})"
        )
    return TRANSLATORS[name]


def load_translator_folder(folder: str | os.PathLike) -> nn.Module:
    """The translator saved in ``folder`` (config.json + safetensors), in eval mode."""
    return translator_class(folder).from_pretrained(folder).eval()


def is_lite(model_or_config: nn.Module | Mapping[str, Any]) -> bool:
    """Whether a translator (or its config) is the distilled lite architecture."""
    if isinstance(model_or_config, nn.Module):
        return isinstance(model_or_config, ScenimefyLiteTranslator)
    return model_or_config.get("_class_name") == ScenimefyLiteTranslator.__name__


def size_multiple(model: nn.Module) -> int:
    """Input sides must be multiples of this: 2 ** (number of downsamplings); 4 for the full translator."""
    return 2 ** len(model.down)


def model_fingerprint(model: nn.Module) -> str:
    """12 hex digits of a hash of the model's class, config and weights (names of cached files)."""
    import hashlib

    digest = hashlib.sha1(type(model).__name__.encode())
    config = {k: v for k, v in dict(getattr(model, "config", {})).items() if not k.startswith("_")}
    digest.update(json.dumps(config, sort_keys=True, default=list).encode())
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().float().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:12]
