"""Typed configuration loaded from YAML.

Every component has its own pydantic model deriving from ``StrictModel``: unknown keys and wrong
types are errors, and ``load_config`` reports them as ``file: dotted.key: reason`` so a typo in a
config names itself. YAML files hold only what differs from the defaults.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

M = TypeVar("M", bound=BaseModel)


class ConfigError(ValueError):
    """A configuration file or value that cannot be used; the message names the file and key."""


class StrictModel(BaseModel):
    """Base of every config: no unknown keys, no silent type coercion, immutable."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True, validate_default=True)

    renamed_keys: ClassVar[dict[str, str]] = {}
    """Keys the model had under another name (old -> new): a config still using one is told the new."""


def positive(values: list[float], what: str) -> list[float]:
    """``values`` if every one is above 0, else the ``ValueError`` a list field's validator raises."""
    if any(v <= 0 for v in values):
        raise ValueError(f"{what} must be positive, got {values}")
    return values


def _describe(error: ValidationError, source: str, renamed: dict[str, str]) -> str:
    lines = []
    for item in error.errors():
        key = ".".join(str(part) for part in item["loc"]) or "<top level>"
        reason = "unknown key" if item["type"] == "extra_forbidden" else item["msg"]
        if item["type"] == "extra_forbidden" and key in renamed:
            reason += f" ('{key}' is now '{renamed[key]}')"
        lines.append(f"{source}: {key}: {reason}")
    return "\n".join(lines)


def parse_config(model: type[M], data: dict[str, Any] | None, source: str = "<config>") -> M:
    """Validate a mapping against ``model``; errors name ``source`` and the dotted key."""
    try:
        # JSON mode: strict about types, yet accepts YAML lists where a tuple is declared and
        # strings where a path is.
        return model.model_validate_json(json.dumps(data or {}, default=str))
    except ValidationError as error:
        raise ConfigError(_describe(error, source, model.renamed_keys)) from None


class DuplicateKey(yaml.YAMLError):
    """A mapping in a YAML file that gives one key twice."""

    def __init__(self, key: object, line: int, first: int) -> None:
        super().__init__(f"line {line}: duplicate key {key!r} (first given on line {first})")


class _UniqueKeyLoader(yaml.SafeLoader):
    """YAML's safe loader, refusing a key given twice in one mapping: plain YAML keeps the last
    value silently, so a config that sets a key twice would run with a value the reader may not
    see. Keys merged in with ``<<`` may still be overridden, which is what merging is for."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen: dict[object, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge" or not isinstance(key_node, yaml.ScalarNode):
                continue
            key = self.construct_object(key_node)
            line = key_node.start_mark.line + 1
            if key in seen:
                raise DuplicateKey(key, line, seen[key])
            seen[key] = line
        return super().construct_mapping(node, deep=deep)


def load_config(model: type[M], path: str | Path) -> M:
    """Load a YAML file into ``model``.

    Raises ``ConfigError`` naming the file for a missing file, invalid YAML, a key given twice in
    one mapping, a top level that is not a mapping, an unknown key or a wrong type.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: no such config file")
    try:
        data = yaml.load(path.read_text(), Loader=_UniqueKeyLoader)
    except DuplicateKey as error:
        raise ConfigError(f"{path}: {error}") from None
    except yaml.YAMLError as error:
        raise ConfigError(f"{path}: invalid YAML: {error}") from None
    if data is not None and not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of keys, got {type(data).__name__}")
    return parse_config(model, data, str(path))
