"""Validation and quoting of every value that reaches a shell command.

Nothing read from a host (a device name, a driver, a parameter) goes into a command unless it
matches a strict pattern here; it is then quoted with :func:`shlex.quote` all the same.
"""

from __future__ import annotations

import re
import shlex

from scanner.base.lazyre import lazy_compile

# ``\Z``, not ``$``: ``$`` also matches before a trailing newline, so "0000:01:00.0\n" (a directory
# name in a hostile tree) would pass and end a script line where it is interpolated.
PCI_ADDRESS = lazy_compile(r"^[0-9a-f]{4,8}:[0-9a-f]{2}:[0-1][0-9a-f]\.[0-7]\Z")
KERNEL_PARAM = lazy_compile(r"^[A-Za-z0-9_.\-]+(=[A-Za-z0-9_.,:/+\-]+)?\Z")
MODULE_NAME = lazy_compile(r"^[A-Za-z0-9_\-]{1,64}\Z")
DRIVER_NAME = MODULE_NAME
#: vfio-pci or one of its variant drivers (scanner/facts/variants.py): what a binding may name.
VFIO_DRIVER_NAME = lazy_compile(r"^(?:vfio-pci|[a-z0-9][a-z0-9_]{0,60}_vfio_pci)\Z")


class UnsafeValue(ValueError):
    """A value failed validation and must not reach a command."""


def checked(value: str, pattern: re.Pattern, what: str) -> str:
    if not isinstance(value, str) or not pattern.match(value):
        raise UnsafeValue(f"refusing to put {what} {value!r} into a command: it does not match {pattern.pattern}")
    return value


def quote(value: str, pattern: re.Pattern, what: str) -> str:
    """Validate then quote (``shlex.quote`` leaves plain words unchanged)."""
    return shlex.quote(checked(value, pattern, what))
