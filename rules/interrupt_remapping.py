"""VFIO-006 interrupt-remapping: interrupts from devices are remapped (or the unsafe override is explicit).

What: the IOMMU remaps interrupts, so a device given to a guest cannot forge MSIs into the
host. Evidence is ``IR-`` chips in ``/proc/interrupts`` (``IR-PCI-MSI``, ``IR-IO-APIC``) or the
kernel log's ``Enabled IRQ remapping in x2apic mode`` / ``in xapic mode`` (xapic mode is still
remapping) or ``AMD-Vi: Interrupt remapping enabled``.

Why: ``vfio_iommu_type1`` refuses to attach a group without it ("No interrupt remapping support.
Use the module param allow_unsafe_interrupts"), and QEMU then fails with "failed to set iommu
for container: Operation not permitted".

How: ``/proc/interrupts`` first, the kernel log second; ``allow_unsafe_interrupts`` (module
parameter or command line) is reported as an explicit, unsafe override. Without any evidence
either way the rule warns rather than fails: the absence of ``IR-`` chips is a heuristic.

Fix: enable interrupt remapping / x2APIC in the firmware or update it; as a last resort, and
knowingly unsafe, ``options vfio_iommu_type1 allow_unsafe_interrupts=1``.
"""

from scanner import hookimpl
from scanner.facts.cmdline import truthy
from scanner.model import Evidence, Finding, Rule, Step
from scanner.remedies import modprobe_option_step

POSITIVE = r"Enabled IRQ remapping in (x2apic|xapic) mode|AMD-Vi: Interrupt remapping enabled|IRQ remapping enabled"
NEGATIVE = r"(?i)disabling interrupt remapping|not enabling interrupt remapping|irq remapping (was )?disabled"
UNSAFE_CONF = "/etc/modprobe.d/vfio-unsafe-interrupts.conf"


@hookimpl
def vfio_scan_register_rules(register):
    register(Rule(id="VFIO-006", name="interrupt-remapping", scope="host", severity="high",
                  title="Interrupt remapping enabled", check=check, docs=__doc__))


def check(facts, scan):
    interrupts = facts.interrupts
    log = facts.kernel_log
    evidence = []
    if interrupts is not None:
        sample = interrupts.remapped[0] if interrupts.remapped else "no IR- chips"
        evidence.append(Evidence("/proc/interrupts", f"{len(interrupts.remapped)} of {interrupts.lines} lines remapped; {sample}"))
    else:
        evidence.append(Evidence("/proc/interrupts", f"<{facts.interrupts_read.reason}>"))
    positive = log.grep(POSITIVE)
    negative = log.grep(NEGATIVE)
    evidence += [Evidence("kernel log", line) for line in (positive + negative)[:3]]
    param = facts.module_param("vfio_iommu_type1", "allow_unsafe_interrupts")
    cmdline_unsafe = facts.cmdline is not None and truthy(facts.cmdline.value("vfio_iommu_type1.allow_unsafe_interrupts"))
    unsafe = (param.ok and truthy(param.text)) or cmdline_unsafe
    if param.ok:
        evidence.append(Evidence(param.path, param.text.strip()))
    remapped = bool(interrupts and interrupts.any_remapped) or bool(positive)
    undo = Step(summary="Remove the allow_unsafe_interrupts override (module option or command line)", phase="modules",
                manual=True, requires_reboot=True, action={"kind": "see-rule", "rules": ["VFIO-004"]})
    if remapped:
        if unsafe:
            yield Finding.warn("interrupt remapping is on, yet allow_unsafe_interrupts is set: a needless security "
                               "downgrade", observed="remapping on, allow_unsafe_interrupts=Y",
                               expected="allow_unsafe_interrupts=N", evidence=evidence, severity="medium",
                               remediation=[undo])
            return
        yield Finding.passed("interrupt remapping is on", observed="remapped interrupts", expected="remapped interrupts",
                             evidence=evidence)
        return
    if unsafe:
        yield Finding.warn("no interrupt remapping; VFIO works only through the explicit, unsafe "
                           "allow_unsafe_interrupts override (a guest could forge interrupts)",
                           observed="no remapping, allow_unsafe_interrupts=Y", expected="interrupt remapping on",
                           evidence=evidence, remediation=[_firmware_fix()])
        return
    if interrupts is None and not log.available:
        yield Finding.skip(f"cannot tell: {facts.interrupts_read.describe()}, and no kernel log ({log.reason})",
                           evidence=evidence)
        return
    if interrupts is not None and interrupts.msi_or_ioapic == 0 and not negative and not log.available:
        yield Finding.skip("cannot tell: /proc/interrupts shows no MSI or IO-APIC interrupts and there is no kernel log",
                           evidence=evidence)
        return
    where = "/proc/interrupts has no IR- interrupt chips"
    where += " and the kernel log has no 'Enabled IRQ remapping' line" if log.available else f" (no kernel log: {log.reason})"
    yield Finding.warn(f"no interrupt remapping seen: {where}; vfio_iommu_type1 refuses to attach IOMMU groups without it",
                       observed="no remapped interrupts", expected="remapped interrupts (IR- chips)",
                       evidence=evidence,
                       remediation=[_firmware_fix(),
                                    modprobe_option_step("vfio_iommu_type1", "allow_unsafe_interrupts=1", UNSAFE_CONF,
                                                         "Last resort, knowingly unsafe: let VFIO run without "
                                                         "interrupt remapping (a guest could forge interrupts)",
                                                         initramfs=facts.initramfs_tool,
                                                         current=facts.etc_file(UNSAFE_CONF))])


def _firmware_fix() -> Step:
    return Step(summary='Enable "Interrupt Remapping" / "X2APIC" in the firmware setup or update the firmware, then reboot',
                phase="firmware", manual=True, requires_reboot=True, persistent=True,
                action={"kind": "firmware", "feature": "interrupt-remapping"})
