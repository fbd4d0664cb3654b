"""A small JSON Schema checker for the keywords the report schema uses, so reports validate without extra packages.

Supported: ``type`` (a name or a list), ``const``, ``enum``, ``minimum``, ``maximum``, ``properties``,
``required``, ``additionalProperties`` (a bool or a schema), ``items``, ``minItems`` and ``$ref`` to
``#/$defs/NAME``. Other keywords are ignored, as JSON Schema ignores unknown ones.
"""
from __future__ import annotations

import math
import numbers
from typing import Any, Mapping

_TYPES = {
    "object": lambda v: isinstance(v, Mapping),
    "array": lambda v: isinstance(v, (list, tuple)),
    "string": lambda v: isinstance(v, str),
    "boolean": lambda v: isinstance(v, bool),
    "null": lambda v: v is None,
    "integer": lambda v: isinstance(v, numbers.Integral) and not isinstance(v, bool),
    # JSON has no NaN or infinity
    "number": lambda v: isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(v),
}


def schema_errors(value: Any, schema: Mapping, root: Mapping | None = None, path: str = "$") -> list[str]:
    """Every way ``value`` breaks ``schema``, as ``"$.a[0].b: what was got, what was expected"`` strings.

    Example:
        >>> schema_errors({"n": "3"}, {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["m"]})
        ["$: missing required key 'm'", "$.n: got str '3', expected integer"]
    """
    root = schema if root is None else root
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        return schema_errors(value, root["$defs"][name], root, path)
    types = schema.get("type")
    if types is not None:
        names = [types] if isinstance(types, str) else list(types)
        if not any(_TYPES[t](value) for t in names):
            return [f"{path}: got {type(value).__name__} {value!r:.40}, expected {' or '.join(names)}"]
    errors: list[str] = []
    if "const" in schema and value != schema["const"]:
        errors.append(f"{path}: got {value!r:.40}, expected {schema['const']!r}")
    if "enum" in schema and value not in schema["enum"]:
        errors.append(f"{path}: got {value!r:.40}, expected one of {schema['enum']}")
    if _TYPES["number"](value):
        if "minimum" in schema and value < schema["minimum"]:
            errors.append(f"{path}: got {value}, expected >= {schema['minimum']}")
        if "maximum" in schema and value > schema["maximum"]:
            errors.append(f"{path}: got {value}, expected <= {schema['maximum']}")
    if isinstance(value, Mapping):
        errors += _object_errors(value, schema, root, path)
    if isinstance(value, (list, tuple)):
        if len(value) < schema.get("minItems", 0):
            errors.append(f"{path}: got {len(value)} items, expected at least {schema['minItems']}")
        if "items" in schema:
            for i, item in enumerate(value):
                errors += schema_errors(item, schema["items"], root, f"{path}[{i}]")
    return errors


def _object_errors(value: Mapping, schema: Mapping, root: Mapping, path: str) -> list[str]:
    errors = [f"{path}: missing required key {key!r}" for key in schema.get("required", ()) if key not in value]
    properties = schema.get("properties", {})
    extra = schema.get("additionalProperties", True)
    for key, item in value.items():
        if not isinstance(key, str):
            errors.append(f"{path}: key {key!r} is not a string")
        elif key in properties:
            errors += schema_errors(item, properties[key], root, f"{path}.{key}")
        elif extra is False:
            errors.append(f"{path}: unexpected key {key!r}")
        elif isinstance(extra, Mapping):
            errors += schema_errors(item, extra, root, f"{path}.{key}")
    return errors
