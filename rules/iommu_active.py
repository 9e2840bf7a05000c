"""VFIO-005 iommu-active: the IOMMU really runs, with real IOMMU groups.

What: ``/sys/class/iommu`` has units (``dmar0``, ``ivhd0``) and ``/sys/kernel/iommu_groups``
has groups, none of them a ``vfio-noiommu`` fake.

Why: a DMAR table and a command-line flag are intentions; groups are the kernel's proof that DMA
translation is up. Without them ``vfio-pci`` fails to probe (error -22) and QEMU cannot open any
device. A ``vfio-noiommu`` group gives a device to user space with no DMA protection at all.

How: sysfs decides. Kernel log lines only corroborate: ``DMAR: Intel(R) Virtualization
Technology for Directed I/O`` and ``Adding to iommu group`` are real signs;
``iommu: Default domain type: Translated`` is printed even with VT-d off, and
``DMAR: IOMMU enabled`` only means ``intel_iommu=on`` was parsed. Under Xen, dom0 shows no
groups because the hypervisor owns the IOMMU: skipped with that reason.

Fix: whatever stops it upstream: firmware (VFIO-002), kernel build (VFIO-003), command line
(VFIO-004); then reboot.
"""

from scanner import hookimpl
from scanner.facts.cmdline import truthy
from scanner.engine.model import Evidence, Finding, Rule, Step

CORROBORATE = (r"DMAR: Intel\(R\) Virtualization Technology for Directed I/O|AMD-Vi: Found IOMMU|Found IOMMU at"
               r"|DMAR: IOMMU disabled|Adding to iommu group|iommu: Default domain type|arm-smmu")
MISLEADING = ("iommu: Default domain type", "DMAR: IOMMU enabled")


@hookimpl
def vfio_scan_register_rules(register):
    register(Rule(id="VFIO-005", name="iommu-active", scope="host", severity="critical",
                  title="IOMMU active with real IOMMU groups", check=check, docs=__doc__))


def _log_evidence(facts):
    lines, seen_group = [], False
    for line in facts.kernel_log.grep(CORROBORATE):
        if "Adding to iommu group" in line:
            if seen_group:
                continue
            seen_group = True
        note = "  (printed whether or not translation runs: not evidence)" if line.startswith(MISLEADING) else ""
        lines.append(Evidence("kernel log", line + note))
    return lines[:5]


def _likely_cause(facts):
    tables = facts.acpi_tables
    if facts.is_arm64:  # no switch turns an SMMU on: the kernel lacks the driver, or the firmware describes none
        kc = facts.kconfig
        if kc.found and not (kc.enabled("ARM_SMMU_V3") or kc.enabled("ARM_SMMU")):
            return "VFIO-003", "kernel", "the kernel has no SMMU driver (see VFIO-003)"
        return "VFIO-002", "firmware", "the firmware describes no SMMU the kernel could start (see VFIO-002)"
    if facts.is_x86 and tables.ok and not ({"DMAR", "IVRS"} & set(tables.names)):
        return "VFIO-002", "firmware", "the firmware exposes no IOMMU (see VFIO-002)"
    cl = facts.cmdline
    if cl and (cl.last_of("intel_iommu", {"on", "off"}) == "off" or cl.last_of("amd_iommu", {"off"})
               or cl.last_of("iommu", {"off"})):
        return "VFIO-004", "boot", "the kernel command line disables it (see VFIO-004)"
    kc = facts.kconfig
    if kc.found and not (kc.enabled("INTEL_IOMMU") or kc.enabled("AMD_IOMMU")):
        return "VFIO-003", "kernel", "the kernel has no IOMMU driver (see VFIO-003)"
    return "VFIO-004", "boot", "it was not enabled at boot (see VFIO-004)"


def check(facts, scan):
    st = facts.iommu
    if st.groups_reason:
        yield Finding.skip(f"cannot list /sys/kernel/iommu_groups ({st.groups_reason})")
        return
    if not st.units and not st.groups and not facts.host.is_dir("/sys/kernel"):
        # a partial capture (hwloc's keeps /sys/bus and /sys/devices only): absence there is no evidence
        yield Finding.skip("cannot tell whether the IOMMU is active: this capture has no /sys/kernel at all")
        return
    if facts.xen_dom0 and not st.groups:
        yield Finding.skip("Xen dom0: the Xen hypervisor owns the IOMMU, so Linux shows no IOMMU groups here")
        return
    evidence = [
        Evidence("/sys/class/iommu", " ".join(st.units) or (f"<{st.units_reason}>" if st.units_reason else "(empty)")),
        Evidence("/sys/kernel/iommu_groups", f"{len(st.groups)} groups" if st.groups else "(none)"),
    ] + _log_evidence(facts)
    noiommu_param = facts.module_param("vfio", "enable_unsafe_noiommu_mode")
    if noiommu_param.ok:
        evidence.append(Evidence(noiommu_param.path, noiommu_param.text.strip()))
    fake = st.noiommu_groups
    if fake:
        names = ", ".join(g.number for g in fake)
        yield Finding.fail(f"IOMMU group(s) {names} are vfio-noiommu fakes: devices there reach all memory "
                           "with no DMA protection, never fit for a VM", observed=f"{len(fake)} vfio-noiommu group(s)",
                           expected="only real IOMMU groups", evidence=evidence, severity="critical",
                           remediation=[Step(summary="Turn no-IOMMU mode off: remove vfio.enable_unsafe_noiommu_mode=1 "
                                                     "and enable_unsafe_noiommu_mode options, then reboot",
                                             phase="modules", manual=True, requires_reboot=True, persistent=True,
                                             action={"kind": "see-rule", "rules": ["VFIO-004"]})])
        return
    if st.active:
        units = " ".join(st.units) or "none listed"
        message = f"the IOMMU is active: {len(st.real_groups)} IOMMU groups, units: {units}"
        if noiommu_param.ok and truthy(noiommu_param.text):
            yield Finding.warn(message + "; but vfio's enable_unsafe_noiommu_mode is on, which lets devices without "
                               "an IOMMU be used unprotected", observed="enable_unsafe_noiommu_mode=Y",
                               expected="enable_unsafe_noiommu_mode=N", evidence=evidence, severity="medium")
            return
        yield Finding.passed(message, observed=f"{len(st.real_groups)} groups", expected="at least one IOMMU group",
                             evidence=evidence)
        return
    if st.units:
        yield Finding.fail(f"IOMMU units are registered ({' '.join(st.units)}) but there are no IOMMU groups",
                           observed="units but no groups", expected="IOMMU groups", evidence=evidence,
                           remediation=[Step(summary="Check the kernel log for IOMMU errors and reboot",
                                             phase="boot", manual=True, requires_reboot=True)])
        return
    rule_id, phase, cause = _likely_cause(facts)
    yield Finding.fail(f"the IOMMU is not active: no IOMMU units and no IOMMU groups; most likely {cause}",
                       observed="no /sys/class/iommu units, no IOMMU groups", expected="IOMMU groups present",
                       evidence=evidence,
                       remediation=[Step(summary=f"Fix {rule_id} first, reboot, and scan again", phase=phase,
                                         manual=True, requires_reboot=True,
                                         action={"kind": "see-rule", "rules": [rule_id]})])
