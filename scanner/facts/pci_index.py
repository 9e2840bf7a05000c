"""Lookups over a host's PCI functions, built once instead of scanning every device per question.

Why: device rules ask, for each target, which *other* devices share its vendor:device ids (can
``vfio-pci ids=`` claim it without taking a twin the host keeps?) or which devices are displays.
Answered by a scan of ``facts.pci`` each time, a host with thousands of functions (SR-IOV VFs)
took minutes; answered from these indexes, the whole scan stays linear in the number of devices.
Built from one field of each device (``facts.pci.fields``): a device's vendor and driver are
read only when it has a target's device ID. The lists are shared: never mutate them.
"""

from __future__ import annotations

from functools import cached_property
from typing import Dict, FrozenSet, List, Mapping, Tuple

from scanner.facts.pci import PciDevice, is_vfio_driver


class PciIndex:
    """Indexes of one host's devices; see the module docstring.

    ``devices``: address -> what :class:`scanner.facts.pci_devices.PciFields` shows of a device
    (a ``PciDevice`` does too): ``facts.pci.fields``. Each index is built on first use, from one
    field of every device: twins are found by device ID first, and only those devices' vendor
    is read.
    """

    def __init__(self, devices: Mapping[str, PciDevice]):
        self.devices = devices
        self._kept: Dict[FrozenSet[str], Dict[str, List[PciDevice]]] = {}

    @cached_property
    def by_device_id(self) -> Dict[str, Tuple[str, ...]]:
        """Addresses by device ID (``????`` when unreadable), in address order."""
        found: Dict[str, List[str]] = {}
        for address in sorted(self.devices):
            found.setdefault(self.devices[address].device or "????", []).append(address)
        return {device: tuple(a) for device, a in found.items()}

    @cached_property
    def displays(self) -> Tuple[str, ...]:
        """Addresses of display controllers (class 03), in ``devices`` order."""
        return tuple(a for a, d in self.devices.items() if d.pci_class and d.pci_class.startswith("03"))

    def kept_on_host(self, ids: str, targets: FrozenSet[str]) -> List[PciDevice]:
        """Devices with these vendor:device ids that stay on the host: not among ``targets``, not on a
        vfio driver (address order; their address, ids, class and driver). Computed once per set of
        targets and ids."""
        kept = self._kept.get(targets)
        if kept is None:
            if len(self._kept) >= 4:  # a few scans of one host at most; do not grow without bound
                self._kept.clear()
            kept = self._kept[targets] = {}
        left = kept.get(ids)
        if left is None:
            devices = self.devices
            same = (devices[a] for a in self.by_device_id.get(ids.rpartition(":")[2], ()) if a not in targets)
            left = kept[ids] = [d for d in same if d.ids == ids and not is_vfio_driver(d.driver)]
        return left


__all__ = ["PciIndex"]
