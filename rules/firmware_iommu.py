"""VFIO-002 firmware-iommu: the firmware exposes an IOMMU (Intel VT-d or AMD-Vi).

What: the ACPI table that describes the IOMMU to the kernel must exist under
``/sys/firmware/acpi/tables``: ``DMAR`` for Intel VT-d, ``IVRS`` for AMD-Vi.

Why: without the table the kernel has no IOMMU to enable, whatever the command line says.
This is the firmware link of the chain: VT-d / AMD-Vi switched on in the BIOS setup.

How: the table's presence in sysfs (readable without root: only the directory is listed). The
kernel log line ``DMAR: IOMMU enabled`` is **not** evidence: the kernel prints it whenever it
parses ``intel_iommu=on``, even on a machine without any IOMMU. The ``ACPI: DMAR``/``ACPI:
IVRS`` boot lines are shown as corroboration. On arm64 the SMMU is described by the ACPI IORT or
the device tree instead: see :mod:`rules.firmware_smmu`. Other architectures are skipped with
that reason.

Fix: a person enables VT-d (Intel) or IOMMU / AMD-Vi (AMD) in the firmware setup; in a virtual
machine the hypervisor must give it a virtual IOMMU (QEMU ``-device intel-iommu``).
"""

from rules import firmware_smmu
from scanner import hookimpl
from scanner.engine.model import Evidence, Finding, Rule, Step
from scanner.remediation.remedies import firmware_step

TABLES = {"intel": ("DMAR",), "amd": ("IVRS",)}
NAMES = {"DMAR": "DMAR (Intel VT-d)", "IVRS": "IVRS (AMD-Vi)"}


@hookimpl
def vfio_scan_register_rules(register):
    register(Rule(id="VFIO-002", name="firmware-iommu", scope="host", severity="critical",
                  title="Firmware exposes an IOMMU (ACPI DMAR/IVRS, IORT)", check=check, docs=__doc__))


def check(facts, scan):
    if facts.is_arm64:
        yield firmware_smmu.check(facts)
        return
    if facts.arch and not facts.is_x86:
        yield Finding.skip(f"not applicable on {facts.arch}: DMAR and IVRS are x86 ACPI tables, and this tool "
                           "knows no other architecture's IOMMU description but arm64's")
        return
    tables = facts.acpi_tables
    if not tables.ok:
        yield Finding.skip(f"cannot list the ACPI tables ({tables.path}: {tables.reason})",
                           evidence=[Evidence(tables.path, f"<{tables.reason}>")])
        return
    vendor = facts.cpu.vendor if facts.cpu else None
    wanted = TABLES.get(vendor or "", ("DMAR", "IVRS"))
    present = [t for t in wanted if t in tables.names]
    evidence = [Evidence(tables.path, " ".join(n for n in tables.names if n not in ("data", "dynamic")) or "(empty)")]
    evidence += [Evidence("kernel log", line) for line in facts.kernel_log.grep(r"^ACPI: (DMAR|IVRS) ")[:2]]
    decoy = facts.kernel_log.first(r"DMAR: IOMMU enabled")
    if present:
        yield Finding.passed(f"the firmware exposes {' and '.join(NAMES[t] for t in present)}",
                             observed=f"{'/'.join(present)} table present", expected=f"{' or '.join(wanted)} table present",
                             evidence=evidence)
        return
    message = f"no ACPI {' or '.join(wanted)} table: the IOMMU is disabled in the firmware or the platform has none"
    if decoy:
        evidence.append(Evidence("kernel log", decoy + "  (printed because intel_iommu=on was parsed; not evidence of an IOMMU)"))
    fix = [firmware_step("iommu", vendor)]
    if facts.cpu and facts.cpu.is_virtual_machine:
        message += "; this host is a virtual machine, so its hypervisor must provide a virtual IOMMU"
        fix = [Step(summary="Give this VM a virtual IOMMU on its hypervisor (QEMU: -machine q35,kernel-irqchip=split "
                            "-device intel-iommu,intremap=on, or -device amd-iommu)",
                    phase="firmware", manual=True, requires_reboot=True, persistent=True,
                    action={"kind": "firmware", "feature": "virtual-iommu"})]
    yield Finding.fail(message, observed=f"no {'/'.join(wanted)} in {tables.path}",
                       expected=f"{' or '.join(wanted)} table present", evidence=evidence, remediation=fix)
