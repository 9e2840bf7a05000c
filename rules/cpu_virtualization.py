"""VFIO-001 cpu-virtualization: the CPU can run KVM guests and /dev/kvm exists.

What: ``/proc/cpuinfo`` must advertise the vendor's hardware virtualization flag (``vmx`` on
Intel, ``svm`` on AMD) and ``/dev/kvm`` must exist, which is what QEMU's ``-enable-kvm`` opens.

Why: a passed-through device is useless to a guest that runs under software emulation;
libvirt and QEMU refuse or crawl without KVM.

How: the first processor's ``flags`` line, and the ``/dev/kvm`` node. Kernel log lines such as
``VMX (outside TXT) disabled by BIOS`` are shown as corroboration only. In a virtual machine
(``hypervisor`` flag) the host must offer nested virtualization.

Fix: enable VT-x / SVM in the firmware setup, then ``modprobe kvm_intel`` (or ``kvm_amd``).
"""

from dataclasses import replace

from scanner import hookimpl
from scanner.facts import evidence_of
from scanner.engine.model import Evidence, Finding, Rule, Step
from scanner.remediation.remedies import firmware_step

BIOS_OFF = r"(?i)(VMX \(outside TXT\) disabled by BIOS|kvm: disabled by bios|SVM disabled by BIOS|kvm: no hardware support)"


@hookimpl
def vfio_scan_register_rules(register):
    register(Rule(id="VFIO-001", name="cpu-virtualization", scope="host", severity="high",
                  title="CPU virtualization (VT-x/AMD-V) and /dev/kvm", check=check, docs=__doc__))


def check(facts, scan):
    if not facts.cpu_read.ok:
        yield Finding.skip(f"cannot read the CPU flags ({facts.cpu_read.describe()})",
                           evidence=[evidence_of(facts.cpu_read)])
        return
    cpu = facts.cpu
    kvm = facts.dev_kvm
    flag = cpu.virtualization_flag
    shown = sorted(cpu.flags & {"vmx", "svm", "hypervisor"})
    evidence = [
        Evidence("/proc/cpuinfo", f"vendor_id: {cpu.vendor_id or '?'}; flags of interest: {' '.join(shown) or 'none'}"),
        Evidence("/dev/kvm", "present" if kvm.ok else f"<{kvm.reason}>"),
    ]
    evidence += [Evidence("kernel log", line) for line in facts.kernel_log.grep(BIOS_OFF)[:3]]
    if facts.is_x86 or cpu.vendor:
        has_flag = flag in cpu.flags if flag else bool(cpu.flags & {"vmx", "svm"})
    else:
        has_flag = True  # other architectures have no such flag; /dev/kvm decides
    module = {"intel": "kvm_intel", "amd": "kvm_amd"}.get(cpu.vendor or "", "kvm")
    wanted = flag or "vmx or svm"
    if has_flag and not kvm.ok and kvm.missing and not facts.host.is_dir("/dev"):
        said = (f"the CPU advertises {wanted}" if facts.is_x86 or cpu.vendor else
                f"{facts.arch or 'this architecture'} has no CPU flag for it: /dev/kvm decides")
        yield Finding.skip(f"cannot tell whether /dev/kvm exists: this capture has no /dev at all ({said})",
                           evidence=evidence)
        return
    if not has_flag:
        message = f"the CPU does not advertise {wanted}: hardware virtualization is off in the firmware or absent"
        fix = [firmware_step("vt-x", cpu.vendor)]
        if cpu.is_virtual_machine:
            message += "; this host is itself a virtual machine, so its hypervisor must expose nested virtualization"
            fix = [Step(summary="Enable nested virtualization for this VM on its hypervisor "
                                "(e.g. QEMU -cpu host with kvm_intel nested=1 / kvm_amd nested=1 on the host)",
                        phase="firmware", manual=True, requires_reboot=True, persistent=True,
                        action={"kind": "firmware", "feature": "nested-virtualization"})]
        # Without the flag kvm_intel/kvm_amd refuse to load ("Operation not supported"): loading comes
        # after the firmware change and its reboot, so it is a manual follow-up, never a script command
        # that would fail and stop the remediation script (seen on a real 6.1 kernel without VT-x).
        after = replace(_modprobe(module), manual=True,
                        summary=f"After that reboot, load the {module} module if udev has not (it creates /dev/kvm); "
                                f"it cannot load while the CPU lacks {wanted}")
        yield Finding.fail(message, observed=f"no {wanted} flag" + ("" if kvm.ok else ", no /dev/kvm"),
                           expected=f"{wanted} in /proc/cpuinfo flags and /dev/kvm present",
                           evidence=evidence, remediation=fix + [after])
        return
    if not (facts.is_x86 or cpu.vendor):  # no CPU flag to name (ARM, POWER...): /dev/kvm alone decides
        arch = facts.arch or "this architecture"
        hyp = facts.hyp_unavailable() if facts.is_arm64 else None
        if not kvm.ok and hyp:
            evidence.append(Evidence("kernel log", hyp))
            yield Finding.fail(f"/dev/kvm does not exist ({kvm.reason}): the kernel was not started at EL2 (\"{hyp}\"), "
                               "so KVM cannot run; the firmware or boot loader entered it at EL1, or this host is a "
                               "VM without nested virtualization", observed="/dev/kvm absent; no EL2",
                               expected="/dev/kvm present", evidence=evidence,
                               remediation=[Step(summary="Boot the kernel at EL2 (bare-metal UEFI firmware does; in a "
                                                         "VM, enable nested virtualization: QEMU -machine "
                                                         "virt,virtualization=on), then reboot",
                                                 phase="firmware", manual=True, requires_reboot=True, persistent=True,
                                                 action={"kind": "firmware", "feature": "el2"})])
            return
        if not kvm.ok and not kvm.missing:
            yield _kvm_unreadable(kvm, f"{arch} has no CPU flag for it: /dev/kvm decides", evidence)
            return
        if not kvm.ok:
            yield Finding.fail(f"/dev/kvm does not exist ({kvm.reason}): KVM is not loaded, or the firmware did not "
                               f"start the kernel with virtualization available ({arch})",
                               observed="/dev/kvm absent", expected="/dev/kvm present",
                               evidence=evidence, remediation=[_modprobe(module)])
            return
        yield Finding.passed(f"/dev/kvm exists (no CPU flag to check on {arch})",
                             observed="/dev/kvm present", expected="/dev/kvm present", evidence=evidence)
        return
    if not kvm.ok and not kvm.missing:
        yield _kvm_unreadable(kvm, f"the CPU advertises {wanted}", evidence)
        return
    if not kvm.ok:
        yield Finding.fail(f"{wanted} is present but /dev/kvm does not exist ({kvm.reason}): the {module} module is not loaded",
                           observed="/dev/kvm absent", expected="/dev/kvm present",
                           evidence=evidence, remediation=[_modprobe(module)])
        return
    yield Finding.passed(f"the CPU advertises {wanted} and /dev/kvm exists",
                         observed=f"{wanted} present, /dev/kvm present", expected="both present", evidence=evidence)


def _kvm_unreadable(kvm, said: str, evidence) -> Finding:
    """/dev/kvm neither there nor missing (/dev unreadable, a link loop): whether KVM is loaded is unknown."""
    return Finding.skip(f"cannot tell whether /dev/kvm exists ({kvm.reason}; {said})", evidence=evidence)


def _modprobe(module: str) -> Step:
    return Step(summary=f"Load the {module} module (it creates /dev/kvm)", phase="modules",
                commands=[f"modprobe {module}"], action={"kind": "modprobe", "modules": [module]})
