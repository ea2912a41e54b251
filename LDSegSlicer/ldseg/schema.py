"""Strict conversion of parsed JSON/YAML into typed dataclasses (model cards, training configs).

Files that come from users are checked here once: unknown keys and wrong types are refused with
the dotted path of the offending field, instead of failing later somewhere deep in the code.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any


def from_plain(kind: type, data: Any, where: str) -> Any:
    """Builds dataclass `kind` from plain data; raises TypeError/KeyError naming the bad field."""
    if not isinstance(data, dict):
        raise TypeError(f"{where} must be a mapping, not {type(data).__name__}")
    hints = typing.get_type_hints(kind)
    names = {field.name for field in dataclasses.fields(kind)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise KeyError(f"unknown key(s) {', '.join(map(str, unknown))} in {where}")
    return kind(**{name: _convert(hints[name], value, f"{where}.{name}") for name, value in data.items()})


def _convert(hint: Any, value: Any, where: str) -> Any:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if dataclasses.is_dataclass(hint):
        return from_plain(hint, value, where)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        inner = [arg for arg in args if arg is not type(None)]
        return _convert(inner[0], value, where)
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise TypeError(f"{where} must be a list")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_convert(args[0], item, f"{where}[{i}]") for i, item in enumerate(value))
        if len(value) != len(args):
            raise TypeError(f"{where} must have {len(args)} entries")
        return tuple(_convert(arg, item, f"{where}[{i}]") for i, (arg, item) in enumerate(zip(args, value)))
    if origin is dict or hint is dict:
        if not isinstance(value, dict):
            raise TypeError(f"{where} must be a mapping")
        if not args:
            return dict(value)
        return {_convert(args[0], key, where): _convert(args[1], item, f"{where}.{key}") for key, item in value.items()}
    if hint is Any:
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise TypeError(f"{where} must be a number, not {type(value).__name__}")
        return float(value)
    if hint in (int, str, bool):
        if isinstance(value, bool) != (hint is bool) or not isinstance(value, hint):
            raise TypeError(f"{where} must be of type {hint.__name__}, not {type(value).__name__}")
        return value
    raise TypeError(f"{where}: unsupported field type {hint}")
