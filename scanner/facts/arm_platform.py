"""An arm64 host's SMMU and MSI isolation, as its firmware and running kernel show them.

A mixin of :class:`scanner.facts.Facts` (it reads through ``self.host`` like every fact). On
arm64 there is no DMAR/IVRS and no ``IR-`` interrupt chip: the firmware describes SMMUs in the
ACPI IORT or the device tree (:mod:`scanner.facts.arm`), the kernel registers them as
``smmu3.0x...`` in /sys/class/iommu, and MSIs are isolated per device by the GICv3 ITS, whose
interrupt chips show as ``ITS-MSI`` (``ITS-PCI-MSIX-...`` on newer kernels) in /proc/interrupts.
Devices behind a PCIe-to-PCI bridge share one SMMU stream ID; the kernel then says
``stream N already in tree from dev X`` and leaves the second device out of every IOMMU group.
"""

from __future__ import annotations

from functools import cached_property
from typing import Dict, Optional, Tuple

from scanner.base.lazyre import lazy_compile
from scanner.base.record import record


IORT_PATH = "/sys/firmware/acpi/tables/IORT"
DT_BASE = "/sys/firmware/devicetree/base"
_STREAM_ALIAS = lazy_compile(r"\s(?P<dev>[0-9a-f]{4,8}:[0-9a-f]{2}:[01][0-9a-f]\.[0-7]): stream (?P<sid>\d+) "
                             r"already in tree from dev (?P<other>[0-9a-f]{4,8}:[0-9a-f]{2}:[01][0-9a-f]\.[0-7])")
_ITS_CHIP = lazy_compile(r"(?:^|\s)ITS-")
#: an MSI domain on the ITS, as 6.1 prints it under ACPI (``PCI/MSI: ITS@0x8080000 domain created``) and on a
#: device tree (``PCI/MSI: /intc@8000000/its@8080000 domain created``)
_ITS_LOG = lazy_compile(r"(?i)\bits@(?:0x)?[0-9a-f]+ domain created")


@record(frozen=True)
class IortRead:
    iort: Optional[Iort]
    path: str
    reason: Optional[str]  # why there is no table: missing, permission denied, garbled


@record(frozen=True)
class DeviceTreeSmmu:
    """The SMMU nodes of a device tree, and the PCIe host nodes that map their devices to one."""

    smmu_nodes: Tuple[str, ...]
    mapped_pcie: Tuple[str, ...]  # PCIe host nodes with an ``iommu-map`` (or ``iommus``) property
    pcie: Tuple[str, ...]
    reason: Optional[str]  # the tree could not be listed


@record(frozen=True)
class MsiIsolation:
    """How MSIs reach the CPUs on an arm64 host."""

    its_lines: Tuple[str, ...]  # /proc/interrupts lines on an ITS chip
    other_msi: Tuple[str, ...]  # MSI lines on another chip (a GICv2m frame: no per-device isolation)
    its_log: Optional[str]  # the kernel's "PCI/MSI: ITS@... domain created"


class ArmPlatform:
    """arm64 facts (``self.host`` is the Host layer)."""

    @cached_property
    def iort_read(self) -> IortRead:
        from scanner.facts.arm import parse_iort

        got = self.host.read_bytes(IORT_PATH)
        if not got.ok:
            return IortRead(None, IORT_PATH, got.reason)
        table, why = parse_iort(got.data)
        return IortRead(table, IORT_PATH, why)

    @cached_property
    def device_tree_smmu(self) -> DeviceTreeSmmu:
        from scanner.facts.arm import is_pcie_node, is_smmu_node

        listing = self.host.listdir(DT_BASE)
        if not listing.ok:
            return DeviceTreeSmmu((), (), (), listing.reason)
        names = listing.entries()
        pcie = tuple(n for n in names if is_pcie_node(n))
        mapped = tuple(n for n in pcie if {"iommu-map", "iommus"} & set(self.host.listdir(f"{DT_BASE}/{n}").entries()))
        return DeviceTreeSmmu(tuple(n for n in names if is_smmu_node(n)), mapped, pcie, None)

    @property
    def smmu_units(self) -> Tuple[str, ...]:
        """The SMMUs the running kernel registered (``smmu3.0x0000000009050000``, ``arm-smmu...``)."""
        return tuple(u for u in self.iommu.units if "smmu" in u)

    @cached_property
    def msi_isolation(self) -> Optional[MsiIsolation]:
        interrupts = self.interrupts_read
        if not interrupts.ok:
            return None
        its, other = [], []
        for line in interrupts.text.splitlines()[1:]:
            if "MSI" not in line:
                continue
            (its if _ITS_CHIP.search(line) else other).append(" ".join(line.split()))
        return MsiIsolation(tuple(its), tuple(other), self.kernel_log.first(_ITS_LOG))

    @cached_property
    def stream_aliases(self) -> Dict[str, Tuple[str, str]]:
        """Device -> (stream ID, the device that holds it) from the kernel log: devices the SMMU
        cannot tell apart, of which the kernel grouped only the first."""
        found = {}
        for line in self.kernel_log.grep(_STREAM_ALIAS):
            m = _STREAM_ALIAS.search(line)
            if m:
                found.setdefault(m.group("dev"), (m.group("sid"), m.group("other")))
        return found

    def hyp_unavailable(self) -> Optional[str]:
        """The kernel's word that it was not started at EL2, so KVM cannot run."""
        return self.kernel_log.first(r"kvm \[\d+\]: HYP mode not available")


__all__ = ["ArmPlatform", "IortRead", "DeviceTreeSmmu", "MsiIsolation", "IORT_PATH", "DT_BASE"]
