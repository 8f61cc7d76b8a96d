"""Typed configuration loaded from YAML.

Every component has its own pydantic model deriving from ``StrictModel``: unknown keys and wrong
types are errors, and ``load_config`` reports them as ``file: dotted.key: reason`` so a typo in a
config names itself. YAML files hold only what differs from the defaults.
"""

from __future__ import annotations

import json
from pathlib import Path
from types import UnionType
from typing import Any, ClassVar, TypeVar, Union, get_args, get_origin

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


def _config_model(annotation: Any) -> type[BaseModel] | None:
    """The config model a field holds: its type, or the one model of an optional one."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    if get_origin(annotation) in (Union, UnionType):
        models = [arg for arg in get_args(annotation) if isinstance(arg, type) and issubclass(arg, BaseModel)]
        if len(models) == 1 and len(get_args(annotation)) == len(models) + 1 and type(None) in get_args(annotation):
            return models[0]
    return None


def with_field_defaults(model: type[BaseModel], data: Any) -> Any:
    """``data`` with every mapping given for a field whose default sets some of its keys laid over
    that default: the revision model's ``training`` defaults to 300 steps at 1e-3 on 512 tokens, not
    ``TrainSettings``' 1,100 at 3e-3 on 256, and ``training: {save_steps: 25}`` must not silently
    bring the generic ones back. Nested configs are walked the same way."""
    if not isinstance(data, dict):
        return data
    out = dict(data)
    for name, field in model.model_fields.items():
        if name not in data:
            continue
        value, default = data[name], field.default
        if isinstance(default, BaseModel) and default.model_fields_set and isinstance(value, dict):
            value = {**default.model_dump(mode="json", include=default.model_fields_set), **value}
        inner = _config_model(field.annotation)
        out[name] = value if inner is None else with_field_defaults(inner, value)
    return out


def parse_config(model: type[M], data: dict[str, Any] | None, source: str = "<config>") -> M:
    """Validate a mapping against ``model``; errors name ``source`` and the dotted key. A mapping
    changes only the keys it names (``with_field_defaults``)."""
    try:
        # JSON mode: strict about types, yet accepts YAML lists where a tuple is declared and
        # strings where a path is.
        return model.model_validate_json(json.dumps(with_field_defaults(model, data or {}), default=str))
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
