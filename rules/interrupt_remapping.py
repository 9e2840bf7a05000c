"""VFIO-006 interrupt-remapping: interrupts from devices are remapped (or the unsafe override is explicit).

What: the IOMMU remaps interrupts, so a device given to a guest cannot forge MSIs into the
host. Evidence is ``IR-`` chips in ``/proc/interrupts`` (``IR-PCI-MSI``, ``IR-IO-APIC``) or the
kernel log's ``Enabled IRQ remapping in x2apic mode`` / ``in xapic mode`` (xapic mode is still
remapping) or ``AMD-Vi: Interrupt remapping enabled``.

Why: ``vfio_iommu_type1`` refuses to attach a group without it ("No interrupt remapping support.
Use the module param allow_unsafe_interrupts"), and QEMU then fails with "failed to set iommu
for container: Operation not permitted".

How: ``/proc/interrupts`` decides, the kernel log corroborates. On x86 with the IOMMU running,
device MSIs on the plain ``PCI-MSI`` chip and no ``IR-`` chip at all is positive evidence that
remapping is off: fail (QEMU would not start). Without MSI lines to judge, the log's lines count
(the words each vendor's kernel prints); with neither, the rule warns, since an absence is only a
heuristic. ``allow_unsafe_interrupts`` (module parameter or command line) is reported as an
explicit, unsafe override -- as long as the next boot sets it too: ``options vfio_iommu_type1
allow_unsafe_interrupts=1`` in /etc/modprobe.d (not read for a built-in module), or the parameter on
the next boot's command line (the boot configuration's; without one this tool reads, the running
one). Written to ``/sys/module/vfio_iommu_type1/parameters/allow_unsafe_interrupts`` at run time
only, it is N again after a reboot or a reload of the module, and QEMU fails with EPERM: "works now,
lost at next boot", a fail where the MSIs show remapping off (a warning where it is only not seen),
with evidence of where it is set now and where the next boot lacks it. A modprobe.d file that cannot
be read leaves that untold: the warning says so. With the IOMMU off there is no remapping to judge: the finding follows
from VFIO-005 (and VFIO-004), and no unsafe override is offered for what the IOMMU fix cures.

On arm64 there is no ``IR-`` chip: the GICv3 ITS isolates each device's MSIs (``ITS-MSI`` chips),
and the kernel marks its MSI domain as isolating, so vfio_iommu_type1 attaches groups. See
:mod:`rules.its_isolation`.

Fix: enable interrupt remapping / x2APIC in the firmware or update it; as a last resort, and
knowingly unsafe, ``options vfio_iommu_type1 allow_unsafe_interrupts=1`` -- shown, never applied
by the fix script (a manual step): it lets every guest forge interrupts into the host.
"""

from dataclasses import replace

from rules import its_isolation
from scanner import hookimpl
from scanner.facts.cmdline import truthy
from scanner.engine.model import LOST_AT_NEXT_BOOT, Evidence, Finding, Rule, Step
from scanner.remediation.remedies import modprobe_option_step

POSITIVE = r"Enabled IRQ remapping in (x2apic|xapic) mode|AMD-Vi: Interrupt remapping enabled|IRQ remapping enabled"
NEGATIVE = r"(?i)disabling interrupt remapping|not enabling interrupt remapping|irq remapping (was )?disabled"
UNSAFE_CONF = "/etc/modprobe.d/vfio-unsafe-interrupts.conf"


@hookimpl
def vfio_scan_register_rules(register):
    register(Rule(id="VFIO-006", name="interrupt-remapping", scope="host", severity="high",
                  title="Interrupt remapping enabled", check=check, docs=__doc__))


def check(facts, scan):
    if facts.is_arm64:
        yield its_isolation.judge(facts, _unsafe(facts), _last_resort(facts))
        return
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
    unsafe, param = _unsafe(facts)
    if param.ok:
        evidence.append(Evidence(param.path, param.text.strip()))
    judged = interrupts is not None and (interrupts.any_remapped or bool(interrupts.plain_msi))
    remapped = interrupts.any_remapped if judged else bool(positive)  # /proc/interrupts decides, the log corroborates
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
        yield _through_the_override(facts, interrupts, evidence)
        return
    if not facts.iommu.active and not facts.iommu.groups_reason:
        yield Finding.skip("follows from VFIO-005: the IOMMU does not run, and interrupt remapping comes with it; "
                           "judged again once it runs", evidence=evidence,
                           remediation=[Step(summary="Get the IOMMU running first (VFIO-004, VFIO-005), reboot, then "
                                                     "scan again", phase="kernel", manual=True,
                                             action={"kind": "see-rule", "rules": ["VFIO-004", "VFIO-005"]})])
        return
    last_resort = _last_resort(facts)
    expected_line = _log_line(facts)
    if interrupts is not None and interrupts.plain_msi and facts.is_x86:
        evidence.append(Evidence("/proc/interrupts", interrupts.plain_msi[0]))
        yield Finding.fail(f"interrupt remapping is off: {len(interrupts.plain_msi)} device MSI line(s) on the plain "
                           "PCI-MSI chip and no IR- chip in /proc/interrupts while the IOMMU runs; vfio_iommu_type1 "
                           "refuses to attach IOMMU groups (\"No interrupt remapping support\") and QEMU fails to start",
                           observed=f"{len(interrupts.plain_msi)} PCI-MSI line(s), 0 IR-", expected="IR-PCI-MSI chips",
                           evidence=evidence, remediation=[_firmware_fix(), last_resort])
        return
    if interrupts is None and not log.available:
        yield Finding.skip(f"cannot tell: {facts.interrupts_read.describe()}, and no kernel log ({log.reason})",
                           evidence=evidence)
        return
    if interrupts is not None and interrupts.msi_or_ioapic == 0 and not negative and not log.available:
        yield Finding.skip("cannot tell: /proc/interrupts shows no MSI or IO-APIC interrupts and there is no kernel log",
                           evidence=evidence)
        return
    if interrupts is not None:
        where = "/proc/interrupts has no IR- interrupt chips"
    else:
        where = f"{facts.interrupts_read.describe()}"
    where += f" and the kernel log has no '{expected_line}' line" if log.available else f" (no kernel log: {log.reason})"
    yield Finding.warn(f"no interrupt remapping seen: {where}; vfio_iommu_type1 refuses to attach IOMMU groups without it",
                       observed="no remapped interrupts", expected="remapped interrupts (IR- chips)",
                       evidence=evidence, remediation=[_firmware_fix(), last_resort])


def _through_the_override(facts, interrupts, evidence) -> Finding:
    """No remapping: VFIO works only through ``allow_unsafe_interrupts``. Set for the next boot too (modprobe.d,
    the next boot's command line): the warning it always was. Set at run time only (``echo Y > /sys/module/
    .../allow_unsafe_interrupts``, ``modprobe ... allow_unsafe_interrupts=1``): after a reboot or a reload the
    parameter is N and QEMU fails with EPERM, so it is lost at next boot -- a fail, as without the override,
    where the MSIs show remapping off; a warning where that is only not seen."""
    message = ("no interrupt remapping; VFIO works only through the explicit, unsafe allow_unsafe_interrupts "
               "override (a guest could forge interrupts)")
    option = facts.module_option_at_boot("vfio_iommu_type1", "allow_unsafe_interrupts")
    if option.where is not None and (option.value == "" or truthy(option.value)):
        return Finding.warn(message, observed="no remapping, allow_unsafe_interrupts=Y", expected="interrupt remapping on",
                            evidence=evidence + [Evidence("next boot", option.where)], remediation=[_firmware_fix()])
    if option.where is None and option.unread:
        return Finding.warn(f"{message}; whether the next boot sets it too cannot be told ({'; '.join(option.unread)})",
                            observed="no remapping, allow_unsafe_interrupts=Y", expected="interrupt remapping on",
                            evidence=evidence + [Evidence("next boot", f"<{u}>") for u in option.unread],
                            remediation=[_firmware_fix()])
    cmdline = facts.cmdline
    on_line = cmdline.all("vfio_iommu_type1.allow_unsafe_interrupts") if cmdline is not None else []
    now = [f"{p.text} on {cmdline.source}" for p in on_line if p.value is None or truthy(p.value)]
    now = now or ["the running module's parameter (set at run time)"]
    unset = [option.where] if option.where is not None else list(option.missing)
    positive = bool(interrupts is not None and interrupts.plain_msi and facts.is_x86 and facts.iommu.active)
    make = Finding.fail if positive else Finding.warn
    return make(f"{LOST_AT_NEXT_BOOT}: without interrupt remapping VFIO works only through allow_unsafe_interrupts, "
                f"set now by {', '.join(now)}, but not for the next boot ({'; '.join(unset)}): after a reboot (or a "
                "reload of vfio_iommu_type1) it is N, vfio_iommu_type1 refuses every IOMMU group (\"No interrupt "
                "remapping support\") and QEMU fails to start", observed="allow_unsafe_interrupts=Y now, not at boot",
                expected="interrupt remapping on (or the override set for the next boot too)",
                evidence=evidence + [Evidence("next boot", u) for u in unset],
                remediation=[_firmware_fix(), _last_resort(facts)])


def _unsafe(facts):
    """(is the unsafe override set, the module parameter's read): by module parameter or command line."""
    param = facts.module_param("vfio_iommu_type1", "allow_unsafe_interrupts")
    cmdline_unsafe = facts.cmdline is not None and truthy(facts.cmdline.value("vfio_iommu_type1.allow_unsafe_interrupts"))
    return (param.ok and truthy(param.text)) or cmdline_unsafe, param


def _last_resort(facts) -> Step:
    """The override, shown with its commands but never applied by the fix script (``manual``): it
    lets every guest forge interrupts to the host, a choice only the operator can make, knowingly."""
    step = modprobe_option_step("vfio_iommu_type1", "allow_unsafe_interrupts=1", UNSAFE_CONF,
                                "Last resort, knowingly unsafe: let VFIO run without interrupt remapping (a "
                                "guest could forge interrupts); never applied by the fix script: run it yourself "
                                "only if you accept that", initramfs=facts.initramfs_tool,
                                current=facts.etc_file(UNSAFE_CONF))
    return replace(step, manual=True)


def _log_line(facts) -> str:
    """The words this CPU vendor's kernel prints when remapping is on (quoted only for that kernel)."""
    vendor = facts.cpu.vendor if facts.cpu is not None else None
    if vendor == "amd":
        return "AMD-Vi: Interrupt remapping enabled"
    if vendor == "intel":
        return "Enabled IRQ remapping in x2apic/xapic mode"
    return "Enabled IRQ remapping / AMD-Vi: Interrupt remapping enabled"


def _firmware_fix() -> Step:
    return Step(summary='Enable "Interrupt Remapping" / "X2APIC" in the firmware setup or update the firmware, then reboot',
                phase="firmware", manual=True, requires_reboot=True, persistent=True,
                action={"kind": "firmware", "feature": "interrupt-remapping"})
