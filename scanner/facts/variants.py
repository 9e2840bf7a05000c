"""Which vfio driver a device should go to: vfio-pci, or a vendor's variant of it.

Variant drivers (``mlx5_vfio_pci``, ``hisi_acc_vfio_pci``, ``nvgrace_gpu_vfio_pci``, ...) are
vfio-pci plus what one device needs: live migration, or a GPU's coherent memory that plain
vfio-pci does not expose. Each declares the devices it serves with ``vfio_pci:`` aliases in the
kernel's ``modules.alias`` (vfio_pci itself matches every device)::

    alias vfio_pci:v000015B3d0000101Esv*sd*bc*sc*i* mlx5_vfio_pci
    alias vfio_pci:v*d*sv*sd*bc*sc*i* vfio_pci

libvirt (virPCIDeviceFindBestVFIOVariant) picks among the aliases that match the device's
modalias, with ``pci:`` read as ``vfio_pci:``, the one with the fewest ``*``, the first in the
file on a tie. The same choice here means a script binds what libvirt's managed mode would bind.
Pure: the Facts layer reads the file.
"""

from __future__ import annotations

import fnmatch
from typing import Iterable, NamedTuple, Optional, Tuple

from scanner.base.lazyre import lazy_compile

PLAIN = "vfio-pci"
#: What a variant's driver name may be before it goes near a shell or sysfs: its module name.
VARIANT = lazy_compile(r"^[a-z0-9][a-z0-9_]{0,60}_vfio_pci\Z")
PREFIX = "vfio_pci:"


class VfioChoice(NamedTuple):
    """The vfio driver for one device and what chose it."""

    driver: str  # vfio-pci or a variant driver's name
    alias: Optional[str]  # the modules.alias pattern that won, None when none matched
    source: str  # the modules.alias path read
    note: Optional[str] = None  # why it is vfio-pci by default: the file could not be read

    @property
    def is_variant(self) -> bool:
        return self.driver != PLAIN

    @property
    def module(self) -> str:
        """What ``modprobe`` loads for it."""
        return self.driver.replace("-", "_")


def vfio_aliases(lines: Iterable[str]) -> Tuple[Tuple[str, str], ...]:
    """(pattern, module) of each ``alias vfio_pci:... MODULE`` line, in file order; other lines ignored."""
    return aliases(lines, PREFIX)


def aliases(lines: Iterable[str], prefix: str) -> Tuple[Tuple[str, str], ...]:
    """(pattern, module) of each ``alias PREFIX... MODULE`` line of a modules.alias or modules.builtin.alias
    (``pci:`` for host drivers, ``vfio_pci:`` for vfio-pci's variants), in file order."""
    found = []
    for line in lines:
        words = line.split()
        if len(words) == 3 and words[0] == "alias" and words[1].startswith(prefix):
            found.append((words[1], words[2].replace("-", "_")))
    return tuple(found)


def best_alias(aliases: Iterable[Tuple[str, str]], modalias: Optional[str]) -> Optional[Tuple[str, str]]:
    """The (pattern, module) libvirt would pick for a device's ``pci:...`` modalias, or None."""
    if not modalias or not modalias.startswith("pci:"):
        return None
    wanted = PREFIX + modalias[len("pci:"):]
    best, fewest = None, None
    for pattern, module in aliases:
        if fnmatch.fnmatchcase(wanted, pattern):
            wildcards = pattern.count("*")
            if fewest is None or wildcards < fewest:
                best, fewest = (pattern, module), wildcards
    return best


def driver_of(module: str) -> Optional[str]:
    """The driver name a module registers: ``vfio-pci`` for vfio_pci, a variant's own module name,
    None for anything that is not a vfio driver's (a hostile or garbled alias line)."""
    if module == "vfio_pci":
        return PLAIN
    return module if VARIANT.match(module) else None


__all__ = ["PLAIN", "VfioChoice", "VARIANT", "aliases", "vfio_aliases", "best_alias", "driver_of"]
