"""VFIO-022 rmrr: the firmware does not pin the device to a 1:1 IOMMU mapping (Intel RMRR).

What: the kernel has not refused the device (or a member of its IOMMU group) an IOMMU domain
because of a firmware-required direct mapping, and the group's ``reserved_regions`` list no
``direct`` region (``direct-relaxable`` ones are fine).

Why: an RMRR (Intel's ACPI DMAR "Reserved Memory Region Reporting"; AMD's IVRS IVMD is the same
idea) tells the OS that the firmware keeps DMA-ing into a memory range behind the OS's back, for
a BMC, a RAID controller's cache or a NIC's management engine (HPE ProLiant and Dell servers are
known for it). The kernel then refuses to give the device to a VM, whose IOMMU mapping could not
keep that range: ``vfio-pci 0000:01:00.1: Device is ineligible for IOMMU domain attach due to
platform RMRR requirement.  Contact your platform vendor.`` (newer kernels: ``Firmware has
requested this device have a 1:1 IOMMU mapping, rejecting configuring the device without a 1:1
mapping``), and QEMU fails at start with ``vfio: failed to set iommu for container: Operation not
permitted`` (or ``Failed to set group container: Invalid argument``), although the device is on
vfio-pci in a viable group. USB controllers and integrated graphics get ``direct-relaxable``
regions, which the kernel lets go of for passthrough.

How: the kernel log's refusal lines naming the device or a member of its group (fail: it has
happened); else ``/sys/kernel/iommu_groups/<group>/reserved_regions``: a ``direct`` entry is
warned about, naming its range (the file is per group, so it may be another member's), since the
attach is then refused as soon as QEMU opens the group. An unreadable file skips, with the reason.

Fix: nothing on the host side can lift the requirement: update the system firmware or change the
vendor's setting for the device (HPE: "HPE Shared Memory features" off for that NIC, per the HPE
advisory), move the card to a slot that no RMRR covers, or run a kernel with the out-of-tree
relaxable-RMRR patch (at the risk the firmware's DMA hits guest memory).
"""

from typing import Dict, List

from scanner import hookimpl
from scanner.base.lazyre import lazy_compile
from scanner.engine.model import Evidence, Finding, Rule, Step

#: What the kernel prints when it refuses a device an unmanaged (VFIO) domain because of a firmware
#: direct mapping: the Intel driver's RMRR check in older kernels, the IOMMU core's check in newer ones.
REFUSAL = lazy_compile(r"Device is ineligible for IOMMU domain attach due to platform RMRR requirement"
                       r"|Firmware has requested this device have a 1:1 IOMMU mapping")
#: A PCI address in a log line, whole (``10000:01:00.0`` does not name ``0000:01:00.0``).
ADDRESS_IN_LINE = lazy_compile(r"(?<![0-9a-f:])([0-9a-f]{4,8}:[0-9a-f]{2}:[0-1][0-9a-f]\.[0-7])(?![0-9])")


@hookimpl
def vfio_scan_register_rules(register):
    register(Rule(id="VFIO-022", name="rmrr", scope="device", severity="high",
                  title="No firmware-required 1:1 mapping (RMRR) on the device", check=check, docs=__doc__))


def check(facts, scan):
    refusals = refusals_by_address(facts.kernel_log.grep(REFUSAL))
    for target in scan.targets:
        yield _judge(facts, target.address, refusals)


def refusals_by_address(lines: List[str]) -> Dict[str, List[str]]:
    """The refusal lines by the PCI address each names: looked up per group member, never searched per target."""
    found: Dict[str, List[str]] = {}
    for line in lines:
        for address in set(ADDRESS_IN_LINE.findall(line)):
            found.setdefault(address, []).append(line)
    return found


def _judge(facts, address, refusals) -> Finding:
    group = facts.pci[address].iommu_group
    if group is None:
        return Finding.skip("follows from VFIO-005: the device is in no IOMMU group", subject=address)
    members = sorted(set(facts.devices_in_group(group)) | {address}, key=lambda m: m != address)  # the target first
    refused = [(m, line) for m in members for line in refusals.get(m, ())]
    if refused:
        return Finding.fail(_refused_message(address, refused[0][0]), subject=address,
                            observed="the kernel refused an IOMMU domain (RMRR)",
                            expected="no firmware-required direct mapping",
                            evidence=[Evidence("kernel log", line) for _, line in refused[:3]], remediation=_steps(address))
    regions = facts.reserved_regions(group)
    if not regions.ok:
        return Finding.skip(f"cannot read the group's reserved regions ({regions.describe()})", subject=address)
    direct = [r for r in regions.rows if r.kind == "direct"]
    evidence = [Evidence(regions.source, "\n".join(r.line for r in regions.rows) or "(empty)")]
    if direct:
        ranges = ", ".join(f"{r.start:x}-{r.end:x}" for r in direct)
        return Finding.warn(f"IOMMU group {group} has firmware-required direct region(s) {ranges} (an RMRR, not "
                            "relaxable): the kernel refuses the group to VFIO if one is this device's, and QEMU then "
                            "fails at start (\"failed to set iommu for container\")", subject=address,
                            observed=f"direct: {ranges}", expected="no direct region (direct-relaxable is fine)",
                            evidence=evidence, remediation=_steps(address))
    kinds = ", ".join(sorted({r.kind for r in regions.rows})) or "none"
    return Finding.passed(f"no firmware-required direct mapping in IOMMU group {group} (reserved regions: {kinds})",
                          subject=address, observed=f"reserved regions: {kinds}", expected="no direct region",
                          evidence=evidence)


def _refused_message(address: str, refused: str) -> str:
    whom = "it" if refused == address else f"{refused}, in its IOMMU group,"
    return (f"the kernel refused {whom} an IOMMU domain because the firmware requires a 1:1 mapping (Intel RMRR): "
            "the group cannot be assigned to a VM and QEMU fails at start (\"failed to set iommu for container\")")


def _steps(address: str) -> List[Step]:
    return [
        Step(summary=(f"Update the system firmware, or turn off the vendor's feature that keeps DMA going to "
                      f"{address} (HPE: \"HPE Shared Memory features\"), or move the card to a slot no RMRR covers"),
             phase="firmware", manual=True, requires_reboot=True, persistent=True,
             action={"kind": "firmware", "feature": "rmrr", "address": address}),
        Step(summary=("Otherwise a kernel built with the out-of-tree relaxable-RMRR patch lets the device go (the "
                      "firmware's DMA may then hit guest memory): no command here can do it"),
             phase="kernel", manual=True, requires_reboot=True, persistent=True),
    ]
