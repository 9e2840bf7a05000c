"""Validating a parsed policy file against ``schemas/policy.schema.json``, in vfio-scan's words.

Why apart from the reading: jsonschema reports every error with its own wording and in no
particular order; this picks the first in document order, says it as one line (an unknown key
with the nearest known one, a missing key, a value not among the allowed ones) and counts the
rest. The location comes from the loaded file (scanner/policy/file.py's ``Loaded.where``).
"""

from __future__ import annotations

import difflib
import json
import re
from typing import TYPE_CHECKING, Any, List, Sequence, Tuple

if TYPE_CHECKING:
    from scanner.policy.file import Loaded

MAX_VALUE = 60  # characters of a quoted bad value in a message


def load_schema() -> dict:
    from scanner.base.schemas import load_schema as shipped_schema

    return shipped_schema("policy")


def _short(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False, default=str) if not isinstance(value, str) else repr(value)
    return text if len(text) <= MAX_VALUE else text[:MAX_VALUE - 3] + "..."


def _order(data: Any, path: Sequence[Any]) -> Tuple[int, ...]:
    """Document order of a path: the position of each step among its siblings."""
    key = []
    node = data
    for part in path:
        if isinstance(node, dict) and part in node:
            key.append(list(node).index(part))
            node = node[part]
        elif isinstance(node, list) and isinstance(part, int) and part < len(node):
            key.append(part)
            node = node[part]
        else:
            key.append(10 ** 6)
            node = None
    return tuple(key)


def _describe(error) -> Tuple[List[Any], str]:
    """(path of the offending key, message) for one jsonschema error, in vfio-scan's words."""
    path = list(error.absolute_path)
    custom = (error.schema.get("errorMessage") or {}) if isinstance(error.schema, dict) else {}
    custom = custom.get(error.validator) if isinstance(custom, dict) else custom
    if error.validator == "additionalProperties" and isinstance(error.instance, dict):
        allowed = list((error.schema.get("properties") or {}).keys())
        extra = [k for k in error.instance if k not in allowed]
        if extra:
            bad = extra[0]
            close = difflib.get_close_matches(bad, allowed, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else f" (known keys: {', '.join(allowed)})"
            return path + [bad], f"unknown key {bad!r}{hint}"
    if "propertyNames" in error.relative_schema_path or "propertyNames" in error.schema_path:
        path = path + [error.instance]
    if error.validator == "required":
        missing = re.match(r"^'(.*)' is a required property$", error.message)
        if missing:
            return path, f"missing required key {missing.group(1)!r}"
    if error.validator == "enum":
        options = error.validator_value
        close = difflib.get_close_matches(str(error.instance), [str(o) for o in options], n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        return path, f"{_short(error.instance)} is not one of {', '.join(map(str, options))}{hint}"
    if custom:
        if error.validator in ("pattern", "type", "const", "enum"):
            return path, f"{_short(error.instance)}: {custom}"
        return path, custom
    return path, error.message if len(error.message) <= 200 else error.message[:197] + "..."


def validate(loaded: "Loaded") -> None:
    """The first schema error in document order, as a PolicyError (with how many more there are)."""
    import jsonschema

    validator = jsonschema.Draft202012Validator(load_schema())
    errors = list(validator.iter_errors(loaded.data))
    if not errors:
        return
    def position(error, path):  # a missing key is reported after the keys its table has (a typo comes first)
        return _order(loaded.data, path) + ((10 ** 6,) if error.validator == "required" else ())

    described = sorted(((position(e, p), p, m) for e in errors for p, m in [_describe(e)]), key=lambda x: x[0])
    described = [(p, m) for _, p, m in described]
    path, message = described[0]
    more = len(described) - 1
    if more:
        message += f" (and {more} more problem{'s' if more > 1 else ''})"
    raise loaded.error(path, message)
