"""What the kernel says about its IOMMU in sysfs: units, groups, and fake (noiommu) groups."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, Optional, Tuple


@dataclass(frozen=True)
class IommuGroup:
    """One IOMMU group: its number, its devices (PCI addresses) and its type."""

    number: str
    devices: Tuple[str, ...]
    name: Optional[str] = None  # ``vfio-noiommu`` for a fake group
    type: Optional[str] = None  # DMA | DMA-FQ | identity | blocked | unmanaged (>= 5.11)
    devices_reason: Optional[str] = None  # why ``devices/`` could not be listed (then ``devices`` is empty)

    @property
    def is_noiommu(self) -> bool:
        return (self.name or "").strip() == "vfio-noiommu"


@dataclass(frozen=True)
class IommuState:
    """The IOMMU units and groups the kernel exposes in sysfs, or why they could not be listed."""

    units: Tuple[str, ...] = ()  # /sys/class/iommu entries: dmar0, ivhd0, smmu3.0x...
    units_reason: Optional[str] = None  # why the units could not be listed
    groups: Dict[str, IommuGroup] = field(default_factory=dict)
    groups_reason: Optional[str] = None

    @property
    def noiommu_groups(self) -> Tuple[IommuGroup, ...]:
        return tuple(g for g in self.groups.values() if g.is_noiommu)

    @property
    def real_groups(self) -> Tuple[IommuGroup, ...]:
        return tuple(g for g in self.groups.values() if not g.is_noiommu)

    @property
    def active(self) -> bool:
        """Translation is really running: real groups exist (the primary signal)."""
        return bool(self.real_groups)


def group_sort_key(number: str):
    # ASCII digits of a sane length only: "²" is isdigit() and 5000 digits are too, but int() refuses both
    return (0, int(number)) if number.isascii() and number.isdigit() and len(number) <= 20 else (1, number)
