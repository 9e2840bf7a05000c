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


#: C0 and C1 control characters, DEL: no policy value has one. Checked here and not by the schema's
#: patterns, which Python's ``re.search`` lets end before a final newline (``^vfio-pci$``
#: accepts ``"vfio-pci\n"``), and which free text (a justification) does not have.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")


def _control_characters(data: Any) -> List[Tuple[List[Any], List[Any], str]]:
    """(path, where, message) for every key and string holding a control character; a key is
    reported at its table (``where``: its own path would print the character)."""
    found, stack = [], [([], data)]
    while stack:
        path, node = stack.pop()
        if isinstance(node, str) and _CONTROL.search(node):
            found.append((path, path, f"{_short(node)} holds a control character "
                                f"(U+{ord(_CONTROL.search(node).group()):04X}); no policy value has one"))
        children = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
        for key, child in children:
            if isinstance(key, str) and _CONTROL.search(key):
                found.append((path + [key], path, f"key {_short(key)} holds a control character "
                                    f"(U+{ord(_CONTROL.search(key).group()):04X}); no policy key has one"))
            else:
                stack.append((path + [key], child))
    return found


def validate(loaded: "Loaded") -> None:
    """The first problem in document order, as a PolicyError (with how many more there are): a schema
    error, or a control character in a key or string (which replaces a schema error at its path)."""
    import jsonschema

    validator = jsonschema.Draft202012Validator(load_schema())
    control = _control_characters(loaded.data)
    errors = list(validator.iter_errors(loaded.data))
    if not errors and not control:
        return
    def position(error, path):  # a missing key is reported after the keys its table has (a typo comes first)
        return _order(loaded.data, path) + ((10 ** 6,) if error is not None and error.validator == "required" else ())

    values = [p for p, w, _ in control if p == w]

    def covered(path):  # by a control character: in its value, or in a key on its way
        return path in values or any(isinstance(k, str) and _CONTROL.search(k) for k in path)

    described = [(position(e, p), p, m) for e in errors for p, m in [_describe(e)] if not covered(p)]
    described += [(position(None, p), w, m) for p, w, m in control]
    described = [(p, m) for _, p, m in sorted(described, key=lambda x: x[0])]
    path, message = described[0]
    more = len(described) - 1
    if more:
        message += f" (and {more} more problem{'s' if more > 1 else ''})"
    raise loaded.error(path, message)
