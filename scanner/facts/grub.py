"""GRUB's kernel command line as the next boot will get it: ``/etc/default/grub`` and its grub.d drop-ins.

grub-mkconfig sources the main file, then every ``/etc/default/grub.d/*.cfg`` in order, so a later
assignment wins, ``+=`` appends and ``$GRUB_CMDLINE_LINUX`` expands to what was set before. The
facts read the next boot's parameters this way; the remediation edits the same assignments
(scanner/remediation/confedit.py). Pure functions of text: no file is opened here.
"""

from __future__ import annotations

import re
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

from scanner.base.lazyre import lazy_compile
from scanner.base.record import record

GRUB_MAIN = "/etc/default/grub"
GRUB_DROPINS = "/etc/default/grub.d"
GRUB_VARS = ("GRUB_CMDLINE_LINUX", "GRUB_CMDLINE_LINUX_DEFAULT")

_ASSIGNMENT = lazy_compile(r"^(\s*(?:export\s+)?)(GRUB_CMDLINE_LINUX(?:_DEFAULT)?)(\+?=)(.*?)(\r?\n?)$")
_VALUE_FORMS = (
    ('"', lazy_compile(r'^"([^"\\`]*)"(\s*(?:#.*)?)$')),
    ("'", lazy_compile(r"^'([^']*)'(\s*(?:#.*)?)$")),
    ("", lazy_compile(r"^([^\s\"'\\#;&|<>()`]*)(\s*(?:#.*)?)$")),
)


@record(frozen=True)
class Assignment:
    """One ``GRUB_CMDLINE_LINUX[_DEFAULT]=...`` line; ``quote`` None when its quoting is not rewritable."""

    path: str
    index: int  # line index in its file
    lead: str
    name: str
    op: str  # = or += (bash appends)
    quote: Optional[str]
    inner: str  # the text between the quotes (or the bare word), or the raw value when quote is None
    tail: str  # spaces and a comment after the value
    ending: str

    @property
    def words(self) -> List[str]:
        return self.inner.split()

    def with_words(self, words: Sequence[str]) -> str:
        quote = self.quote or '"'  # a bare word becomes a quoted list (the same expansion rules)
        return f"{self.lead}{self.name}{self.op}{quote}{' '.join(words)}{quote}{self.tail}{self.ending}"

    @property
    def where(self) -> str:
        return f"{self.path} line {self.index + 1}"


def grub_assignments(path: str, text: str) -> List[Assignment]:
    found = []
    for index, line in enumerate((text or "").splitlines(keepends=True)):
        m = _ASSIGNMENT.match(line)
        if not m:
            continue
        lead, name, op, value, ending = m.groups()
        for quote, form in _VALUE_FORMS:
            v = form.match(value)
            if v:
                found.append(Assignment(path, index, lead, name, op, quote, v.group(1), v.group(2), ending))
                break
        else:
            found.append(Assignment(path, index, lead, name, op, None, value, "", ending))
    return found


def _expand(inner: str, values: Mapping[str, str]) -> str:
    """``$GRUB_CMDLINE_LINUX`` / ``${...}`` inside a value refer to the value set before (whole names only)."""
    def sub(m):
        return values.get(m.group(1) or m.group(2), "")
    return re.sub(r"\$(?:\{(GRUB_CMDLINE_LINUX(?:_DEFAULT)?)\}|(GRUB_CMDLINE_LINUX(?:_DEFAULT)?)(?![A-Za-z0-9_]))",
                  sub, inner)


def unquoted(raw: str) -> str:
    import shlex

    try:
        return " ".join(shlex.split(raw, comments=True))
    except ValueError:
        return raw.strip("'\"")


def grub_values(files: Sequence[Tuple[str, str]]) -> Dict[str, str]:
    """What ``GRUB_CMDLINE_LINUX`` and ``..._DEFAULT`` hold once grub-mkconfig has read every file in order."""
    values: Dict[str, str] = {}
    for path, text in files:
        for a in grub_assignments(path, text):
            if a.quote is None:
                value = _expand(unquoted(a.inner), values)
            else:
                value = a.inner if a.quote == "'" else _expand(a.inner, values)
            values[a.name] = values.get(a.name, "") + value if a.op == "+=" else value
    return values


def grub_parameters(files: Sequence[Tuple[str, str]]) -> str:
    """The parameters the next boot gets from GRUB's files (the linux line: LINUX, then DEFAULT)."""
    values = grub_values(files)
    return " ".join(v for v in (values.get("GRUB_CMDLINE_LINUX", ""), values.get("GRUB_CMDLINE_LINUX_DEFAULT", ""))
                    if v).strip()


def grub_winner(files: Sequence[Tuple[str, str]], name: str = "GRUB_CMDLINE_LINUX_DEFAULT") -> Optional[str]:
    """The file whose assignment of ``name`` grub-mkconfig keeps (the last one read), or None."""
    last = None
    for path, text in files:
        if any(a.name == name for a in grub_assignments(path, text)):
            last = path
    return last
