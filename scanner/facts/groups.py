"""IOMMU group membership, classified the way passthrough needs it.

A device can only be handed to a VM together with its whole IOMMU group. Every other member is
one of: a **bridge** or root port (class 0x0604: stays on the host, never bound to vfio), a
**sibling** function of the same slot (a GPU's HDMI audio, its USB-C controller: must go to the
VM too), another **target** of the same scan, or an **unrelated** endpoint (a NIC that happens to
share the group: it must be given up too, or the card moved to another slot; or a device that is
no PCI function, a platform device an SoC or APU puts in the group, whose driver holds it alike). The group is
*viable* for VFIO when every non-bridge member is bound to a vfio driver, to pci-stub, or to
nothing (QEMU: "group N is not viable"). A host bridge (class 0x0600) without a driver, such as the
dummy host bridge a laptop APU's group holds, counts as a bridge: it stays with the host and
holds nothing. On a host booted with ``pcie_acs_override`` the groups are the override's
split, not the hardware's isolation, and every verdict says so.
"""

from __future__ import annotations

from functools import lru_cache
from typing import FrozenSet, Iterable, List, Mapping, Optional, Tuple

from scanner.base.record import record
from scanner.facts.pci import PciDevice, is_vfio_driver

#: Drivers the kernel's vfio core accepts beside vfio drivers for the other members of a group.
HARMLESS_DRIVERS = ("pci-stub",)


@record(frozen=True)
class Member:
    address: str
    role: str  # target | bridge | sibling | unrelated
    #: None when the group lists a name that is no PCI function (a PciFields when classify was given them)
    device: Optional[PciDevice]
    #: for a member that is no PCI function (a platform device): its driver, or why it cannot be told
    other_driver: Optional[str] = None
    other_reason: Optional[str] = None

    @property
    def driver(self) -> Optional[str]:
        return self.device.driver if self.device else self.other_driver

    @property
    def unknown(self) -> Optional[str]:
        """Why whether this member holds the group cannot be told (its state unreadable), or None."""
        if self.role == "bridge":
            return None
        return self.device.reason if self.device is not None else self.other_reason

    @property
    def holds_group(self) -> bool:
        """Bound to a host driver, which makes the group not viable for VFIO."""
        if self.role == "bridge":
            return False
        return bool(self.driver) and not is_vfio_driver(self.driver) and self.driver not in HARMLESS_DRIVERS


@record(frozen=True)
class GroupView:
    number: str
    members: Tuple[Member, ...]
    acs_override: bool = False  # the kernel was booted with pcie_acs_override: groups split by force

    def with_role(self, *roles: str) -> List[Member]:
        return [m for m in self.members if m.role in roles]

    @property
    def blockers(self) -> List[Member]:
        """Members other than the targets that are bound to a host driver."""
        return [m for m in self.members if m.role != "target" and m.holds_group]

    @property
    def endpoints(self) -> List[Member]:
        return [m for m in self.members if m.role != "bridge"]


def classify(facts, group: str, targets: Iterable[str] = (), devices: Optional[Mapping] = None) -> GroupView:
    """Members of IOMMU group ``group`` relative to ``targets`` (the devices to pass through).

    Called once per target: give ``targets`` as a frozenset (the scan's ``target_set``), so that
    neither it nor its slots are rebuilt each time. ``devices``: where members are looked up,
    ``facts.pci`` (read in full) by default; the ``groups`` command, which shows a few fields of
    every device, gives ``facts.pci.fields``.
    """
    targets = targets if isinstance(targets, frozenset) else frozenset(targets)
    slots = _slots(targets)
    devices = facts.pci if devices is None else devices
    members = []
    for address in facts.devices_in_group(group):
        device = devices.get(address)
        if address in targets:
            role = "target"
        elif device is not None and (device.is_bridge or _idle_host_bridge(device)):
            role = "bridge"
        elif address.rsplit(".", 1)[0] in slots:
            role = "sibling"
        else:
            role = "unrelated"
        if device is None:  # no PCI function: what holds it is read through the group's own link
            driver, reason = facts.group_member_driver(group, address)
            members.append(Member(address, role, None, driver, reason))
        else:
            members.append(Member(address, role, device))
    return GroupView(group, tuple(members), acs_override=facts.acs_override)


def _idle_host_bridge(device: PciDevice) -> bool:
    """A host bridge (class 0x0600) no driver holds: it stays with the host like any bridge."""
    return (device.pci_class or "").startswith("0600") and not device.driver


#: What every verdict adds on a host booted with pcie_acs_override.
ACS_OVERRIDE_NOTE = "split by pcie_acs_override, not isolated by the hardware"


@lru_cache(maxsize=4)
def _slots(targets: FrozenSet[str]) -> FrozenSet[str]:
    """The slots (``0000:01:00``) of these addresses; cached by set, as :func:`classify` runs per target."""
    return frozenset(a.rsplit(".", 1)[0] for a in targets)


def verdict(view: GroupView) -> str:
    """What the ``groups`` command says of a group with no particular target."""
    endpoints = view.endpoints
    if not endpoints:
        if any(m.device is not None and (m.device.pci_class or "").startswith("0600") for m in view.members):
            return "host bridge: stays with the host"
        return "bridges only"
    if all(m.device is not None and (m.device.pci_class or "").startswith("0600") for m in endpoints):
        return "host bridge: stays with the host"
    slots = {m.address.rsplit(".", 1)[0] for m in endpoints}
    if len(endpoints) == 1:
        shape = "isolated"
    elif len(slots) == 1:
        shape = "one slot: pass all its functions together"
    else:
        shape = "shared by unrelated devices: pass them all, or move the card"
    if view.acs_override:
        shape += f" ({ACS_OVERRIDE_NOTE})"
    viable = all(not m.holds_group for m in view.members)
    return f"{shape}; {'ready for vfio' if viable else 'in use by host drivers'}"
