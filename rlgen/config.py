"""Typed dataclass configs filled from YAML presets and ``--set key=value`` overrides.

Every algorithm has one ``*Config`` dataclass; each field has a default and a
one-line help in ``field(metadata={"help": ...})``. This module turns plain
dicts (from YAML) and ``key=value`` strings (from the CLI) into those
dataclasses, checking every key and type so that a typo fails with a
``ValueError`` naming the field, the value and what is allowed.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from pathlib import Path
from typing import Any, Literal, TypeVar, get_args, get_origin

import yaml

from rlgen.errors import InputError

C = TypeVar("C")


def field_help(cls: type, name: str) -> str:
    """The one-line help of a dataclass field (empty if none was given)."""
    for f in dataclasses.fields(cls):
        if f.name == name:
            return f.metadata.get("help", "")
    return ""


def _type_name(tp: Any) -> str:
    origin = get_origin(tp)
    if origin is Literal:
        return " | ".join(repr(a) for a in get_args(tp))
    if origin in (typing.Union, types.UnionType):
        return " | ".join(_type_name(a) for a in get_args(tp))
    if origin in (list, tuple):
        return f"list of {_type_name(get_args(tp)[0])}" if get_args(tp) else "list"
    return getattr(tp, "__name__", str(tp))


def coerce(value: Any, tp: Any, where: str) -> Any:
    """Convert ``value`` (already YAML-parsed) to type ``tp`` or raise ``ValueError``.

    Ints are accepted for float fields (``1e-3`` and ``1000`` both work), and
    floats with no fractional part for int fields (``5e4`` steps), since that
    is how people write hyperparameters.
    """
    origin = get_origin(tp)
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if not isinstance(value, dict):
            raise InputError(f"{where}: expected a mapping of {tp.__name__} fields, got {value!r}")
        return from_dict(tp, value, prefix=f"{where}.")
    if tp is Any:
        return value
    if origin is Literal:
        allowed = get_args(tp)
        if value in allowed:
            return value
        raise InputError(f"{where}={value!r} is not allowed; choose one of {', '.join(map(repr, allowed))}")
    if origin in (typing.Union, types.UnionType):
        args = get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return coerce(value, arg, where)
            except ValueError as exc:
                errors.append(str(exc))
        raise InputError(f"{where}={value!r} is not a {_type_name(tp)}")
    if origin in (list, tuple):
        (item_tp, *_) = get_args(tp) or (Any,)
        if isinstance(value, (int, float, str)) and not isinstance(value, bool) and origin is list:
            value = [value]
        if not isinstance(value, (list, tuple)):
            raise InputError(f"{where}={value!r} is not a {_type_name(tp)}")
        items = [coerce(v, item_tp, f"{where}[{i}]") for i, v in enumerate(value)]
        return origin(items)
    if origin is dict:
        if not isinstance(value, dict):
            raise InputError(f"{where}={value!r} is not a mapping")
        return dict(value)
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise InputError(f"{where}={value!r} is not a bool; use true or false")
    if tp is int:
        if isinstance(value, bool):
            raise InputError(f"{where}={value!r} is not an int")
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str):
            try:
                as_float = float(value)
            except ValueError:
                as_float = None
            if as_float is not None and as_float.is_integer():
                return int(as_float)
        raise InputError(f"{where}={value!r} is not an int")
    if tp is float:
        if isinstance(value, bool):
            raise InputError(f"{where}={value!r} is not a float")
        if isinstance(value, (int, float)):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                pass
        raise InputError(f"{where}={value!r} is not a float")
    if tp is str:
        if isinstance(value, str):
            return value
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(value)
        raise InputError(f"{where}={value!r} is not a string")
    return value


def check_types(config: Any) -> None:
    """Check every field of a dataclass config against its annotation (Literal choices, int, float, bool, str).

    ``from_dict`` already coerces; this catches configs built directly in Python
    (``DQNConfig(loss="l1")``) and non-finite floats (``nan``, ``inf``) from any source.
    """
    hints = _resolved_hints(type(config))
    for f in dataclasses.fields(config):
        value, tp = getattr(config, f.name), hints[f.name]
        if dataclasses.is_dataclass(tp) and isinstance(value, tp):
            continue  # validated when it was built
        checked = coerce(value, tp, f.name)  # a mapping for a nested config becomes that config
        if isinstance(checked, float) and not math.isfinite(checked):
            raise InputError(f"{f.name}={value!r} must be a finite number")
        if checked is not value:
            object.__setattr__(config, f.name, checked)  # 1 -> 1.0 for a float field, 5e4 -> 50000 for an int one


def at_least(config: Any, low: float, *names: str) -> None:
    """Raise ``ValueError`` for the first field of ``names`` below ``low``."""
    for name in names:
        if getattr(config, name) < low:
            raise InputError(f"{name}={getattr(config, name)} must be >= {low}")


def between(config: Any, low: float, high: float, *names: str) -> None:
    """Raise ``ValueError`` for the first field of ``names`` outside [low, high]."""
    for name in names:
        if not low <= getattr(config, name) <= high:
            raise InputError(f"{name}={getattr(config, name)} must be in [{low}, {high}]")


def check_run_fields(config: Any) -> None:
    """Types of every field, and the run fields every generative config has (seed, intervals, checkpoints)."""
    check_types(config)
    at_least(config, 1, "keep_checkpoints", "log_interval")
    at_least(config, 0, "seed", "sample_interval", "checkpoint_interval", "eval_interval")


def _resolved_hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def from_dict(cls: type[C], data: dict[str, Any], prefix: str = "") -> C:
    """Build dataclass ``cls`` from ``data``, rejecting unknown keys and wrong types."""
    hints = _resolved_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(data) - set(names))
    if unknown:
        raise InputError(
            f"unknown {cls.__name__} field {prefix}{unknown[0]!r}; valid fields: {', '.join(names)}"
        )
    kwargs = {k: coerce(v, hints[k], f"{prefix}{k}") for k, v in data.items()}
    obj = cls(**kwargs)
    validate = getattr(obj, "validate", None)
    if callable(validate):
        validate()
    return obj


def to_dict(config: Any) -> dict[str, Any]:
    """A JSON/YAML-safe dict of a (possibly nested) dataclass config."""
    return dataclasses.asdict(config)


def parse_override(text: str) -> tuple[str, Any]:
    """Split ``key=value`` and YAML-parse the value (``1e-3``, ``[64, 64]``, ``true``)."""
    if "=" not in text:
        raise InputError(f"--set {text!r} must look like key=value (e.g. --set learning_rate=1e-3)")
    key, raw = text.split("=", 1)
    key = key.strip()
    if not key:
        raise InputError(f"--set {text!r} has an empty key")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    # YAML reads 1e-3 as a string (it wants 1.0e-3); fix that for people.
    if isinstance(value, str):
        try:
            value = float(value) if any(c in value for c in ".eE") else int(value)
        except ValueError:
            pass
    return key, value


def nest_overrides(pairs: dict[str, Any]) -> dict[str, Any]:
    """Turn ``{"backbone.hidden_sizes": [64]}`` into ``{"backbone": {"hidden_sizes": [64]}}``."""
    nested: dict[str, Any] = {}
    for key, value in pairs.items():
        node = nested
        parts = key.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise InputError(f"--set {key}: {part!r} is not a nested config")
        node[parts[-1]] = value
    return nested


def merge(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    """Recursive dict merge; ``update`` wins."""
    out = dict(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out


def apply_overrides(config: C, overrides: list[str] | dict[str, Any]) -> C:
    """Return a copy of ``config`` with ``key=value`` overrides applied and checked."""
    if isinstance(overrides, dict):
        pairs = dict(overrides)
    else:
        pairs = dict(parse_override(o) for o in overrides)
    merged = merge(to_dict(config), nest_overrides(pairs))
    return from_dict(type(config), merged)


def yaml_problem(exc: yaml.YAMLError) -> str:
    """What a YAML error says, with its line and column (1-based)."""
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    return f"{problem} at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else problem


def load_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML mapping, with a clear error for a missing or malformed file."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"config file {str(path)!r} does not exist")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise InputError(f"config file {str(path)!r} is not valid YAML: {yaml_problem(exc)}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise InputError(f"config file {str(path)!r} must hold a mapping of field: value")
    return data
