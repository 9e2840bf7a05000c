"""Where a key of a policy file's TOML text is written: the line of ``waivers[1].expires``.

Why a scanner of its own: ``tomllib`` gives the values but not where they were, and a policy
error that names only a key path leaves the operator searching a long file. This runs only on
text ``tomllib`` already accepted, so it can stay small (scanner/policy/file.py uses it).
"""

from __future__ import annotations

import json
import re
from typing import Any, Dict, List, Optional, Sequence, Tuple

Path = Tuple[Any, ...]

BARE = re.compile(r"[A-Za-z0-9_\-]+")


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
                m = BARE.match(self.text, self.i)
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
