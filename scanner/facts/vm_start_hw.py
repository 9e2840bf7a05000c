"""What QEMU meets in the hardware when it opens a device: the host's memory map, the device's BARs,
the regions the IOMMU keeps for the firmware in a group, and kernel lockdown.

A mixin of :class:`scanner.facts.Facts` (it reads through ``self.host`` like every fact), with the
pure parsers beside it. A device can be on vfio-pci in a viable group and QEMU still fail to start:
a boot framebuffer sits in the BAR QEMU maps, the BARs do not fit the guest's 64-bit PCI window, the
firmware pinned the device to a 1:1 mapping (Intel RMRR), or lockdown refuses the unsigned module a
fix needs. The rules VFIO-020 to VFIO-023 judge these facts.

Formats, as Debian's 6.1 and 6.12 kernels show them (checked under QEMU):

* ``/proc/iomem``: ``start-end : name``, hex, two spaces of indent per level. Anyone may read it,
  but only root sees the addresses: others get ``00000000-00000000`` on every line, names intact.
* ``/sys/bus/pci/devices/ADDR/resource``: one ``0xstart 0xend 0xflags`` line per resource, the
  six BARs first, then the expansion ROM, the SR-IOV VF BARs and, on bridges, the windows; readable
  by anyone, with the addresses.
* ``/sys/kernel/iommu_groups/N/reserved_regions``: ``0xstart 0xend type``, type one of ``direct``,
  ``direct-relaxable``, ``reserved``, ``msi``.
* ``/sys/kernel/security/lockdown``: ``none [integrity] confidentiality``, the mode in brackets.
"""

from __future__ import annotations

from functools import cached_property, lru_cache
from typing import Callable, Dict, Optional, Tuple

from scanner.base.record import record
from scanner.host import Read
from scanner.base.lazyre import lazy_compile

_IOMEM_LINE = lazy_compile(r"^( *)([0-9a-fA-F]{1,16})-([0-9a-fA-F]{1,16}) : (.*)$")
_RESOURCE_LINE = lazy_compile(r"^0x([0-9a-fA-F]{1,16}) 0x([0-9a-fA-F]{1,16}) 0x([0-9a-fA-F]{1,16})$")
_REGION_LINE = lazy_compile(r"^0x([0-9a-fA-F]{1,16}) 0x([0-9a-fA-F]{1,16}) (\S+)$")
_LOCKDOWN_MODE = lazy_compile(r"\[([a-z]+)\]")

#: ``include/linux/ioport.h``: the resource flags a ``resource`` line shows.
IORESOURCE_MEM = 0x200
IORESOURCE_PREFETCH = 0x2000
IORESOURCE_MEM_64 = 0x100000
#: The standard BARs 0-5 come first in ``resource``; the ROM and the VF BARs follow.
STANDARD_BARS = 6


@record(frozen=True)
class MemoryRange:
    """One ``/proc/iomem`` line: an address range and who holds it."""

    start: int
    end: int
    name: str
    line: str

    def overlaps(self, start: int, end: int) -> bool:
        return self.start <= end and start <= self.end


@record(frozen=True)
class Bar:
    """One ``resource`` line: BAR ``index`` (0-5), the ROM (6), or a resource after it."""

    index: int
    start: int
    end: int
    flags: int
    line: str

    @property
    def size(self) -> int:
        return self.end - self.start + 1 if self.end > self.start else 0

    @property
    def is_standard_memory(self) -> bool:
        """A memory BAR 0-5 with a size: what QEMU maps for the guest."""
        return self.index < STANDARD_BARS and bool(self.flags & IORESOURCE_MEM) and self.size > 0

    @property
    def is_64bit_prefetchable(self) -> bool:
        """What the guest firmware puts in the 64-bit PCI window."""
        return self.is_standard_memory and bool(self.flags & IORESOURCE_MEM_64) and bool(self.flags & IORESOURCE_PREFETCH)

    @property
    def assigned(self) -> bool:
        """Placed in the host's address space (an unassigned BAR reads from address 0)."""
        return self.start != 0


@record(frozen=True)
class ReservedRegion:
    """One line of a group's ``reserved_regions``."""

    start: int
    end: int
    kind: str  # direct | direct-relaxable | reserved | msi
    line: str


@record(frozen=True)
class Table:
    """The rows parsed from one file, or why there are none (the read failed, or the text is garbled)."""

    source: str
    rows: tuple = ()
    reason: Optional[str] = None

    @property
    def ok(self) -> bool:
        return self.reason is None

    def describe(self) -> str:
        return f"{self.source}: {self.reason}" if self.reason else self.source


GIB = 1 << 30
#: QEMU's default 64-bit PCI hole: hw/pci-host/q35.c (1ULL << 35) and i440fx.c (1ULL << 31); VFIO-021 says more.
Q35_HOLE64_DEFAULT = 32 * GIB
I440FX_HOLE64_DEFAULT = 2 * GIB
#: arm64: QEMU's virt machine puts 64-bit BARs in its second PCIe window, 512 GiB by default
#: (``hw/arm/virt.c``: ``[VIRT_HIGH_PCIE_MMIO] = { 0x0, 512 * GiB }``); no -global sizes it.
VIRT_HIGH_MMIO_DEFAULT = 512 * GIB


def window_needed(total: int) -> int:
    """The 64-bit window that holds BARs of ``total`` bytes at their alignment: the next power of two,
    whole GiB (VFIO-021 and the VM configurations size it the same way)."""
    size = GIB
    while size < total:
        size <<= 1
    return size


def parse_iomem(text: str) -> Tuple[MemoryRange, ...]:
    """``/proc/iomem`` lines as ranges (names as written); a line of another shape is left out."""
    found = []
    for line in text.splitlines():
        m = _IOMEM_LINE.match(line)
        if m:
            found.append(MemoryRange(int(m.group(2), 16), int(m.group(3), 16), m.group(4).strip(), line.strip()))
    return tuple(found)


def addresses_hidden(ranges: Tuple[MemoryRange, ...]) -> bool:
    """Every range reads 0-0: ``/proc/iomem`` as a user other than root sees it."""
    return bool(ranges) and not any(r.start or r.end for r in ranges)


def parse_resource(text: str) -> Tuple[Bar, ...]:
    """A ``resource`` file's lines, numbered as the kernel numbers the resources; a garbled line is left out."""
    found = (_bar(index, line.strip()) for index, line in enumerate(text.splitlines()))
    return tuple(bar for bar in found if bar is not None)


@lru_cache(maxsize=4096)  # most of a device's lines are unused resources, all zeros: the same line on every device
def _bar(index: int, line: str) -> Optional[Bar]:
    m = _RESOURCE_LINE.match(line)
    if not m:
        return None
    start, end, flags = (int(g, 16) for g in m.groups())
    return Bar(index, start, end, flags, line)


def parse_reserved_regions(text: str) -> Tuple[ReservedRegion, ...]:
    found = []
    for line in text.splitlines():
        m = _REGION_LINE.match(line.strip())
        if m:
            found.append(ReservedRegion(int(m.group(1), 16), int(m.group(2), 16), m.group(3), line.strip()))
    return tuple(found)


def parse_lockdown(text: str) -> Optional[str]:
    """``none [integrity] confidentiality`` -> ``integrity``; None when no mode is in brackets."""
    m = _LOCKDOWN_MODE.search(text)
    return m.group(1) if m else None


class VmStartHardware:
    """The VM-start side of the hardware (``self.host`` is the Host layer)."""

    @cached_property
    def _tables(self) -> Dict[str, Table]:
        """Parsed files by path: a group's regions or a device's BARs are asked for by every target sharing them."""
        return {}

    def _parsed(self, path: str, parser: Callable[[str], tuple], what: str, empty_ok: bool = True) -> Table:
        """``path`` read once and parsed: text that gives no row (and is not empty) is garbled."""
        known = self._tables.get(path)
        if known is None:
            got = self.host.read(path)
            rows = parser(got.text) if got.ok else ()
            if not got.ok:
                known = Table(path, reason=got.reason)
            elif not rows and (got.text.strip() or not empty_ok):
                known = Table(path, reason=f"garbled: no {what} line")
            else:
                known = Table(path, rows)
            self._tables[path] = known
        return known

    @property
    def iomem(self) -> Table:
        """``/proc/iomem`` as :class:`MemoryRange` rows."""
        return self._parsed("/proc/iomem", parse_iomem, "'start-end : name'", empty_ok=False)

    def bars(self, address: str) -> Table:
        """A device's ``resource`` lines as :class:`Bar` rows."""
        return self._parsed(f"/sys/bus/pci/devices/{address}/resource", parse_resource, "'0xstart 0xend 0xflags'",
                            empty_ok=False)

    def reserved_regions(self, group: str) -> Table:
        """An IOMMU group's ``reserved_regions`` as :class:`ReservedRegion` rows (none at all is a valid answer)."""
        return self._parsed(f"/sys/kernel/iommu_groups/{group}/reserved_regions", parse_reserved_regions,
                            "'0xstart 0xend type'")

    @cached_property
    def lockdown(self) -> Read:
        """``/sys/kernel/security/lockdown`` as read: :func:`parse_lockdown` tells the mode."""
        return self.host.read("/sys/kernel/security/lockdown")
