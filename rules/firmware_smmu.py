"""VFIO-002 on arm64: the firmware describes an SMMU that PCI DMA goes through.

Used by :mod:`rules.firmware_iommu` on aarch64 hosts. ACPI servers (Ampere, NVIDIA Grace, ...)
describe their SMMUs in the IORT; the table alone is no proof, since QEMU's virt board and
firmware with the SMMU switched off still have one, mapping the PCI root complex straight to the
GICv3 ITS. The check parses the table (root-only readable) for a root complex mapped through an
SMMU node. Unprivileged, it falls back to the SMMUs the kernel registered (``smmu3.*`` in
/sys/class/iommu). A device-tree boot has no ACPI: there the PCIe host node's ``iommu-map``
pointing at an SMMU node is the firmware's word. A device-tree boot may also give coarser IOMMU
groups than ACPI: the root ports' ACS is enabled late, so a root port can share its group with the
device below it (seen on QEMU's virt board with Debian's 6.1 and 6.12 kernels).

Fix: a person enables the SMMU in the firmware setup (ARM servers name it "SMMU" or "IOMMU"; on
some it is an ACPI/IORT option); there is no kernel command-line switch that turns it on (users
try ``iommu.passthrough=1``, which does the opposite). In a VM the hypervisor must give it a
virtual SMMU (QEMU ``-machine virt,iommu=smmuv3``).
"""

from scanner.facts.arm_platform import DT_BASE
from scanner.engine.model import Evidence, Finding, Step

EXPECTED = "an SMMU that the PCI root complex is mapped through (ACPI IORT or device-tree iommu-map)"
DT_NOTE = ("a device-tree boot can give coarser IOMMU groups than ACPI (a root port may share its group with "
           "the device below it): see VFIO-012")


def check(facts):
    tables = facts.acpi_tables
    if tables.ok and tables.names:
        return _acpi(facts, tables)
    tree = facts.device_tree_smmu
    if tree.reason is None and tree.pcie:
        return _device_tree(facts, tree)
    units = facts.smmu_units
    if units:
        return Finding.passed(f"the kernel runs SMMU(s) {' '.join(units)}; neither ACPI tables nor a device tree "
                              "could be read to show what the firmware described",
                              observed=" ".join(units), expected=EXPECTED,
                              evidence=[Evidence("/sys/class/iommu", " ".join(facts.iommu.units)),
                                        Evidence(tables.path, f"<{tables.reason or 'empty'}>")])
    return Finding.skip(f"cannot tell whether the firmware describes an SMMU: {tables.path} "
                        f"({tables.reason or 'empty'}) and {DT_BASE} ({tree.reason or 'no PCIe host node'})",
                        evidence=[Evidence(tables.path, f"<{tables.reason or 'empty'}>")])


def _acpi(facts, tables):
    names = " ".join(n for n in tables.names if n not in ("data", "dynamic"))
    evidence = [Evidence(tables.path, names or "(empty)")]
    units = facts.smmu_units
    evidence.append(Evidence("/sys/class/iommu", " ".join(facts.iommu.units) or "(empty)"))
    if "IORT" not in tables.names:
        return Finding.fail("no ACPI IORT table: the firmware describes no SMMU (nor how PCI reaches the ITS); the "
                            "SMMU is disabled in the firmware or the platform has none",
                            observed=f"no IORT in {tables.path}", expected=EXPECTED, evidence=evidence,
                            remediation=[_enable_step(facts)])
    read = facts.iort_read
    if read.iort is None:
        evidence.append(Evidence(read.path, f"<{read.reason}>"))
        if units:
            return Finding.passed(f"the IORT could not be read ({read.reason}), but the kernel registered SMMU(s) "
                                  f"{' '.join(units)} from it", observed=" ".join(units), expected=EXPECTED,
                                  evidence=evidence)
        return Finding.skip(f"cannot read {read.path} ({read.reason}) to see whether it describes an SMMU, and the "
                            "kernel registered none (run as root to read the table)", evidence=evidence)
    iort = read.iort
    evidence.append(Evidence(read.path, iort.describe()))
    if iort.smmus and iort.routed_root_complexes:
        return Finding.passed(f"the ACPI IORT describes {iort.describe()}", observed=iort.describe(),
                              expected=EXPECTED, evidence=evidence)
    if iort.smmus:
        why = "the IORT has an SMMU, but no PCI root complex is mapped through it: PCI DMA bypasses it"
    else:
        why = ("the ACPI IORT describes no SMMU (it maps PCI only to the interrupt controller): the SMMU is "
               "disabled in the firmware or the platform has none")
    return Finding.fail(why, observed=iort.describe(), expected=EXPECTED, evidence=evidence,
                        remediation=[_enable_step(facts)])


def _device_tree(facts, tree):
    evidence = [Evidence(DT_BASE, f"SMMU nodes: {' '.join(tree.smmu_nodes) or 'none'}; PCIe hosts: "
                                  f"{' '.join(tree.pcie)}; with iommu-map: {' '.join(tree.mapped_pcie) or 'none'}"),
                Evidence("/sys/class/iommu", " ".join(facts.iommu.units) or "(empty)")]
    if tree.smmu_nodes and tree.mapped_pcie:
        return Finding.passed(f"the device tree maps PCIe host {', '.join(tree.mapped_pcie)} to SMMU "
                              f"{', '.join(tree.smmu_nodes)} (device-tree boot, no ACPI); {DT_NOTE}",
                              observed=f"iommu-map on {', '.join(tree.mapped_pcie)}", expected=EXPECTED,
                              evidence=evidence)
    return Finding.fail("the device tree maps no PCIe host to an SMMU (no iommu-map property): PCI DMA is not "
                        "translated", observed=f"SMMU nodes: {' '.join(tree.smmu_nodes) or 'none'}",
                        expected=EXPECTED, evidence=evidence, remediation=[_enable_step(facts, device_tree=True)])


def _enable_step(facts, device_tree=False):
    if facts.cpu and facts.cpu.is_virtual_machine:
        summary = ("Give this VM a virtual SMMU on its hypervisor (QEMU: -machine virt,iommu=smmuv3)")
    elif device_tree:
        summary = ("Boot with a device tree that describes the SMMU and maps the PCIe host through it "
                   "(iommu-map), or boot through UEFI/ACPI with the SMMU enabled in the firmware")
    else:
        summary = ("Enable the SMMU (named 'SMMU' or 'IOMMU') in the firmware (UEFI) setup, save and reboot; no "
                   "kernel command-line option turns it on (iommu.passthrough=1 turns translation off)")
    return Step(summary=summary, phase="firmware", manual=True, requires_reboot=True, persistent=True,
                action={"kind": "firmware", "feature": "smmu"})
