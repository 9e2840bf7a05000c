"""Kernel command line parsing, as the kernel itself splits it (``kernel/params.c:next_arg``).

Rules the peers get wrong and this parser does not: quoted values (``"dyndbg=file a +p"``),
comma lists (``intel_iommu=on,sm_on`` means *on*), repeated parameters (processed in order, the
last one wins), ``-`` and ``_`` being the same character in parameter names
(``vfio-pci.ids`` is ``vfio_pci.ids``), and ``--`` ending the kernel's part of the line.
"""

from __future__ import annotations

from typing import List, Optional, Tuple

from scanner.base.record import record

TRUE_WORDS = frozenset({"1", "y", "yes", "on", "true"})


def normalize_key(key: str) -> str:
    """The kernel compares parameter names with ``-`` equal to ``_`` (``parameqn``)."""
    return key.replace("-", "_")


def truthy(value: Optional[str]) -> bool:
    """A boolean module parameter value as ``kstrtobool`` reads it (``1``, ``Y``, ``on``...)."""
    return value is not None and value.strip().lower() in TRUE_WORDS


@record(frozen=True)
class Param:
    """One parameter of a kernel command line, in the order it appeared."""

    key: str  # normalized name
    raw_key: str  # as written
    value: Optional[str]  # None for a bare flag such as ``quiet``
    position: int

    @property
    def text(self) -> str:
        return self.raw_key if self.value is None else f"{self.raw_key}={self.value}"


@record(frozen=True)
class Cmdline:
    """A parsed kernel command line: its parameters, and what follows ``--`` (for init)."""

    raw: str
    params: Tuple[Param, ...]
    init_args: Tuple[str, ...] = ()
    source: str = "/proc/cmdline"

    def all(self, key: str) -> List[Param]:
        key = normalize_key(key)
        return [p for p in self.params if p.key == key]

    def has(self, key: str) -> bool:
        return bool(self.all(key))

    def last(self, key: str) -> Optional[Param]:
        found = self.all(key)
        return found[-1] if found else None

    def value(self, key: str) -> Optional[str]:
        """Value of the last occurrence (``None`` if absent or a bare flag)."""
        last = self.last(key)
        return last.value if last else None

    def options(self, key: str) -> List[str]:
        """Every comma-separated sub-option of every occurrence, in the order the kernel applies them."""
        items: List[str] = []
        for p in self.all(key):
            if p.value is not None:
                items.extend(v.strip() for v in p.value.split(",") if v.strip())
        return items

    def last_of(self, key: str, choices) -> Optional[str]:
        """The last sub-option of ``key`` among ``choices`` (``intel_iommu=off ... intel_iommu=on`` -> on)."""
        picked = None
        for item in self.options(key):
            if item in choices:
                picked = item
        return picked

    def texts(self, key: str) -> List[str]:
        return [p.text for p in self.all(key)]


def _next_arg(args: str, start: int):
    """One ``param[=value]`` from ``start``; mirrors the kernel's quote handling."""
    i = start
    in_quote = quoted = False
    if args[i] == '"':
        i += 1
        start = i
        in_quote = quoted = True
    equals = -1
    while i < len(args):
        ch = args[i]
        if ch.isspace() and not in_quote:
            break
        if equals < 0 and ch == "=":
            equals = i
        if ch == '"':
            in_quote = not in_quote
        i += 1
    token = args[start:i]
    if equals < 0:
        key, value = token, None
    else:
        key, value = args[start:equals], args[equals + 1:i]
        if value.startswith('"'):
            value = value[1:]
            if value.endswith('"'):
                value = value[:-1]
    if quoted:  # the kernel drops the closing quote of a fully quoted "param=value"
        if value is not None and value.endswith('"'):
            value = value[:-1]
        elif value is None and key.endswith('"'):
            key = key[:-1]
    return key, value, i


def parse_cmdline(text: str, source: str = "/proc/cmdline") -> Cmdline:
    """Parse a command line; never raises (odd bytes just become odd parameters)."""
    raw = text.replace("\0", " ").strip()
    params: List[Param] = []
    init_args: Tuple[str, ...] = ()
    i = 0
    while i < len(raw):
        if raw[i].isspace():
            i += 1
            continue
        key, value, i = _next_arg(raw, i)
        if key == "--" and value is None:
            init_args = tuple(raw[i:].split())
            break
        if key:
            params.append(Param(normalize_key(key), key, value, len(params)))
    return Cmdline(raw=raw, params=tuple(params), init_args=init_args, source=source)
