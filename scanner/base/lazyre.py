"""Regular expressions compiled on first use, not at import.

A module-level ``re.compile`` costs its compile on every run, whether or not the run ever uses the
pattern: most of vfio-scan's patterns parse files that a given scan never reads (a device tree on
x86, an ``/etc/security/limits.conf`` when no VM user is asked about...). :func:`lazy_compile` stands in
for ``re.compile``: the first attribute asked of it (``match``, ``search``, ``pattern``...) compiles,
and the compiled pattern's attributes are then kept on the instance, so that later calls cost what
they cost on a compiled pattern.
"""

from __future__ import annotations

import re


class LazyPattern:
    """``re.compile(regex, flags)``, made when first used; answers as the compiled pattern does."""

    def __init__(self, regex: str, flags: int = 0):
        self._args = (regex, flags)

    def __getattr__(self, name: str):
        # Only called for what the instance does not hold yet: compile once, then keep every
        # attribute asked for on the instance (plain dictionary lookups from then on).
        compiled = self.__dict__.get("_compiled")
        if compiled is None:
            if name.startswith("__"):  # copy, pickle and the like ask before anything is compiled
                raise AttributeError(name)
            compiled = self.__dict__["_compiled"] = re.compile(*self._args)
        value = getattr(compiled, name)
        self.__dict__[name] = value
        return value

    def __repr__(self) -> str:
        return f"lazy_compile({self._args[0]!r})"


def lazy_compile(regex: str, flags: int = 0) -> LazyPattern:
    """What ``re.compile(regex, flags)`` would give, compiled on first use."""
    return LazyPattern(regex, flags)
