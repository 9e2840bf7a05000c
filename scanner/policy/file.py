"""Reading a policy file: TOML (or JSON), validated by ``schemas/policy.schema.json`` before any
scanning, with every problem reported as one line that names the file, where in it, and what.

Where: for TOML the table/key path (``waivers[1].expires``) and the line it is on; for JSON the
line and column of a syntax error, or the JSON pointer (``/waivers/1/expires``) of a schema error.
The format is chosen by the extension (``.toml``, ``.json``), else by the content (``{`` is JSON).
"""

from __future__ import annotations

import difflib
import json
import re
import sys
from datetime import date, datetime, time
from typing import Any, Collection, List, Optional, Sequence, Tuple

from scanner.base.json_text import nesting_exceeds
from scanner.policy.model import Policy, Waiver
from scanner.policy.schema import validate
from scanner.policy.toml import BARE, TomlLocator

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python < 3.11 only
    import tomli as tomllib

#: The largest policy file read: real ones are a few KB (targets, rules, waivers).
MAX_POLICY_BYTES = 4 << 20
#: Arrays and tables inside each other. A policy has four levels (the document, its targets, a
#: target, its match); deeper is refused before anything walks it (the schema, a message quoting
#: a value), as a snapshot is (scanner/host/snapshot.py).
MAX_NESTING = 32


def _too_deep(path: str, fmt: str) -> "PolicyError":
    kinds = "objects" if fmt == "json" else "tables"
    return PolicyError(f"policy {path}: too deeply nested (arrays or {kinds} over {MAX_NESTING} levels deep; "
                       "a policy has 4)")


class PolicyError(ValueError):
    """An unreadable or invalid policy file: one line, exit 2."""


# -- reading ------------------------------------------------------------------------------------

def _plain(value: Any) -> Any:
    """TOML dates and times as the strings JSON would hold, so one schema judges both formats."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, (date, datetime, time)):
        return value.isoformat()
    return value


def _no_duplicates(pairs):
    seen = {}
    for key, value in pairs:
        if key in seen:
            raise _Duplicate(key)
        seen[key] = value
    return seen


class _Duplicate(ValueError):
    def __init__(self, key):
        super().__init__(key)
        self.key = key


def _first_duplicate(text: str) -> Optional[Tuple[str, int]]:
    """(key, line) of the first key repeated in one JSON object, in document order (valid JSON only)."""
    stack: List[Optional[set]] = []  # a set of keys per open object, None per open array
    line, i = 1, 0
    while i < len(text):
        ch = text[i]
        if ch == "\n":
            line += 1
        elif ch == '"':
            j = i + 1
            while text[j] != '"':
                j += 2 if text[j] == "\\" else 1
            if stack and stack[-1] is not None and text[j + 1:].lstrip().startswith(":"):
                key = json.loads(text[i:j + 1])
                if key in stack[-1]:
                    return key, line
                stack[-1].add(key)
            i = j
        elif ch in "{[":
            stack.append(set() if ch == "{" else None)
        elif ch in "}]":
            stack.pop()
        i += 1
    return None


class Loaded:
    """A parsed policy file and how to say where something is in it."""

    def __init__(self, file: str, fmt: str, data: Any, locator: Optional[TomlLocator]):
        self.file, self.fmt, self.data, self.locator = file, fmt, data, locator

    def where(self, path: Sequence[Any]) -> str:
        path = list(path)
        if self.fmt == "json":
            return "at " + ("/" + "/".join(str(p).replace("~", "~0").replace("/", "~1") for p in path)
                            if path else "the top level")
        text = ""
        for part in path:
            if isinstance(part, int):
                text += f"[{part}]"
            else:
                key = part if BARE.fullmatch(part) else json.dumps(part)
                text += f".{key}" if text else key
        line = self.locator.line_of(path) if self.locator else None
        return f"{text or 'top level'}" + (f" (line {line})" if line else "")

    def error(self, path: Sequence[Any], message: str) -> PolicyError:
        return PolicyError(f"policy {self.file}: {self.where(path)}: {message}")


def _format(path: str, text: str) -> str:
    lower = path.lower()
    if lower.endswith(".toml"):
        return "toml"
    if lower.endswith(".json"):
        return "json"
    return "json" if text.lstrip().startswith("{") else "toml"


def read(path: str) -> Loaded:
    """Read and parse (not yet validate) a policy file: a regular file only, read without blocking
    (scanner/host/inputfile.py), so that a FIFO given as --policy is refused instead of hanging the run."""
    from scanner.host.inputfile import InputFileError, read_input_text

    try:
        text = read_input_text(path, MAX_POLICY_BYTES, "utf-8-sig")
    except InputFileError as exc:
        raise PolicyError(f"policy {path}: {exc}") from None
    fmt = _format(path, text)
    if fmt == "json":
        try:
            data = json.loads(text, object_pairs_hook=_no_duplicates)
        except RecursionError:  # the C decoder stops about a thousand levels down
            raise _too_deep(path, fmt) from None
        except json.JSONDecodeError as exc:
            raise PolicyError(f"policy {path}: line {exc.lineno}, column {exc.colno}: invalid JSON: {exc.msg}") from None
        except _Duplicate as exc:
            key, line = _first_duplicate(text) or (exc.key, None)
            where = f"line {line}" if line else "JSON"
            raise PolicyError(f"policy {path}: {where}: duplicate key {key!r} in one object "
                              "(JSON would silently keep only the last)") from None
        if nesting_exceeds(data, MAX_NESTING):
            raise _too_deep(path, fmt)
        return Loaded(path, fmt, data, None)
    try:
        data = tomllib.loads(text)
    except RecursionError:  # tomllib's parser recurses once per nested array or inline table
        raise _too_deep(path, fmt) from None
    except tomllib.TOMLDecodeError as exc:
        full = str(exc).splitlines()[0] if str(exc) else "invalid TOML"
        m = re.search(r"\(at line (\d+), column (\d+)\)", full)
        lineno = getattr(exc, "lineno", None) or (int(m.group(1)) if m else None)
        colno = getattr(exc, "colno", None) or (int(m.group(2)) if m else None)
        message = re.sub(r"\s*\(at (line \d+, column \d+|end of document)\)\s*$", "",
                         getattr(exc, "msg", None) or full)
        where = f"line {lineno}, column {colno}" if lineno else "end of document"
        raise PolicyError(f"policy {path}: {where}: invalid TOML: {message[:1].lower() + message[1:]}") from None
    if nesting_exceeds(data, MAX_NESTING):
        raise _too_deep(path, fmt)
    return Loaded(path, fmt, _plain(data), TomlLocator(text))


# -- building the policy --------------------------------------------------------------------------

def _subject(text: Optional[str]) -> Optional[str]:
    if text is None:
        return None
    value = text.strip().lower()
    if value != "host" and value.count(":") == 1:  # a short address or glob: domain 0000
        value = "0000:" + value
    return value


def build(loaded: Loaded, known_rules: Optional[Collection[str]] = None) -> Policy:
    """A :class:`Policy` from validated data; semantic problems (a date that does not exist, an
    unknown rule id, a rule both run-only and skipped) are PolicyErrors with their location."""
    from scanner.facts.targets import SelectorError, policy_selector

    data = loaded.data
    rules = data.get("rules") or {}
    ids: List[Tuple[List[Any], str]] = []
    ids += [(["rules", "only", i], r) for i, r in enumerate(rules.get("only") or [])]
    ids += [(["rules", "skip", i], r) for i, r in enumerate(rules.get("skip") or [])]
    ids += [(["rules", "severity", r], r) for r in (rules.get("severity") or {})]
    ids += [(["waivers", i, "rule"], w["rule"]) for i, w in enumerate(data.get("waivers") or [])]
    if known_rules is not None:
        for path, rule in ids:
            if rule not in known_rules:
                close = difflib.get_close_matches(rule, sorted(known_rules), n=1)
                hint = f"; did you mean {close[0]!r}?" if close else ""
                raise loaded.error(path, f"no such rule {rule!r}{hint} (see 'vfio-scan rules')")
    both = [r for r in rules.get("only") or [] if r in (rules.get("skip") or [])]
    if both:
        raise loaded.error(["rules", "skip", rules["skip"].index(both[0])],
                           f"{both[0]} is in both 'only' and 'skip'")
    targets = []
    for i, t in enumerate(data.get("targets") or []):
        try:
            targets.append(policy_selector(t.get("address"), t.get("match"), t.get("driver"), t.get("vfs")))
        except SelectorError as exc:
            raise loaded.error(["targets", i], str(exc)) from None
    waivers = []
    for i, w in enumerate(data.get("waivers") or []):
        expires = None
        if w.get("expires") is not None:
            try:
                expires = date.fromisoformat(w["expires"])
            except ValueError:
                raise loaded.error(["waivers", i, "expires"], f"{w['expires']!r} is not a calendar date") from None
        waivers.append(Waiver(rule=w["rule"], justification=w["justification"].strip(), subject=_subject(w.get("subject")),
                              host=w.get("host"), expires=expires, owner=w.get("owner"),
                              source=f"{loaded.file}: {loaded.where(['waivers', i])}"))
    return Policy(file=loaded.file, description=data.get("description", ""), targets=tuple(targets),
                  only=tuple(rules.get("only") or ()), skip=tuple(rules.get("skip") or ()),
                  severity=dict(rules.get("severity") or {}), fail_on=data.get("fail_on"), waivers=tuple(waivers))


def load_policy(path: str, known_rules: Optional[Collection[str]] = None) -> Policy:
    """Read, validate and build a policy; every problem is a one-line :class:`PolicyError`."""
    loaded = read(path)
    validate(loaded)
    return build(loaded, known_rules)


__all__ = ["PolicyError", "Loaded", "read", "build", "load_policy"]
