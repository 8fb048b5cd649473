"""Typed settings of the ``train/`` scripts: one dataclass per stage, its ``--help``, YAML and flags.

A stage's settings are one dataclass. ``parse_config`` fills it from defaults, then an optional
YAML file (``--config``), then ``--key value`` / ``--key=value`` overrides, and refuses unknown
keys, so a typo fails at start-up instead of silently training with a default.

``--help`` is generated from the dataclass: every setting with its type, default and meaning. The
meaning is the field's trailing comment in the source (``size: int = 256  # resolution``), a
comment line above a group of fields becomes the heading of that group, and a field may instead
carry ``field(metadata={"help": ...})``.
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import inspect
import io
import json
import re
import textwrap
import tokenize
import typing
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TypeVar

import yaml

C = TypeVar("C")

SYNTAX = (
    "Settings: defaults, then the YAML file of --config, then flags (--key value or --key=value; "
    "--key-name works too). Lists: comma-separated (--nce_layers 0,4,8,12,16) or YAML ([0, 4, 8, 12, 16]). "
    "Booleans: true/false (a bare --flag means true). Optional settings take none."
)


class ConfigError(ValueError):
    """Settings that cannot work; the message names them and what to use instead."""


# ------------------------------------------------------------------------------------------------
# Values.


def _is_union(origin: Any) -> bool:
    return origin is typing.Union or (origin is not None and str(origin) == "<class 'types.UnionType'>")


def _coerce(value: Any, annotation: Any, key: str) -> Any:
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if annotation is Any or value is None:
        return value
    if _is_union(origin):
        if isinstance(value, str) and value.lower() in ("none", "null") and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _coerce(value, inner[0], key) if inner else value
    if origin in (list, tuple):
        if isinstance(value, str):
            text = value.strip()
            if text.startswith("["):  # YAML flow syntax on the command line: "[0, 4, 8]"
                value = yaml.safe_load(text)
            else:
                value = [v.strip() for v in text.split(",") if v.strip() != ""]
        if not isinstance(value, (list, tuple)):
            value = [value]
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
        raise ConfigError(f"--{key}: expected true or false, got {value!r}")
    if annotation in (int, float, str):
        if annotation is int and isinstance(value, float) and value.is_integer():
            return int(value)
        try:
            return annotation(value)
        except (TypeError, ValueError):
            raise ConfigError(f"--{key}: expected {annotation.__name__}, got {value!r}") from None
    return value


def config_from_dict(cls: type[C], values: dict[str, Any]) -> C:
    """Build dataclass ``cls`` from ``values``, converting types and refusing unknown keys."""
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(values) - set(names))
    if unknown:
        hints_text = []
        for key in unknown:
            close = difflib.get_close_matches(key, names, n=1)
            hints_text.append(f"--{key}" + (f" (did you mean --{close[0]}?)" if close else ""))
        raise ConfigError(f"unknown setting(s) {', '.join(hints_text)} for {cls.__name__}; --help lists them all")
    try:
        return cls(**{k: _coerce(v, hints[k], k) for k, v in values.items()})
    except ConfigError:
        raise
    except (TypeError, ValueError) as err:  # a __post_init__ refusing a combination
        raise ConfigError(str(err)) from None


def config_to_dict(config: Any) -> dict[str, Any]:
    return json.loads(json.dumps(dataclasses.asdict(config), default=str))


# ------------------------------------------------------------------------------------------------
# Help text from the dataclass.


@dataclasses.dataclass
class FieldDoc:
    name: str
    type: str  # e.g. INT, FLOAT|none, INT,INT,...
    default: str
    help: str
    section: str | None


def type_name(annotation: Any) -> str:
    """How a setting's type reads in ``--help``: INT, FLOAT, STR, BOOL, INT|none, INT,INT,..."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if _is_union(origin):
        inner = [type_name(a) for a in args if a is not type(None)]
        return "|".join(inner) + ("|none" if type(None) in args else "")
    if origin in (list, tuple):
        item = type_name(args[0]) if args else "VALUE"
        return f"{item},{item},..."
    if annotation is bool:
        return "BOOL"
    return getattr(annotation, "__name__", str(annotation)).upper()


def format_value(value: Any) -> str:
    """A value as it would be typed on the command line."""
    if value is None:
        return "none"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, (list, tuple)):
        return ",".join(format_value(v) for v in value)
    if value == "":
        return '""'
    return str(value)


_FIELD_LINE = re.compile(r"^    (\w+)\s*:")


def _statement_comment(lines: list[str]) -> str | None:
    """The comment of the statement starting at ``lines[0]`` (it may span lines, as formatters wrap
    long defaults in brackets); None if it has none."""
    for end in range(1, min(len(lines), 12) + 1):
        text = textwrap.dedent("\n".join(lines[:end])) + "\n"
        try:
            tokens = list(tokenize.generate_tokens(io.StringIO(text).readline))
        except (tokenize.TokenError, IndentationError, SyntaxError):
            continue  # an unclosed bracket: the statement goes on
        comments = [t.string.lstrip("#").strip() for t in tokens if t.type == tokenize.COMMENT]
        return " ".join(comments) or None
    return None


def _source_docs(klass: type) -> dict[str, tuple[str | None, str | None]]:
    """{field: (its comment, section heading)} parsed from ``klass``'s own source."""
    try:
        lines = textwrap.dedent(inspect.getsource(klass)).splitlines()
    except (OSError, TypeError):
        return {}
    own = set(klass.__dict__.get("__annotations__", {}))
    docs: dict[str, tuple[str | None, str | None]] = {}
    section: str | None = None
    block: list[str] = []
    for i, line in enumerate(lines[1:], start=1):
        stripped = line.strip()
        if not stripped:
            block = []
            continue
        if stripped.startswith("#") and line.startswith("    ") and not line.startswith("     "):
            block.append(stripped.lstrip("#").strip())
            continue
        match = _FIELD_LINE.match(line)
        if match and match.group(1) in own:
            if block:
                section, block = " ".join(block), []
            docs[match.group(1)] = (_statement_comment(lines[i:]), section)
        elif not line.startswith("     "):
            block = []
    return docs


def field_docs(cls: type) -> list[FieldDoc]:
    """Every setting of dataclass ``cls`` (inherited ones first) with its type, default and meaning."""
    parsed: dict[str, tuple[str | None, str | None]] = {}
    for klass in reversed(cls.__mro__):
        if dataclasses.is_dataclass(klass):
            parsed.update(_source_docs(klass))
    hints = typing.get_type_hints(cls)
    out = []
    for f in dataclasses.fields(cls):
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
        comment, section = parsed.get(f.name, (None, None))
        out.append(
            FieldDoc(
                f.name,
                type_name(hints[f.name]),
                format_value(default),
                f.metadata.get("help") or comment or "",
                section,
            )
        )
    return out


class _HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Wraps help without splitting paths and names at hyphens, at most 120 columns."""

    def __init__(self, prog: str) -> None:
        super().__init__(prog, max_help_position=34, width=120)

    def _split_lines(self, text: str, width: int) -> list[str]:
        return textwrap.wrap(" ".join(text.split()), width, break_on_hyphens=False, break_long_words=False)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> typing.NoReturn:
        raise ConfigError(f"{message} (--help lists every setting)")


def build_parser(cls: type, description: str | None = None, prog: str | None = None) -> argparse.ArgumentParser:
    """The argparse parser of dataclass ``cls``: ``--config`` and one ``--<field>`` per setting."""
    parser = _Parser(
        prog=prog,
        description=description or cls.__doc__,
        epilog=textwrap.fill(SYNTAX, 100, break_on_hyphens=False),
        formatter_class=_HelpFormatter,
        allow_abbrev=False,
    )
    parser.add_argument("--config", metavar="FILE.yaml", help="YAML file of settings (flags override it)")
    groups: dict[str | None, Any] = {}
    for doc in field_docs(cls):
        if doc.section not in groups:
            title, rest = _split_heading(doc.section or "settings")
            groups[doc.section] = parser.add_argument_group(title, rest)
        options: dict[str, Any] = {"dest": doc.name, "default": argparse.SUPPRESS, "metavar": doc.type}
        if doc.type == "BOOL":
            options.update(nargs="?", const="true")
        help_text = f"{doc.help} (default: {doc.default})" if doc.help else f"(default: {doc.default})"
        groups[doc.section].add_argument(f"--{doc.name}", help=help_text.replace("%", "%%"), **options)
    return parser


def _split_heading(text: str) -> tuple[str, str | None]:
    """ "Data: an image folder ..." -> ("Data", "an image folder ..."); a colon inside brackets stays."""
    depth = 0
    for i, char in enumerate(text):
        depth += {"(": 1, ")": -1}.get(char, 0)
        if char == ":" and depth == 0:
            return text[:i].strip(), text[i + 1 :].strip() or None
    return text.rstrip("."), None


def _normalise_flags(argv: Sequence[str]) -> list[str]:
    """``--key-name`` -> ``--key_name`` (the value after ``=`` untouched)."""
    out = []
    for token in argv:
        if token.startswith("--") and len(token) > 2:
            key, eq, value = token[2:].partition("=")
            token = "--" + key.replace("-", "_") + eq + value
        out.append(token)
    return out


def load_yaml_settings(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"--config {path}: no such file")
    try:
        loaded = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise ConfigError(f"--config {path}: not valid YAML ({str(err).splitlines()[0]})") from None
    if not isinstance(loaded, dict):
        raise ConfigError(f"--config {path} must hold a mapping of settings")
    return loaded


def parse_config(
    cls: type[C], argv: Sequence[str] | None = None, description: str | None = None, prog: str | None = None
) -> C:
    """``--config FILE.yaml`` then ``--key value`` overrides -> an instance of dataclass ``cls``.

    ``--help`` prints every setting and exits; anything that cannot be parsed raises ConfigError.
    """
    import sys

    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(cls, description, prog)
    args, rest = parser.parse_known_args(_normalise_flags(argv))
    for token in rest:
        if token.startswith("--"):
            config_from_dict(cls, {token[2:].partition("=")[0]: None})  # raises the "unknown setting" message
        raise ConfigError(f"unexpected argument {token!r}; settings are given as --key value")
    values = load_yaml_settings(args.config) if args.config else {}
    values.update({k: v for k, v in vars(args).items() if k != "config"})
    return config_from_dict(cls, values)
