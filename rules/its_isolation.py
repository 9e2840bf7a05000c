"""VFIO-006 on arm64: device MSIs are isolated by the GICv3 ITS.

Used by :mod:`rules.interrupt_remapping` on aarch64 hosts. ARM has no interrupt remapping in the
IOMMU and no ``IR-`` chips: a GICv3/v4 ITS translates each MSI by the writing device's ID, so a
device cannot raise another's interrupts. The kernel marks the ITS's MSI domain as isolating,
and vfio_iommu_type1 attaches groups with ``allow_unsafe_interrupts=N``. A GICv2m MSI frame does
not isolate: with only that, vfio_iommu_type1 refuses ("No interrupt remapping support").

How: /proc/interrupts chips named ``ITS-...`` (``ITS-MSI`` on 6.1, per-device ``ITS-PCI-MSIX-...``
domains on newer kernels) against MSI lines on any other chip; the kernel log's ``PCI/MSI:
ITS@... domain created`` when no MSI is in use yet.

Fix: nothing on the command line turns an ITS on. Firmware must describe it (ACPI MADT, the
device tree's ``msi-parent``/``msi-map``); a VM's hypervisor must give the guest a GICv3 with
an ITS (QEMU ``-machine virt,gic-version=3``, its ITS is on by default). As a last resort, and
knowingly unsafe, ``options vfio_iommu_type1 allow_unsafe_interrupts=1``.
"""

from scanner.engine.model import Evidence, Finding, Step

EXPECTED = "device MSIs through the GICv3 ITS (ITS- chips)"


def judge(facts, unsafe_and_param, last_resort: Step) -> Finding:
    unsafe, param = unsafe_and_param
    msi = facts.msi_isolation
    evidence = []
    if msi is None:
        evidence.append(Evidence("/proc/interrupts", f"<{facts.interrupts_read.reason}>"))
    else:
        sample = msi.its_lines[0] if msi.its_lines else "no ITS- chips"
        evidence.append(Evidence("/proc/interrupts", f"{len(msi.its_lines)} MSI line(s) on the ITS; {sample}"))
        if msi.other_msi:
            evidence.append(Evidence("/proc/interrupts", f"{len(msi.other_msi)} on another chip; {msi.other_msi[0]}"))
        if msi.its_log:
            evidence.append(Evidence("kernel log", msi.its_log))
    if param.ok:
        evidence.append(Evidence(param.path, param.text.strip()))
    its = msi is not None and (bool(msi.its_lines) or (not msi.other_msi and bool(msi.its_log)))
    if its and msi.other_msi:
        return Finding.warn(f"MSIs go through the GICv3 ITS, but {len(msi.other_msi)} line(s) use another MSI chip "
                            "(a GICv2m frame does not isolate devices): a device behind it cannot be given to a VM "
                            "without the unsafe override", observed=f"{len(msi.its_lines)} ITS, {len(msi.other_msi)} other",
                            expected=EXPECTED, evidence=evidence, severity="medium")
    if its:
        if unsafe:
            return Finding.warn("MSIs are isolated by the GICv3 ITS, yet allow_unsafe_interrupts is set: a needless "
                                "security downgrade", observed="ITS, allow_unsafe_interrupts=Y",
                                expected="allow_unsafe_interrupts=N", evidence=evidence, severity="medium",
                                remediation=[Step(summary="Remove the allow_unsafe_interrupts override (module option "
                                                          "or command line)", phase="modules", manual=True,
                                                  requires_reboot=True, action={"kind": "see-rule", "rules": ["VFIO-004"]})])
        how = (f"{len(msi.its_lines)} MSI line(s) on ITS chips" if msi.its_lines else "the kernel created the ITS MSI "
               "domain (no MSI in use yet)")
        return Finding.passed(f"MSIs are isolated per device by the GICv3 ITS ({how}); ARM has no IR- chips and needs "
                              "none", observed="ITS MSI domain", expected=EXPECTED, evidence=evidence)
    if msi is None and not facts.kernel_log.available:
        return Finding.skip(f"cannot tell: {facts.interrupts_read.describe()}, and no kernel log "
                            f"({facts.kernel_log.reason})", evidence=evidence)
    if msi is not None and not msi.other_msi and not facts.kernel_log.available:
        return Finding.skip("cannot tell: /proc/interrupts shows no MSI yet and there is no kernel log", evidence=evidence)
    what = (f"{len(msi.other_msi)} MSI line(s), none on an ITS chip" if msi is not None and msi.other_msi
            else "no ITS MSI domain in /proc/interrupts or the kernel log")
    message = f"MSIs are not isolated by a GICv3 ITS: {what}; vfio_iommu_type1 refuses to attach IOMMU groups"
    if unsafe:
        return Finding.warn(message + ", except through the explicit, unsafe allow_unsafe_interrupts override",
                            observed=what, expected=EXPECTED, evidence=evidence)
    fix = Step(summary="Give the host's PCI MSIs a GICv3 ITS: describe it in the firmware (ACPI MADT / device tree "
                       "msi-map), or in a VM use a GICv3 with an ITS (QEMU -machine virt,gic-version=3)",
               phase="firmware", manual=True, requires_reboot=True, persistent=True,
               action={"kind": "firmware", "feature": "gic-its"})
    return Finding.warn(message, observed=what, expected=EXPECTED, evidence=evidence, remediation=[fix, last_resort])
