"""Structured results (``--returns`` / ``returns=``): a few typed values back from the agent, not prose to parse.

The agent cannot hand Python a value, but it can write a file: the task asks it to write its result as one JSON
object to :data:`RESULT_PATH` in its workspace (a known place, relative to the directory its commands start in, which
is the workspace the agent server names), and when the turn ends the client downloads that file, checks it against
the schema and gives ``conv.result``. A final message is for people; a file is what a program can check.

A schema is small: a dict of field names to types (``{"rows": int, "mean": float, "notes": str}``, or the type
names as text), a dataclass (``conv.result`` is then an instance of it), or a JSON Schema object
(``{"type": "object", "properties": …, "required": …}``, checked with ``jsonschema`` when installed, else its
``required`` and property types). What goes wrong (no file, not JSON, a missing field, a wrong type) is one line in
``conv.result_error`` and on the card, never an exception: the conversation and its answer are still there.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .errors import ValidationError

__all__ = ["RESULT_PATH", "Schema", "schema_of"]

#: Where the agent writes its result, relative to its workspace.
RESULT_PATH = ".openhands/result.json"
#: The most a result file may hold (it is a few values, not data: data goes in files the notebook reads).
MAX_RESULT_BYTES = 1024 * 1024
_NAMES = {
    int: "integer",
    float: "number",
    str: "string",
    bool: "boolean",
    list: "array",
    dict: "object",
    tuple: "array",
    type(None): "null",
    Any: "any",
    object: "any",
}
_TEXT_NAMES = {
    **{t.__name__: n for t, n in _NAMES.items() if isinstance(t, type)},
    **{n: n for n in _NAMES.values()},
    "any": "any",
}


def _json_type(kind: Any, field: str) -> tuple[str, bool]:
    """(the JSON type of a Python type or its name, whether null is allowed)."""
    if isinstance(kind, str):
        name = kind.strip().lower().removesuffix(" | none")
        optional = name != kind.strip().lower() or kind.strip().endswith("?")
        name = name.rstrip("?")
        if name in _TEXT_NAMES:
            return _TEXT_NAMES[name], optional
    elif kind in _NAMES:
        return _NAMES[kind], False
    else:
        origin = typing.get_origin(kind)
        if origin in (typing.Union, types.UnionType):
            others = [a for a in typing.get_args(kind) if a is not type(None)]
            if len(others) == 1:
                return _json_type(others[0], field)[0], True
            return "any", True
        if origin in _NAMES:
            return _NAMES[origin], False
    raise ValidationError(
        f"returns: the field {field!r} has the type {kind!r}; use int, float, str, bool, list or dict (or a "
        "JSON Schema)."
    )


_CHECKS = {
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
    "string": lambda v: isinstance(v, str),
    "boolean": lambda v: isinstance(v, bool),
    "array": lambda v: isinstance(v, list),
    "object": lambda v: isinstance(v, dict),
    "null": lambda v: v is None,
    "any": lambda v: True,
}


@dataclass(frozen=True)
class Schema:
    """What the result must hold: its fields (name, JSON type, whether null is allowed), and the dataclass or JSON
    Schema it came from."""

    fields: tuple[tuple[str, str, bool], ...]
    cls: type | None = None
    json_schema: Mapping[str, Any] | None = None

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(name for name, _, _ in self.fields)

    def instruction(self) -> str:
        """What the task adds: where to write the result, and what it holds."""
        if self.json_schema is not None:
            shape = "that matches this JSON Schema:\n" + json.dumps(self.json_schema, indent=1, sort_keys=True)
        else:
            shape = "with these fields:\n" + "\n".join(
                f"- {name}: {kind}{' or null' if optional else ''}" for name, kind, optional in self.fields
            )
        return (
            f"When you are done, write your result as one JSON object to the file {RESULT_PATH} (relative to your "
            f"working directory; make the folder) {shape}\nThe notebook reads that file when you finish (not your "
            "final message); do not commit it."
        )

    def check(self, data: bytes) -> Any:
        """The result in ``data`` (the file's bytes), checked: a dataclass instance or a dict. ValueError with
        one line saying what is wrong."""
        try:
            value = json.loads(data.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as error:
            raise ValueError(f"{RESULT_PATH} is not JSON ({' '.join(str(error).split())[:120]})") from None
        if not isinstance(value, dict):
            raise ValueError(f"{RESULT_PATH} holds a {type(value).__name__}, not a JSON object")
        if self.json_schema is not None and _jsonschema_checks(self.json_schema, value):
            pass
        else:
            for name, kind, optional in self.fields:
                if name not in value:
                    if optional:
                        continue
                    raise ValueError(f"the result has no field {name!r}")
                item = value[name]
                if not (_CHECKS[kind](item) or (optional and item is None)):
                    raise ValueError(f"the result's {name!r} is {json.dumps(item)[:60]}, not a {kind}")
        if self.cls is not None:
            return self.cls(**{name: value[name] for name in self.names if name in value})
        return value

    def row(self, result: Any) -> dict[str, Any]:
        """The result as one row of a table: a value per field (None when there is no result)."""
        if result is None:
            return dict.fromkeys(self.names)
        if dataclasses.is_dataclass(result) and not isinstance(result, type):
            return {name: getattr(result, name, None) for name in self.names}
        return {name: result.get(name) if isinstance(result, dict) else None for name in self.names}


def _jsonschema_checks(schema: Mapping[str, Any], value: Any) -> bool:
    """Check with ``jsonschema`` when installed (True once checked); ValueError when the value does not match."""
    import importlib

    try:
        jsonschema: Any = importlib.import_module("jsonschema")
    except ImportError:
        return False
    try:
        jsonschema.validate(value, schema)
    except jsonschema.ValidationError as error:
        where = "/".join(str(p) for p in error.absolute_path)
        at = f" at {where}" if where else ""
        raise ValueError(f"the result does not match the schema{at}: {error.message}") from None
    except jsonschema.SchemaError as error:
        raise ValueError(f"the schema itself is invalid: {error.message}") from None
    return True


def schema_of(returns: Any) -> Schema | None:
    """The :class:`Schema` of ``returns=`` (a dict of names to types, a dataclass, a JSON Schema); None for None.
    One ValidationError line for anything else."""
    if returns is None or isinstance(returns, Schema):
        return returns
    if isinstance(returns, type) and dataclasses.is_dataclass(returns):
        hints = typing.get_type_hints(returns)
        fields = tuple(
            (f.name, *_json_type(hints.get(f.name, Any), f.name)) for f in dataclasses.fields(returns) if f.init
        )
        return Schema(fields, cls=returns)
    if isinstance(returns, Mapping) and returns:
        if "properties" in returns or returns.get("type") == "object":
            properties = returns.get("properties")
            if not isinstance(properties, Mapping) or not properties:
                raise ValidationError("returns: a JSON Schema needs its 'properties' (the result's fields).")
            required = set(returns.get("required") or ())
            listed: list[tuple[str, str, bool]] = []
            for name, spec in properties.items():
                kind = spec.get("type", "any") if isinstance(spec, Mapping) else "any"
                kinds = kind if isinstance(kind, list) else [kind]
                real = [k for k in kinds if k != "null"]
                json_kind = real[0] if len(real) == 1 and real[0] in _CHECKS else "any"
                listed.append((str(name), json_kind, "null" in kinds or name not in required))
            return Schema(tuple(listed), json_schema=dict(returns))
        if not all(isinstance(name, str) and name.isidentifier() for name in returns):
            raise ValidationError("returns: the field names must be names (letters, digits, _), e.g. {'rows': int}.")
        return Schema(tuple((name, *_json_type(kind, name)) for name, kind in returns.items()))
    raise ValidationError(
        "returns takes a dict of field names to types ({'rows': int, 'mean': float}), a dataclass or a JSON Schema."
    )


def parse_returns(text: str, namespace: Mapping[str, Any] | None) -> Schema:
    """``--returns`` as typed: a notebook variable holding a schema (``--returns Summary``), or fields written
    ``rows:int,mean:float,notes:str``."""
    text = text.strip()
    if namespace is not None and text.isidentifier() and text in namespace:
        schema = schema_of(namespace[text])
        assert schema is not None
        return schema
    fields: dict[str, str] = {}
    for part in text.split(","):
        name, sep, kind = part.partition(":")
        if not sep or not name.strip().isidentifier():
            raise ValidationError(
                f"--returns takes fields like rows:int,mean:float (or the name of a schema in the notebook), got "
                f"{text[:60]!r}."
            )
        fields[name.strip()] = kind.strip()
    schema = schema_of(fields)
    assert schema is not None
    return schema
