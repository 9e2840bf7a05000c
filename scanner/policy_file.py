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
from typing import Any, Collection, Dict, List, Optional, Sequence, Tuple

from scanner.policy import Policy, Waiver

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python < 3.11 only
    import tomli as tomllib

Path = Tuple[Any, ...]
MAX_VALUE = 60  # characters of a quoted bad value in a message
#: The largest policy file read: real ones are a few KB (targets, rules, waivers).
MAX_POLICY_BYTES = 4 << 20


class PolicyError(ValueError):
    """An unreadable or invalid policy file: one line, exit 2."""


# -- where things are in a TOML text ----------------------------------------------------------

_BARE = re.compile(r"[A-Za-z0-9_\-]+")


class TomlLocator:
    """Maps key paths (``("waivers", 1, "expires")``) to the line they are written on.

    Runs only on text that ``tomllib`` already accepted, so it can be simple; it is best effort
    and never raises (a path it cannot place falls back to its nearest placed parent).
    """

    def __init__(self, text: str):
        self.text = text
        self.lines: Dict[Path, int] = {}
        self.i = 0
        self.line = 1
        self.arrays: Dict[Path, int] = {}
        try:
            self._document()
        except Exception:  # noqa: BLE001 - locations are a help, never a failure
            pass

    def line_of(self, path: Sequence[Any]) -> Optional[int]:
        path = tuple(path)
        while True:
            if path in self.lines:
                return self.lines[path]
            if not path:
                return None
            path = path[:-1]

    # the scanner
    def _peek(self, n: int = 1) -> str:
        return self.text[self.i:self.i + n]

    def _advance(self, n: int = 1) -> None:
        self.line += self.text.count("\n", self.i, self.i + n)
        self.i += n

    def _skip_space(self, newlines: bool) -> None:
        while self.i < len(self.text):
            ch = self.text[self.i]
            if ch in " \t\r" or (newlines and ch == "\n"):
                self._advance()
            elif ch == "#":
                end = self.text.find("\n", self.i)
                self._advance((len(self.text) if end < 0 else end) - self.i)
            else:
                return

    def _record(self, path: Path) -> None:
        self.lines.setdefault(path, self.line)

    def _key(self) -> List[str]:
        parts = []
        while True:
            self._skip_space(False)
            ch = self._peek()
            if ch in ('"', "'"):
                start = self.i
                self._string()
                raw = self.text[start:self.i]
                try:
                    parts.append(json.loads(raw) if ch == '"' else raw[1:-1])
                except ValueError:
                    parts.append(raw[1:-1])
            else:
                m = _BARE.match(self.text, self.i)
                if not m:
                    raise ValueError("not a key")
                parts.append(m.group())
                self._advance(m.end() - self.i)
            self._skip_space(False)
            if self._peek() != ".":
                return parts
            self._advance()

    def _resolve(self, parts: Sequence[str]) -> Path:
        path: Path = ()
        for part in parts:
            path += (part,)
            if path in self.arrays:
                path += (self.arrays[path] - 1,)
        return path

    def _document(self) -> None:
        current: Path = ()
        while True:
            self._skip_space(True)
            if self.i >= len(self.text):
                return
            if self._peek(2) == "[[":
                self._advance(2)
                parts = self._key()
                table = self._resolve(parts[:-1]) + (parts[-1],)
                self._record(table)
                self.arrays[table] = self.arrays.get(table, 0) + 1
                current = table + (self.arrays[table] - 1,)
                self._record(current)
                self._advance(2)
            elif self._peek() == "[":
                self._advance()
                current = self._resolve(self._key())
                self._record(current)
                self._advance()
            else:
                path = current + tuple(self._key())
                self._record(path)
                self._advance()  # "="
                self._skip_space(False)
                self._value(path)

    def _string(self) -> None:
        quote = self._peek()
        if self._peek(3) == quote * 3:
            end = self.text.find(quote * 3, self.i + 3)
            end = len(self.text) if end < 0 else end + 3
            while end < len(self.text) and self.text[end] == quote:  # """a"""" ends with the last quotes
                end += 1
            self._advance(end - self.i)
            return
        j = self.i + 1
        while j < len(self.text) and self.text[j] != quote:
            j += 2 if quote == '"' and self.text[j] == "\\" else 1
        self._advance(j + 1 - self.i)

    def _value(self, path: Path) -> None:
        ch = self._peek()
        if ch in ('"', "'"):
            self._string()
        elif ch == "[":
            self._advance()
            index = 0
            while True:
                self._skip_space(True)
                if self._peek() == "]" or self.i >= len(self.text):
                    self._advance()
                    return
                self._record(path + (index,))
                self._value(path + (index,))
                self._skip_space(True)
                if self._peek() == ",":
                    self._advance()
                    index += 1
        elif ch == "{":
            self._advance()
            while True:
                self._skip_space(True)  # TOML 1.0 keeps inline tables on one line; 1.1 does not
                if self._peek() == "}" or self.i >= len(self.text):
                    self._advance()
                    return
                inner = path + tuple(self._key())
                self._record(inner)
                self._advance()  # "="
                self._skip_space(False)
                self._value(inner)
                self._skip_space(True)
                if self._peek() == ",":
                    self._advance()
        else:
            m = re.compile(r"[^,\]}\n#]*").match(self.text, self.i)
            self._advance(max(1, len(m.group().rstrip())) if m else 1)


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
                key = part if _BARE.fullmatch(part) else json.dumps(part)
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
    (scanner/inputfile.py), so that a FIFO given as --policy is refused instead of hanging the run."""
    from scanner.inputfile import InputFileError, read_input_text

    try:
        text = read_input_text(path, MAX_POLICY_BYTES, "utf-8-sig")
    except InputFileError as exc:
        raise PolicyError(f"policy {path}: {exc}") from None
    fmt = _format(path, text)
    if fmt == "json":
        try:
            data = json.loads(text, object_pairs_hook=_no_duplicates)
        except json.JSONDecodeError as exc:
            raise PolicyError(f"policy {path}: line {exc.lineno}, column {exc.colno}: invalid JSON: {exc.msg}") from None
        except _Duplicate as exc:
            key, line = _first_duplicate(text) or (exc.key, None)
            where = f"line {line}" if line else "JSON"
            raise PolicyError(f"policy {path}: {where}: duplicate key {key!r} in one object "
                              "(JSON would silently keep only the last)") from None
        return Loaded(path, fmt, data, None)
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        full = str(exc).splitlines()[0] if str(exc) else "invalid TOML"
        m = re.search(r"\(at line (\d+), column (\d+)\)", full)
        lineno = getattr(exc, "lineno", None) or (int(m.group(1)) if m else None)
        colno = getattr(exc, "colno", None) or (int(m.group(2)) if m else None)
        message = re.sub(r"\s*\(at (line \d+, column \d+|end of document)\)\s*$", "",
                         getattr(exc, "msg", None) or full)
        where = f"line {lineno}, column {colno}" if lineno else "end of document"
        raise PolicyError(f"policy {path}: {where}: invalid TOML: {message[:1].lower() + message[1:]}") from None
    return Loaded(path, fmt, _plain(data), TomlLocator(text))


# -- validating ---------------------------------------------------------------------------------

def load_schema() -> dict:
    from importlib import resources

    return json.loads(resources.files("schemas").joinpath("policy.schema.json").read_text(encoding="utf-8"))


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


def validate(loaded: Loaded) -> None:
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
    from scanner.targets import SelectorError, policy_selector

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


__all__ = ["PolicyError", "TomlLocator", "Loaded", "read", "validate", "build", "load_policy", "load_schema"]
