"""Kernel modules: loaded (``/proc/modules``), built in (``modules.builtin``), or installed.

Module names use ``_`` where file names use ``-`` (``vfio-pci.ko`` is module ``vfio_pci``);
everything here is normalized to the module name. Whole names are compared, never prefixes
(``vfio`` must not match ``vfio_pci``, a bug libvirt has).
"""

from __future__ import annotations

from typing import FrozenSet, Optional, Tuple

from scanner.base.lazyre import lazy_compile
from scanner.base.record import field, record

_KO = lazy_compile(r"([^/\s:]+)\.ko(?:\.(?:xz|gz|zst|bz2))?$")
#: Where a ``.ko`` name may start in a line: its start, or after ``/``, a blank or ``:``. Searching
#: for _KO from every position instead is quadratic: a 1 MiB line without ``.ko`` hung the scan.
_KO_IN_LINE = lazy_compile(r"(?:^|[/\s:])[^/\s:]+\.ko(?:\.(?:xz|gz|zst|bz2))?$")


def module_name(path_or_name: str) -> str:
    """``kernel/drivers/vfio/pci/vfio-pci.ko.zst`` -> ``vfio_pci``."""
    base = path_or_name.strip().rsplit("/", 1)[-1]
    m = _KO.match(base)
    if m:
        base = m.group(1)
    return base.replace("-", "_")


def parse_proc_modules(text: str) -> FrozenSet[str]:
    """Names from ``/proc/modules`` (``name size refcount deps state address``)."""
    names = set()
    for line in text.splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[1].isdigit():
            names.add(module_name(parts[0]))
    return frozenset(names)


def parse_modules_builtin(text: str) -> FrozenSet[str]:
    """Names from ``modules.builtin`` (one ``kernel/.../name.ko`` path per line)."""
    return frozenset(module_name(line) for line in text.splitlines() if _KO_IN_LINE.search(line.strip()))


def parse_modules_dep(text: str) -> FrozenSet[str]:
    """Installed module names from ``modules.dep`` (``path.ko: deps...``)."""
    names = set()
    for line in text.splitlines():
        head = line.split(":", 1)[0].strip()
        if _KO_IN_LINE.search(head):
            names.add(module_name(head))
    return frozenset(names)


@record(frozen=True)
class Modules:
    """Kernel modules: loaded, built in and installed for the running release."""

    loaded: FrozenSet[str] = frozenset()
    builtin: FrozenSet[str] = frozenset()
    installed: FrozenSet[str] = frozenset()
    loaded_source: Optional[str] = None  # None when /proc/modules could not be read
    builtin_source: Optional[str] = None
    installed_source: Optional[str] = None
    notes: Tuple[str, ...] = field(default=())
    #: modules whose .ko file is in the modules tree although modules.dep, the index modprobe
    #: reads, is missing: there, but not loadable by name until ``depmod -a`` runs
    unindexed: FrozenSet[str] = frozenset()

    def state(self, name: str) -> str:
        """``loaded``, ``builtin``, ``installed`` (available, not loaded), or ``absent``/``unknown``."""
        name = module_name(name)
        if name in self.loaded:
            return "loaded"
        if name in self.builtin:
            return "builtin"
        if name in self.installed or name in self.unindexed:
            return "installed"
        if self.installed_source is None:  # without modules.dep no one can say a module is not installed
            return "unknown"
        return "absent"
