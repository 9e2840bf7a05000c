"""VFIO-003 kernel-config: the running kernel was built with the IOMMU and VFIO drivers.

What: ``CONFIG_IOMMU_SUPPORT``, the vendor's IOMMU driver (``CONFIG_INTEL_IOMMU`` on Intel,
``CONFIG_AMD_IOMMU`` on AMD), ``CONFIG_VFIO``, ``CONFIG_VFIO_PCI`` and
``CONFIG_VFIO_IOMMU_TYPE1`` must each be ``y`` (built in) or ``m`` (module). On arm64 the IOMMU
driver is an SMMU's (``CONFIG_ARM_SMMU_V3``, or ``CONFIG_ARM_SMMU`` for v1/v2) and MSIs need the
GICv3 ITS driver (``CONFIG_ARM_GIC_V3_ITS``). The finding also says whether the kernel offers
iommufd (``CONFIG_IOMMUFD``, ``/dev/iommu``) or only the legacy VFIO container, which is what
QEMU then uses (Debian 12 and 13 build their kernels without iommufd).

Why: no command line or module load can add a driver the kernel was built without; this is the
root cause behind "IOMMU capability not compiled into kernel".

How: the configuration of the running release, from the first of ``/boot/config-<release>``,
``/proc/config.gz``, ``/lib/modules/<release>/config`` and ``/lib/modules/<release>/build/.config``.
When none is readable the rule is skipped and names the places it searched. The running kernel
outranks a file: an option the file lacks counts as present when its module is loaded or built
in, or the vendor's IOMMU driver evidently runs (its units in ``/sys/class/iommu``) -- the file
is then not this kernel's build, and the finding says so instead of asking for another kernel.

Fix: boot a kernel that has them (every major distribution's generic kernel does), or rebuild
with the missing options set to ``y`` or ``m``.
"""

from scanner import hookimpl
from scanner.engine.model import Evidence, Finding, Rule, Step

COMMON = ("IOMMU_SUPPORT",)
VFIO = ("VFIO", "VFIO_PCI", "VFIO_IOMMU_TYPE1")
ALTERNATIVES = {"VFIO_IOMMU_TYPE1": ("IOMMUFD_VFIO_CONTAINER",)}  # iommufd can stand in for type1
#: arm64: an SMMU driver (v3 on servers, v1/v2 on older SoCs) and the GICv3 ITS that isolates MSIs.
ARM64 = (("ARM_SMMU_V3", "ARM_SMMU"), ("ARM_GIC_V3_ITS",))


@hookimpl
def vfio_scan_register_rules(register):
    register(Rule(id="VFIO-003", name="kernel-config", scope="host", severity="high",
                  title="Kernel built with IOMMU and VFIO support", check=check, docs=__doc__))


def required_options(facts):
    vendor = facts.cpu.vendor if facts.cpu else None
    if facts.is_arm64:
        vendor_opts = list(ARM64)
    elif facts.is_x86 or vendor:
        vendor_opts = {"intel": [("INTEL_IOMMU",)], "amd": [("AMD_IOMMU",)]}.get(vendor, [("INTEL_IOMMU", "AMD_IOMMU")])
    else:
        vendor_opts = []
    return [(o,) for o in COMMON] + vendor_opts + [(o,) + ALTERNATIVES.get(o, ()) for o in VFIO]


def check(facts, scan):
    kc = facts.kconfig
    if not kc.found:
        yield Finding.skip("no kernel configuration found; searched: " + "; ".join(kc.searched),
                           evidence=[Evidence("kernel config", s) for s in kc.searched])
        return
    shown, missing, proven = [], [], []
    for choices in required_options(facts):
        values = {o: kc.get(o) for o in choices}
        ok = [o for o, v in values.items() if v in ("y", "m")]
        running = _running_proof(facts, choices)
        if ok:
            shown.append(f"CONFIG_{ok[0]}={values[ok[0]]}")
        elif running:
            shown.append(f"CONFIG_{choices[0]}={values[choices[0]] or 'absent'}, yet {running}")
            proven.append(f"CONFIG_{choices[0]}")
        else:
            missing.append(" or ".join(f"CONFIG_{o}" for o in choices))
            shown.append(", ".join(f"CONFIG_{o}={v or 'absent'}" for o, v in values.items()))
    evidence = [Evidence(kc.source, "; ".join(shown))]
    if missing:
        yield Finding.fail(f"the running kernel lacks {', '.join(missing)}",
                           observed="; ".join(shown), expected="each option y or m", evidence=evidence,
                           remediation=[Step(summary="Boot a kernel built with " + ", ".join(missing) +
                                             " set to y or m (a distribution's generic kernel has them)",
                                             phase="kernel", manual=True, requires_reboot=True, persistent=True,
                                             action={"kind": "kernel-build", "options": missing})])
        return
    message = "the kernel has " + ", ".join(shown)
    iommufd = _iommufd(facts, kc)
    if iommufd:
        message += f"; {iommufd}"
        evidence.append(Evidence("/dev/iommu", "present" if not facts.node("/dev/iommu").missing else "<missing>"))
    if proven:
        message += (f"; {kc.source} does not match the running kernel ({', '.join(proven)} missing there): it is "
                    "not this kernel's build, so its other options are not evidence either")
    yield Finding.passed(message, observed="; ".join(shown), expected="each option y or m", evidence=evidence)


#: The module that proves a VFIO option in the running kernel.
MODULE_OF = {"VFIO": "vfio", "VFIO_PCI": "vfio_pci", "VFIO_IOMMU_TYPE1": "vfio_iommu_type1"}
#: /sys/class/iommu unit names of each vendor's driver.
UNITS_OF = {"INTEL_IOMMU": "dmar", "AMD_IOMMU": "ivhd", "ARM_SMMU_V3": "smmu3.", "ARM_SMMU": "smmu."}


def _iommufd(facts, kc) -> str:
    """What the kernel offers besides the legacy VFIO container, said plainly: the iommufd path (/dev/iommu,
    VFIO device cdevs) exists only with CONFIG_IOMMUFD, which some distributions' kernels (Debian 12 and 13)
    leave unset."""
    value = kc.get("IOMMUFD")
    present = not facts.node("/dev/iommu").missing
    if value not in ("y", "m"):
        return ("no iommufd: CONFIG_IOMMUFD is not set, so there is no /dev/iommu and QEMU uses the legacy VFIO "
                "container (/dev/vfio/vfio, vfio_iommu_type1)")
    if not present:
        return (f"CONFIG_IOMMUFD={value}, but /dev/iommu does not exist (iommufd not loaded): QEMU uses the legacy "
                "VFIO container")
    return f"iommufd is available (CONFIG_IOMMUFD={value}, /dev/iommu)"


def _running_proof(facts, choices) -> str:
    """What shows the running kernel has one of ``choices`` whatever its config file says, or ''."""
    for option in choices:
        module = MODULE_OF.get(option)
        if module and facts.modules.state(module) in ("loaded", "builtin"):
            return f"{module} is {facts.modules.state(module)}"
        if option == "ARM_GIC_V3_ITS" and facts.msi_isolation is not None and facts.msi_isolation.its_lines:
            return "its MSIs run on ITS chips"
        prefix = UNITS_OF.get(option)
        if prefix and any(u.startswith(prefix) for u in facts.iommu.units):
            return f"its IOMMU units run ({', '.join(u for u in facts.iommu.units if u.startswith(prefix))})"
    return ""
