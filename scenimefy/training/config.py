"""Plumbing shared by the ``train/`` scripts: typed configs and accelerate checkpoints.

A stage's settings are one dataclass. ``parse_config`` fills it from defaults, then an optional
YAML file (``--config``), then ``--key value`` / ``--key=value`` overrides, and refuses unknown
keys, so a typo fails at start-up instead of silently training with a default.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import typing
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TypeVar

import yaml

C = TypeVar("C")


class ConfigError(ValueError):
    pass


def _coerce(value: Any, annotation: Any, key: str) -> Any:
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if annotation is Any or value is None:
        return value
    if origin is typing.Union or (origin is not None and str(origin) == "<class 'types.UnionType'>"):
        if value in ("none", "None", "null") and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _coerce(value, inner[0], key) if inner else value
    if origin in (list, tuple):
        if isinstance(value, str):
            value = [v for v in value.split(",") if v != ""]
        item = args[0] if args else Any
        items = [_coerce(v, item, key) for v in value]
        return tuple(items) if origin is tuple else items
    if annotation is bool:
        if isinstance(value, bool):
            return value
        if str(value).lower() in ("1", "true", "yes", "on"):
            return True
        if str(value).lower() in ("0", "false", "no", "off"):
            return False
        raise ConfigError(f"{key}: expected a boolean, got {value!r}")
    if annotation in (int, float, str):
        try:
            return annotation(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{key}: expected {annotation.__name__}, got {value!r}") from None
    return value


def config_from_dict(cls: type[C], values: dict[str, Any]) -> C:
    """Build dataclass ``cls`` from ``values``, converting types and refusing unknown keys."""
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - names)
    if unknown:
        raise ConfigError(f"unknown setting(s) {unknown} for {cls.__name__}; known: {sorted(names)}")
    return cls(**{k: _coerce(v, hints[k], k) for k, v in values.items()})


def parse_config(cls: type[C], argv: Sequence[str] | None = None, description: str | None = None) -> C:
    """``--config FILE.yaml`` then ``--key value`` overrides -> an instance of dataclass ``cls``."""
    parser = argparse.ArgumentParser(description=description or cls.__doc__)
    parser.add_argument("--config", type=Path, help="YAML file with settings (CLI flags override it)")
    args, rest = parser.parse_known_args(argv)
    values: dict[str, Any] = {}
    if args.config is not None:
        if not args.config.is_file():
            raise ConfigError(f"config file not found: {args.config}")
        loaded = yaml.safe_load(args.config.read_text()) or {}
        if not isinstance(loaded, dict):
            raise ConfigError(f"{args.config} must hold a mapping of settings")
        values.update(loaded)
    i = 0
    while i < len(rest):
        token = rest[i]
        if not token.startswith("--"):
            raise ConfigError(f"unexpected argument {token!r}; settings are given as --key value")
        key, eq, value = token[2:].partition("=")
        key = key.replace("-", "_")
        if not eq:
            if i + 1 >= len(rest) or rest[i + 1].startswith("--"):
                value = "true"  # a bare flag switches a boolean on
            else:
                i += 1
                value = rest[i]
        values[key] = value
        i += 1
    return config_from_dict(cls, values)


def config_to_dict(config: Any) -> dict[str, Any]:
    return json.loads(json.dumps(dataclasses.asdict(config), default=str))
