"""Kernel build configuration (``.config`` syntax), from whichever file the distribution ships."""

from __future__ import annotations

from typing import Dict, Optional, Tuple

from scanner.base.lazyre import lazy_compile
from scanner.base.record import field, record

_SET = lazy_compile(r"^CONFIG_([A-Za-z0-9_]+)=(.*)$")
_UNSET = lazy_compile(r"^#\s*CONFIG_([A-Za-z0-9_]+) is not set\s*$")


@record(frozen=True)
class KernelConfig:
    """Options by name without the ``CONFIG_`` prefix; ``n`` for "is not set"."""

    options: Dict[str, str] = field(default_factory=dict)
    source: Optional[str] = None  # the file it came from; None when none was found
    searched: Tuple[str, ...] = ()  # every place looked at, with why it was not used
    notes: Tuple[str, ...] = ()

    @property
    def found(self) -> bool:
        return self.source is not None

    def get(self, name: str) -> Optional[str]:
        """``y``, ``m``, ``n``, another literal value, or None when the option is absent."""
        return self.options.get(name[7:] if name.startswith("CONFIG_") else name)

    def enabled(self, name: str) -> bool:
        return self.get(name) in ("y", "m")


def parse_kconfig(text: str) -> Dict[str, str]:
    """``CONFIG_X=y`` -> ``{"X": "y"}``; quoted strings lose their quotes; junk lines are ignored."""
    options: Dict[str, str] = {}
    for line in text.splitlines():
        line = line.strip()
        m = _SET.match(line)
        if m:
            value = m.group(2).strip()
            if len(value) >= 2 and value[0] == value[-1] == '"':
                value = value[1:-1]
            options[m.group(1)] = value
            continue
        m = _UNSET.match(line)
        if m:
            options[m.group(1)] = "n"
    return options
