"""Lookups over a host's PCI functions, built once instead of scanning every device per question.

Why: device rules ask, for each target, which *other* devices share its vendor:device ids (can
``vfio-pci ids=`` claim it without taking a twin the host keeps?) or which devices are displays.
Answered by a scan of ``facts.pci`` each time, a host with thousands of functions (SR-IOV VFs)
took minutes; answered from these indexes, the whole scan stays linear in the number of devices.
Pure: built from the parsed devices, never from the host. The lists are shared: never mutate them.
"""

from __future__ import annotations

from typing import Dict, FrozenSet, List, Mapping, Tuple

from scanner.facts.pci import PciDevice, is_vfio_driver


class PciIndex:
    """Indexes of one host's devices (``facts.pci``); see the module docstring."""

    def __init__(self, devices: Mapping[str, PciDevice]):
        self.devices = devices
        found: Dict[str, List[PciDevice]] = {}
        for _, device in sorted(devices.items()):
            if not is_vfio_driver(device.driver):
                found.setdefault(device.ids, []).append(device)
        #: devices not on a vfio driver, by vendor:device ids, in address order
        self.off_vfio_by_ids: Dict[str, Tuple[PciDevice, ...]] = {ids: tuple(d) for ids, d in found.items()}
        #: addresses of display controllers (class 03), in ``devices`` order
        self.displays: Tuple[str, ...] = tuple(a for a, d in devices.items()
                                               if d.pci_class and d.pci_class.startswith("03"))
        self._kept: Dict[FrozenSet[str], Dict[str, List[PciDevice]]] = {}

    def kept_on_host(self, ids: str, targets: FrozenSet[str]) -> List[PciDevice]:
        """Devices with these ids that stay on the host: not among ``targets``, not on a vfio driver
        (address order). Computed once per set of targets, for all ids at once."""
        kept = self._kept.get(targets)
        if kept is None:
            kept = {}
            for key, devices in self.off_vfio_by_ids.items():
                left = [d for d in devices if d.address not in targets]
                if left:
                    kept[key] = left
            if len(self._kept) >= 4:  # a few scans of one host at most; do not grow without bound
                self._kept.clear()
            self._kept[targets] = kept
        return kept.get(ids, [])


__all__ = ["PciIndex"]
