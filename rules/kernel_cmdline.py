"""VFIO-004 kernel-cmdline: the IOMMU is requested (or on by default) and nothing breaks it.

What: on Intel, ``intel_iommu=on`` unless the kernel turns VT-d on by itself
(``CONFIG_INTEL_IOMMU_DEFAULT_ON=y``, Debian's ``CONFIG_INTEL_IOMMU_DEFAULT_ON_INTGPU_OFF=y``, a
platform DMA-protection opt-in) or the IOMMU evidently runs; on AMD, AMD-Vi is on unless
``amd_iommu=off`` or ``iommu=off``. ``amd_iommu=on`` is *invalid* (the kernel answers
``AMD-Vi: Unknown option - 'on'`` and ignores it) and is reported for removal. Security
downgrades are warned: ``pcie_acs_override``, ``vfio_iommu_type1.allow_unsafe_interrupts=1``,
``vfio.enable_unsafe_noiommu_mode=1``. ``iommu=pt`` is suggested, never demanded.

Why: the kernel command line is where most guides send people, and where they most often go
wrong: flags that do nothing, flags that disable protection, edits that never reached the
boot loader.

How: ``/proc/cmdline`` parsed as the kernel does (quotes, comma lists such as
``intel_iommu=on,sm_on``, the last occurrence wins, ``-`` equals ``_``), the kernel config and
sysfs for default-on, the configured next-boot command line for reboot-pending detection.

Fix: the detected boot stack's own commands (GRUB + update-grub/grub2-mkconfig, grubby,
/etc/kernel/cmdline + proxmox-boot-tool or kernel-install, kernelstub, rpm-ostree, NixOS),
then a reboot.
"""

import re
from dataclasses import replace
from typing import Optional

from scanner import hookimpl
from scanner.facts.cmdline import truthy
from scanner.engine.model import Evidence, Finding, Rule, Step, fold
from scanner.remediation.remedies import cmdline_steps

INTEL_VALID = {"on", "off", "igfx_off", "sm_on", "sm_off", "tboot_noforce", "forcedac", "strict"}
AMD_VALID = {"off", "force_enable", "force_isolation", "pgtbl_v1", "pgtbl_v2", "irtcachedis",
             "nohugepages", "pgsize_4k", "v2_pgsizes_only", "fullflush"}
DOWNGRADES = (
    ("vfio_iommu_type1.allow_unsafe_interrupts", "lets VFIO run without interrupt remapping, so a guest can forge MSIs"),
    ("iommufd.allow_unsafe_interrupts", "lets iommufd run without interrupt remapping, so a guest can forge MSIs"),
    ("vfio.enable_unsafe_noiommu_mode", "gives devices to user space with no DMA protection at all"),
)


@hookimpl
def vfio_scan_register_rules(register):
    register(Rule(id="VFIO-004", name="kernel-cmdline", scope="host", severity="high",
                  title="IOMMU requested on the kernel command line", check=check, docs=__doc__))


#: ``iommu=`` values the kernel knows (the last one counts).
GENERIC_CHOICES = {"off", "pt", "nopt", "force", "noforce", "on"}


def iommu_switched_off(facts, cl) -> Optional[str]:
    """The switch on the command line ``cl`` that turns this x86 host's IOMMU off, as :func:`check` reads
    it, or None: ``intel_iommu=off`` (Intel: the last of on/off), ``amd_iommu=off`` (AMD: anywhere), else
    ``iommu=off``, which wins over ``intel_iommu=on``. VFIO-016 asks it of the next boot's line too."""
    if not facts.is_x86:
        return None
    vendor = facts.cpu.vendor if facts.cpu else None
    if vendor == "amd":
        # flags, not a choice: the kernel sets amd_iommu_disabled for an "off" anywhere, and a later
        # force_enable does not clear it (seen on Debian's 6.1: AMD-Vi off, no groups)
        if "off" in cl.options("amd_iommu"):
            return "amd_iommu=off"
    elif cl.last_of("intel_iommu", {"on", "off"}) == "off":
        return "intel_iommu=off"
    return "iommu=off" if cl.last_of("iommu", GENERIC_CHOICES) == "off" else None


def intel_default_on(facts):
    """Why VT-d is on without ``intel_iommu=on``, or None."""
    kc = facts.kconfig
    if kc.get("INTEL_IOMMU_DEFAULT_ON") == "y":
        return "the kernel enables VT-d by default (CONFIG_INTEL_IOMMU_DEFAULT_ON=y)"
    if kc.get("INTEL_IOMMU_DEFAULT_ON_INTGPU_OFF") == "y":
        return "the kernel enables VT-d by default (CONFIG_INTEL_IOMMU_DEFAULT_ON_INTGPU_OFF=y)"
    if facts.kernel_log.first(r"Intel-IOMMU force enabled due to platform opt in"):
        return "the firmware forces VT-d on (DMA-protection opt-in, per the kernel log)"
    if facts.iommu.active and facts.iommu.units:
        return f"the IOMMU evidently runs ({len(facts.iommu.real_groups)} IOMMU groups)"
    return None


def _driver_not_built(facts, vendor) -> Optional[str]:
    """``CONFIG_AMD_IOMMU`` (or ``CONFIG_INTEL_IOMMU``) when the running kernel's configuration lacks this
    vendor's IOMMU driver, and nothing shows it running anyway; else None."""
    kc = facts.kconfig
    if not (facts.is_x86 and kc.found and vendor in ("intel", "amd")) or facts.iommu.active:
        return None
    option = "AMD_IOMMU" if vendor == "amd" else "INTEL_IOMMU"
    return None if kc.get(option) in ("y", "m") else f"CONFIG_{option}"


def arm64_switches(facts, cl, parts, remove):
    """arm64: the SMMU needs no switch (the firmware enables it); judge the generic and SMMU knobs."""
    passthrough = cl.last_of("iommu.passthrough", {"0", "1", "y", "n", "on", "off"})
    if passthrough in ("1", "y", "on"):
        nvidia = [a for a, d in facts.pci.fields.items() if d.vendor == "10de"]
        if nvidia:
            parts.append(Finding.warn(f"iommu.passthrough={passthrough}: NVIDIA's guidance for Grace systems is "
                                      f"iommu.passthrough=0, and this host has NVIDIA devices ({', '.join(nvidia[:3])})",
                                      observed=" ".join(cl.texts("iommu.passthrough")), expected="iommu.passthrough=0",
                                      severity="medium"))
            remove.extend(cl.texts("iommu.passthrough"))
        else:
            parts.append(Finding.passed(f"iommu.passthrough={passthrough}: host devices bypass translation (as iommu=pt "
                                        "on x86); VFIO still translates for the VMs' devices",
                                        observed=" ".join(cl.texts("iommu.passthrough"))))
    else:
        parts.append(Finding.passed("the SMMU needs no command-line switch on arm64 (the firmware enables it)",
                                    observed=" ".join(cl.texts("iommu.passthrough")) or "iommu.passthrough not set"))
    strict = cl.last_of("iommu.strict", {"0", "1", "y", "n", "on", "off"})
    if strict in ("0", "n", "off"):
        parts.append(Finding.passed(f"iommu.strict={strict}: the host's own DMA unmaps are flushed lazily (faster; a "
                                    "short window where a freed address stays reachable); VFIO's mappings for VMs "
                                    "are not affected", observed=" ".join(cl.texts("iommu.strict"))))
    bypass = cl.value("arm-smmu-v3.disable_bypass") or cl.value("arm_smmu_v3.disable_bypass")
    param = facts.module_param("arm_smmu_v3", "disable_bypass")
    if (bypass is not None and not truthy(bypass)) or (param.ok and param.text.strip() in ("N", "n", "0")):
        tokens = cl.texts("arm-smmu-v3.disable_bypass") + cl.texts("arm_smmu_v3.disable_bypass")
        parts.append(Finding.warn("arm-smmu-v3.disable_bypass is off: a device no driver has attached to a domain "
                                  "bypasses the SMMU, so its DMA reaches all memory",
                                  observed=" ".join(tokens) or f"{param.path} = {param.text.strip()}",
                                  expected="disable_bypass=Y (the default)", severity="medium",
                                  evidence=[Evidence(param.path, param.text.strip())] if param.ok else []))
        remove.extend(tokens)


def check(facts, scan):
    if not facts.cmdline_read.ok:
        yield Finding.skip(f"cannot read the kernel command line ({facts.cmdline_read.describe()})")
        return
    cl = facts.cmdline
    vendor = facts.cpu.vendor if facts.cpu else None
    parts, add, remove = [], [], []
    generic = cl.last_of("iommu", GENERIC_CHOICES)
    switched_off = iommu_switched_off(facts, cl)

    def disabled_by(token_texts, what):
        parts.append(Finding.fail(f"{what} on the kernel command line disables the IOMMU",
                                  observed=" ".join(token_texts), expected="no switch that disables the IOMMU"))
        remove.extend(token_texts)

    lacking = _driver_not_built(facts, vendor)
    if lacking:
        yield Finding.skip(f"follows from VFIO-003: this kernel is built without {lacking}, so no command-line switch "
                           "can turn the IOMMU on", evidence=[Evidence(cl.source, cl.raw),
                                                               Evidence(facts.kconfig.source, f"{lacking} not set")],
                           remediation=[Step(summary="Boot a kernel built with the IOMMU driver (see VFIO-003)",
                                             phase="kernel", manual=True, requires_reboot=True,
                                             action={"kind": "see-rule", "rules": ["VFIO-003"]})])
        return
    if facts.is_x86 and vendor != "amd":
        state = cl.last_of("intel_iommu", {"on", "off"})
        if switched_off == "intel_iommu=off":
            disabled_by(cl.texts("intel_iommu"), switched_off)
            add.append("intel_iommu=on")
        elif switched_off:
            disabled_by(cl.texts("iommu"), switched_off)
        elif state == "on":
            parts.append(Finding.passed("intel_iommu=on requests Intel VT-d", observed=" ".join(cl.texts("intel_iommu"))))
        else:
            why = intel_default_on(facts)
            if why:
                parts.append(Finding.passed(f"intel_iommu is not set, and {why}", observed="intel_iommu not set"))
            else:
                parts.append(Finding.fail("Intel VT-d is not requested: this kernel does not turn it on by itself",
                                          observed="intel_iommu not set, no default-on kernel option",
                                          expected="intel_iommu=on"))
                add.append("intel_iommu=on")
        for opt in cl.options("intel_iommu"):
            if opt not in INTEL_VALID:
                logged = facts.kernel_log.first(rf"DMAR: Unknown option - '{re.escape(opt)}'")
                said = f"the kernel logs \"{logged}\" and ignores it" if logged else "the kernel ignores it"
                parts.append(Finding.warn(f"intel_iommu={opt} is not a valid sub-option ({said})",
                                          observed=f"intel_iommu={opt}",
                                          evidence=[Evidence("kernel log", logged)] if logged else []))
    elif facts.is_x86:
        if switched_off:
            disabled_by(cl.texts(switched_off.partition("=")[0]), switched_off)
        else:
            parts.append(Finding.passed("AMD-Vi is on by default and nothing disables it",
                                        observed=" ".join(cl.texts("amd_iommu")) or "amd_iommu not set"))
        invalid = [o for o in cl.options("amd_iommu") if o not in AMD_VALID]
        for opt in invalid:
            # the option is the host's text: a pattern made of it must be escaped ("(" was an error)
            logged = facts.kernel_log.first(rf"AMD-Vi: Unknown option - '{re.escape(opt)}'")
            said = f"the kernel answers \"{logged}\" and ignores it" if logged else "the kernel ignores it"
            parts.append(Finding.warn(
                f"amd_iommu={opt} is not a valid option: {said} (AMD-Vi needs no switch to be on)", observed=f"amd_iommu={opt}",
                expected=f"no amd_iommu={opt}",
                evidence=[Evidence("kernel log", logged)] if logged else []))
        if invalid:
            for p in cl.all("amd_iommu"):
                items = [v for v in (p.value or "").split(",") if v]
                if any(v in invalid for v in items):
                    remove.append(p.text)
    elif facts.is_arm64:
        arm64_switches(facts, cl, parts, remove)
    else:
        parts.append(Finding.passed(f"no x86 IOMMU switch applies on {facts.arch or 'this architecture'}"))

    for key, why in DOWNGRADES:
        if truthy(cl.value(key)):
            parts.append(Finding.warn(f"{key}=1 is a security downgrade: it {why}", observed=" ".join(cl.texts(key)),
                                      expected=f"no {key}", severity="medium"))
    if cl.has("pcie_acs_override"):
        parts.append(Finding.warn("pcie_acs_override is a security downgrade: it splits IOMMU groups the hardware "
                                  "cannot isolate, so devices may reach each other's memory by peer-to-peer DMA",
                                  observed=" ".join(cl.texts("pcie_acs_override")), expected="no pcie_acs_override",
                                  severity="medium"))

    finding = fold(parts)
    if finding.status == "pass" and facts.is_x86 and generic != "pt" and not truthy(cl.value("iommu.passthrough")) \
            and facts.kconfig.get("IOMMU_DEFAULT_PASSTHROUGH") != "y":
        finding = replace(finding, message=finding.message + "; iommu=pt is not set (optional: it spares host "
                                                             "devices the translation cost)")
    remediation = cmdline_steps(facts.boot, add=list(dict.fromkeys(add)), remove=list(dict.fromkeys(remove))) if (add or remove) else []
    yield replace(finding, evidence=(Evidence(cl.source, cl.raw),) + finding.evidence, remediation=remediation,
                  expected=finding.expected or "IOMMU on; no disabling or unsafe parameters")
