"""VFIO-015 boot-vga: the device is not the firmware boot display.

What: ``boot_vga`` is 1 on the VGA controller the firmware initialised and showed its screens on.
It passes when ``boot_vga`` is 0, and for devices that have no ``boot_vga`` file (the kernel
shows it only on VGA-class devices: a NIC, an NVMe drive or a 3D controller is never the boot
display).

Why: the host keeps using the boot GPU: its console and the firmware framebuffer (``efifb``,
``vesafb``, and on kernels 5.15 and later ``simpledrm`` / ``simple-framebuffer`` registered by
``sysfb``) sit in the GPU's memory BAR. vfio-pci then logs ``BAR 1: can't reserve [mem ...]``,
QEMU may fail to map the BAR, and the guest gets no picture or a hang. It can be passed through,
but only once the host lets go of it.

How: ``/sys/bus/pci/devices/<addr>/boot_vga``; the kernel log for ``can't reserve`` lines of the
device and for the framebuffer that took it.

Fix: make another GPU (or the integrated graphics) the primary display in the firmware setup;
else keep the host's framebuffer off the card with ``video=efifb:off`` on the kernel command line,
plus ``initcall_blacklist=sysfb_init`` on kernels 5.15 and later, where ``video=efifb:off`` no
longer stops simpledrm. With OVMF (UEFI) guests ``vfio-pci.disable_vga=1`` also takes the card out
of VGA arbitration.
"""

import re

from scanner import hookimpl
from scanner.base.lazyre import lazy_compile
from scanner.engine.model import Evidence, Finding, Rule, Step

FRAMEBUFFER = lazy_compile(r"(efifb: (probing|framebuffer at)|simple-framebuffer|simpledrm|vesafb: (mode|framebuffer))")
SYSFB_SINCE = (5, 15)


@hookimpl
def vfio_scan_register_rules(register):
    register(Rule(id="VFIO-015", name="boot-vga", scope="device", severity="medium",
                  title="Device is not the firmware boot display", check=check, docs=__doc__))


def kernel_version(release):
    """``6.1.0-56-amd64`` -> (6, 1); None when unknown."""
    m = re.match(r"^(\d+)\.(\d+)", release or "")
    return (int(m.group(1)), int(m.group(2))) if m else None


def wanted_params(facts):
    """Command-line options that keep the host's framebuffer off the boot GPU on the running kernel:
    ``video=efifb:off``, plus ``initcall_blacklist=sysfb_init`` on 5.15+ (or an unknown release).
    Returns (all of them, those already on /proc/cmdline, those missing, kernel version)."""
    version = kernel_version(facts.release)
    params = ["video=efifb:off"]
    if version is None or version >= SYSFB_SINCE:
        params.append("initcall_blacklist=sysfb_init")
    cl = facts.cmdline
    active = [p for p in params if cl is not None and p.partition("=")[2] in cl.options(p.partition("=")[0])]
    missing = [p for p in params if p not in active]
    return params, active, missing, version


def _explain(params):
    parts = []
    if "video=efifb:off" in params:
        parts.append("video=efifb:off stops the EFI framebuffer from claiming it")
    if "initcall_blacklist=sysfb_init" in params:
        parts.append("initcall_blacklist=sysfb_init stops sysfb, which on kernels 5.15 and later registers "
                     "simpledrm / simple-framebuffer on it whatever video= says")
    return "; ".join(parts)


def _short(params, version):
    parts = []
    if "video=efifb:off" in params:
        parts.append("video=efifb:off keeps the EFI framebuffer off it")
    if "initcall_blacklist=sysfb_init" in params:
        which = "this 5.15+ kernel ignores" if version else "5.15+ kernels ignore"
        parts.append(f"initcall_blacklist=sysfb_init keeps simpledrm off it ({which} video= for that)")
    return " and ".join(parts)


def check(facts, scan):
    from scanner.remediation.remedies import cmdline_steps
    from scanner.facts.pci import describe

    for target in scan.targets:
        device = facts.pci[target.address]
        path = f"/sys/bus/pci/devices/{target.address}/boot_vga"
        unreadable = device.unreadable("boot_vga")
        if unreadable:
            yield Finding.skip(f"cannot read boot_vga ({'; '.join(unreadable)})", subject=target.address)
            continue
        if device.boot_vga is None:
            yield Finding.passed(f"not a VGA display controller (no boot_vga file): {describe(device)} cannot be "
                                 "the firmware boot display", subject=target.address, observed="no boot_vga file",
                                 expected="boot_vga != 1")
            continue
        if not device.boot_vga:
            yield Finding.passed("not the firmware boot display (boot_vga=0)", subject=target.address,
                                 observed="boot_vga 0", expected="boot_vga != 1", evidence=[Evidence(path, "0")])
            continue

        params, active, missing, version = wanted_params(facts)
        evidence = [Evidence(path, "1")]
        cant_reserve = facts.kernel_log.about(target.address, "can't reserve")
        evidence += [Evidence("kernel log", line) for line in cant_reserve[:3]]
        evidence += [Evidence("kernel log", line) for line in facts.kernel_log.with_match(FRAMEBUFFER)[:2]]
        message = ("the firmware boot display (boot_vga=1): the host console and framebuffer (efifb, vesafb or "
                   "simpledrm) hold part of its memory, so vfio-pci may fail to claim its BARs (\"can't reserve\") "
                   "and the guest may show no picture")
        if cant_reserve:
            message += "; the kernel log shows it"
        others = [a for a in facts.pci_index.displays if a != target.address]  # class 03, indexed once
        if active and not missing:
            message += f"; {' '.join(active)} already active on the command line, only the firmware choice is left"
        else:
            message += "; " + _short(params, version)
        if not others:
            message += "; it is the only display controller: the host runs headless (ssh, serial) once it is passed"
        firmware = Step(
            summary=("Make another GPU the primary display in the firmware setup (\"Primary Display\" / "
                     "\"Initiate Graphic Adapter\": IGD or another slot), or move this card to a slot the firmware "
                     "does not boot from" if others else
                     "Add another GPU or enable the integrated graphics in the firmware and make it the primary "
                     "display, or run the host headless"),
            phase="firmware", manual=True, requires_reboot=True, persistent=True,
            action={"kind": "firmware", "feature": "primary-display", "address": target.address})
        steps = [firmware]
        if missing:
            steps += cmdline_steps(facts.boot, add=missing,
                                   why=_explain(missing) + "; with OVMF (UEFI) guests also consider "
                                       "vfio-pci.disable_vga=1, which takes the card out of VGA arbitration")
        yield Finding.warn(message, subject=target.address, observed="boot_vga 1", expected="boot_vga != 1",
                           evidence=evidence, remediation=steps)
