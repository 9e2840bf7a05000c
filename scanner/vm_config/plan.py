"""What goes to the VM, gathered once from the facts for every renderer.

Functions of one slot stay together (a GPU and its HDMI audio land in one guest slot as functions
of one multifunction device), slots are in address order, and every value a renderer will write is
validated here: a hostile name in sysfs never reaches a configuration file.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

from scanner.facts.vm_start_hw import Q35_HOLE64_DEFAULT, window_needed
from scanner.remediation.shell import PCI_ADDRESS, VFIO_DRIVER_NAME, UnsafeValue, checked

_HEX4 = re.compile(r"^[0-9a-f]{4}\Z")


@dataclass(frozen=True)
class PassedDevice:
    """One function handed to the VM."""

    address: str  # 0000:01:00.0
    vendor: str  # 10de
    device: str  # 2204
    subsystem_vendor: Optional[str]
    subsystem_device: Optional[str]
    pci_class: str  # 030000
    name: Optional[str]  # pci.ids' name of the device, when known
    vendor_name: Optional[str]
    group: str
    driver: Optional[str]  # bound now
    vfio_driver: str  # vfio-pci or a variant driver (mlx5_vfio_pci)
    kind: str  # type-PCI | type-PF | type-VF (OpenStack's words)
    cdev: Optional[str]  # /dev/vfio/devices/vfioN

    @property
    def ids(self) -> str:
        return f"{self.vendor}:{self.device}"

    @property
    def function(self) -> int:
        return int(self.address.rsplit(".", 1)[1], 16)

    @property
    def host_slot(self) -> str:
        return self.address.rsplit(".", 1)[0]


@dataclass(frozen=True)
class Plan:
    """The slots to pass, each a tuple of its functions (function 0 first), and what the VM needs."""

    slots: Tuple[Tuple[PassedDevice, ...], ...]
    hostname: str
    managed: bool  # the VMM detaches the devices from their host drivers at VM start
    iommufd: bool  # /dev/iommu and every device's vfio cdev exist: QEMU may use the iommufd backend
    hole64: Optional[int]  # the 64-bit PCI window the BARs need when over QEMU's default (bytes), else None
    whole_slots: frozenset = frozenset()  # host slots (0000:01:00) all of whose functions are passed
    machine: str = "q35"  # the QEMU machine type the layout is for: q35, or virt on arm64

    @property
    def devices(self) -> List[PassedDevice]:
        return [d for slot in self.slots for d in slot]


def make_plan(facts, addresses: Sequence[str], managed: bool = False) -> Plan:
    """The plan for ``addresses`` (targets and siblings, as ``qemu-args`` chose them)."""

    devices = [_passed(facts, a) for a in sorted(addresses)]
    slots: Dict[str, List[PassedDevice]] = {}
    for device in devices:
        slots.setdefault(device.host_slot, []).append(device)
    total = 0
    for device in devices:
        table = facts.bars(device.address)
        total += sum(bar.size for bar in table.rows if bar.is_64bit_prefetchable) if table.ok else 0
    needed = window_needed(total) if total else 0
    iommufd = bool(devices) and not facts.node("/dev/iommu").missing and all(d.cdev for d in devices)
    present: Dict[str, set] = {}  # the passed slots' functions on the host: only their class is read
    for address in facts.pci:
        slot = address.rsplit(".", 1)[0]
        if slot in slots and not facts.pci.fields[address].is_bridge:
            present.setdefault(slot, set()).add(address)
    whole = frozenset(slot for slot, passed in slots.items() if present.get(slot) == {d.address for d in passed})
    return Plan(slots=tuple(tuple(sorted(s, key=lambda d: d.function)) for _, s in sorted(slots.items())),
                hostname=facts.hostname, managed=managed, iommufd=iommufd,
                hole64=needed if needed > Q35_HOLE64_DEFAULT and not facts.is_arm64 else None, whole_slots=whole,
                machine="virt" if facts.is_arm64 else "q35")


def _hex4(value: Optional[str], what: str, address: str) -> Optional[str]:
    if value is None:
        return None
    text = value.lower().removeprefix("0x")
    if not _HEX4.match(text):
        raise UnsafeValue(f"{address}: {what} {value!r} is not four hex digits")
    return text


def _passed(facts, address: str) -> PassedDevice:
    checked(address, PCI_ADDRESS, "PCI address")
    device = facts.pci[address]
    vendor = _hex4(device.vendor, "vendor", address)
    product = _hex4(device.device, "device", address)
    klass = (device.pci_class or "").lower().removeprefix("0x")
    if not re.match(r"^[0-9a-f]{6}\Z", klass):
        raise UnsafeValue(f"{address}: class {device.pci_class!r} is not six hex digits")
    from scanner.remediation.binding import vfio_choice

    # the driver it is on, or the variant libvirt's managed mode would pick, as a binding fix does
    vfio_driver = checked(vfio_choice(facts, device).driver, VFIO_DRIVER_NAME, "vfio driver")
    kind = "type-VF" if device.is_vf else "type-PF" if (device.sriov_totalvfs or 0) > 0 else "type-PCI"
    ids = facts.pci_ids
    return PassedDevice(address=address, vendor=vendor, device=product,
                        subsystem_vendor=_hex4(device.subsystem_vendor, "subsystem vendor", address),
                        subsystem_device=_hex4(device.subsystem_device, "subsystem device", address),
                        pci_class=klass, name=ids.device_name(vendor, product), vendor_name=ids.vendor_name(vendor),
                        group=checked(device.iommu_group or "", re.compile(r"^[0-9]+\Z"), "IOMMU group"),
                        driver=device.driver, vfio_driver=vfio_driver, kind=kind, cdev=facts.vfio_cdev(address))
