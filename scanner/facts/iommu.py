"""What the kernel says about its IOMMU in sysfs: units, groups, and fake (noiommu) groups."""

from __future__ import annotations

from functools import cached_property
from typing import Callable, Dict, Optional, Tuple

from scanner.base.record import field, record


_UNREAD = object()  # a name or type not read yet (None is one that could not be read)


class IommuGroup:
    """One IOMMU group: its number, its devices (PCI addresses) and its type.

    ``name``: ``vfio-noiommu`` for a fake group. ``type``: DMA | DMA-FQ | identity | blocked |
    unmanaged (>= 5.11). ``devices_reason``: why ``devices/`` could not be listed (then
    ``devices`` is empty).

    The name, the members and the type may be given as readers instead, called with the group's
    number on first use (``read_name`` gives the name, ``read_devices`` ``(devices, devices_reason)``,
    ``read_type`` the type). Why each on its own: every group's name tells a fake group from a real
    one, which the host rules count, but a host with thousands of groups needs the members of its
    targets' groups only; and ``groups``, which shows every group, asks for one group's name,
    members and type one after the other, so that its directory is opened once. Slots, and one set
    of readers shared by all groups: a host may have ten thousand of them.
    """

    __slots__ = ("number", "_name", "_members", "_type", "_read_name", "_read_devices", "_read_type")

    def __init__(self, number: str, devices: Tuple[str, ...] = (), name: Optional[str] = None,
                 type: Optional[str] = None, devices_reason: Optional[str] = None, *,
                 read_name: Optional[Callable[[str], Optional[str]]] = None,
                 read_devices: Optional[Callable[[str], Tuple[Tuple[str, ...], Optional[str]]]] = None,
                 read_type: Optional[Callable[[str], Optional[str]]] = None):
        self.number = number
        self._read_name, self._read_devices, self._read_type = read_name, read_devices, read_type
        self._name = _UNREAD if read_name else name
        self._members = None if read_devices else (devices, devices_reason)
        self._type = _UNREAD if read_type else type

    @property
    def name(self) -> Optional[str]:
        if self._name is _UNREAD:
            self._name = self._read_name(self.number)
        return self._name

    @property
    def devices(self) -> Tuple[str, ...]:
        return self._listed()[0]

    @property
    def devices_reason(self) -> Optional[str]:
        return self._listed()[1]

    def _listed(self) -> Tuple[Tuple[str, ...], Optional[str]]:
        if self._members is None:
            self._members = self._read_devices(self.number)
        return self._members

    @property
    def type(self) -> Optional[str]:
        if self._type is _UNREAD:
            self._type = self._read_type(self.number)
        return self._type

    def __repr__(self) -> str:
        return f"IommuGroup(number={self.number!r}, name={self.name!r})"

    @property
    def is_noiommu(self) -> bool:
        return (self.name or "").strip() == "vfio-noiommu"


@record(frozen=True)
class IommuState:
    """The IOMMU units and groups the kernel exposes in sysfs, or why they could not be listed."""

    units: Tuple[str, ...] = ()  # /sys/class/iommu entries: dmar0, ivhd0, smmu3.0x...
    units_reason: Optional[str] = None  # why the units could not be listed
    groups: Dict[str, IommuGroup] = field(default_factory=dict)
    groups_reason: Optional[str] = None

    # Kept once made: several rules ask, and a host may have thousands of groups (the state never changes).
    @cached_property
    def noiommu_groups(self) -> Tuple[IommuGroup, ...]:
        return tuple(g for g in self.groups.values() if g.is_noiommu)

    @cached_property
    def real_groups(self) -> Tuple[IommuGroup, ...]:
        return tuple(g for g in self.groups.values() if not g.is_noiommu)

    @property
    def active(self) -> bool:
        """Translation is really running: real groups exist (the primary signal)."""
        return bool(self.real_groups)


def group_sort_key(number: str):
    # ASCII digits of a sane length only: "²" is isdigit() and 5000 digits are too, but int() refuses both
    return (0, int(number)) if number.isascii() and number.isdigit() and len(number) <= 20 else (1, number)
