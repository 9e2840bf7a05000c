"""CPU vendor and feature flags from ``/proc/cpuinfo``."""

from __future__ import annotations

from typing import FrozenSet, Optional

from scanner.base.record import record

VENDORS = {
    "GenuineIntel": "intel",
    "AuthenticAMD": "amd",
    "HygonGenuine": "amd",  # Hygon Dhyana: AMD-Vi IOMMU and SVM
    "CentaurHauls": "intel",  # Centaur/Zhaoxin use Intel VT-x and DMAR
    "Shanghai": "intel",
}


@record(frozen=True)
class CpuInfo:
    """The CPU as ``/proc/cpuinfo`` describes it: vendor and feature flags."""

    vendor: Optional[str]  # intel | amd | None (unknown, or not x86)
    vendor_id: Optional[str]  # as the CPU reports it
    flags: FrozenSet[str]
    model_name: Optional[str] = None

    @property
    def virtualization_flag(self) -> Optional[str]:
        """The flag KVM needs on this vendor: ``vmx`` (Intel) or ``svm`` (AMD)."""
        return {"intel": "vmx", "amd": "svm"}.get(self.vendor or "")

    @property
    def is_virtual_machine(self) -> bool:
        return "hypervisor" in self.flags


def parse_cpuinfo(text: str) -> CpuInfo:
    """First processor's vendor, flags (x86 ``flags``, arm ``Features``) and model name."""
    vendor_id = model = None
    flags: FrozenSet[str] = frozenset()
    for line in text.splitlines():
        if not line.strip():
            if vendor_id or flags:
                break  # end of the first processor block
            continue
        key, sep, value = line.partition(":")
        if not sep:
            continue
        key = key.strip().lower()
        value = value.strip()
        if key == "vendor_id" and vendor_id is None:
            vendor_id = value
        elif key in ("flags", "features") and not flags:
            flags = frozenset(value.split())
        elif key == "model name" and model is None:
            model = value
    return CpuInfo(vendor=VENDORS.get((vendor_id or "").strip()), vendor_id=vendor_id, flags=flags, model_name=model)
