"""VFIO-020 boot-framebuffer: no boot framebuffer lies inside the device's memory BARs.

What: ``/proc/iomem`` shows no firmware framebuffer (``efifb``, ``vesafb``, ``simpledrm``,
``simplefb``, ``BOOTFB``, ``simple-framebuffer``, ``efi-framebuffer``) in the address range of one
of the device's memory BARs (``/sys/bus/pci/devices/<addr>/resource``).

Why: the firmware's framebuffer is the GPU's own memory, seen through its BAR. While the host's
framebuffer driver (or the ``BOOTFB`` placeholder sysfb registers for it) holds that range,
vfio-pci cannot claim the BAR (``vfio-pci 0000:01:00.0: BAR 1: can't reserve [mem ...]`` in the
kernel log), QEMU's mmap of the BAR fails, and the VM does not start or the guest driver finds its
memory in use. The device is bound to vfio-pci and the group is viable: everything else says READY.

How: every ``/proc/iomem`` range named after a boot framebuffer, against the device's BARs 0-5 that
have an address; the kernel log's ``can't reserve`` lines of the device are added as evidence.
From 6.0 on, vfio-pci removes the firmware framebuffers from a VGA device's BARs when it takes the
device (seen on 6.1 under QEMU: ``efifb`` leaves ``/proc/iomem`` as the card binds to vfio-pci), so
a VGA device not yet on vfio-pci passes there, with a note that the host's console on it stops.
Only root sees addresses in ``/proc/iomem`` (others read ``00000000-00000000``): the rule then
passes when no framebuffer is registered at all, and otherwise skips, saying to scan as root,
never a guessed fail.

Fix: keep the framebuffer off the card at boot: ``video=efifb:off`` for ``efifb``,
``video=vesafb:off`` for ``vesafb``, ``initcall_blacklist=sysfb_init`` for the framebuffers sysfb
registers (``simpledrm``, ``simplefb``, ``BOOTFB``, ``simple-framebuffer``: kernels from 5.15 on,
where ``video=efifb:off`` no longer stops them), added to the kernel command line with the boot
stack's own tool, then reboot. Making another GPU the firmware's primary display removes the cause.
"""

from typing import List, Sequence, Tuple

from rules.boot_vga import kernel_version
from scanner import hookimpl
from scanner.facts.vm_start_hw import addresses_hidden
from scanner.base.lazyre import lazy_compile
from scanner.engine.model import Evidence, Finding, Rule, Step

#: The framebuffer a ``/proc/iomem`` name stands for, and the command-line option that keeps it off.
FRAMEBUFFERS = (
    (lazy_compile(r"^efifb\b|^efi-framebuffer"), "video=efifb:off"),
    (lazy_compile(r"^vesafb\b|^vesa-framebuffer"), "video=vesafb:off"),
    (lazy_compile(r"^(simpledrm|simplefb|BOOTFB|simple-framebuffer)\b"), "initcall_blacklist=sysfb_init"),
)

#: The release whose vfio-pci removes firmware framebuffers from a VGA device it takes ("vfio/pci: Remove
#: console drivers").
VFIO_REMOVES_FRAMEBUFFERS_SINCE = (6, 0)


@hookimpl
def vfio_scan_register_rules(register):
    register(Rule(id="VFIO-020", name="boot-framebuffer", scope="device", severity="high",
                  title="No boot framebuffer inside the device's BARs", check=check, docs=__doc__))


def framebuffer_option(name: str):
    """The command-line option that keeps the framebuffer ``name`` away; None when it is no framebuffer."""
    for pattern, option in FRAMEBUFFERS:
        if pattern.search(name):
            return option
    return None


def check(facts, scan):
    iomem = facts.iomem
    framebuffers = [r for r in iomem.rows if framebuffer_option(r.name)] if iomem.ok else []
    for target in scan.targets:
        yield _judge(facts, target.address, iomem, framebuffers)


def _judge(facts, address, iomem, framebuffers) -> Finding:
    if not iomem.ok:
        return Finding.skip(f"cannot read /proc/iomem ({iomem.reason})", subject=address)
    if not framebuffers:
        return Finding.passed("no boot framebuffer registered (none in /proc/iomem)", subject=address,
                              observed="no efifb, vesafb, simpledrm or BOOTFB range", expected="none inside a BAR")
    if addresses_hidden(iomem.rows):
        names = ", ".join(sorted({r.name for r in framebuffers}))
        return Finding.skip(f"/proc/iomem shows {names} but hides every address from this user (all 0): scan as root "
                            "to tell whether it lies inside this device's BARs", subject=address,
                            evidence=[Evidence("/proc/iomem", r.line) for r in framebuffers[:3]])
    bars = facts.bars(address)
    if not bars.ok:
        return Finding.skip(f"cannot read the device's BARs ({bars.describe()})", subject=address)
    clashes = _clashes(bars.rows, framebuffers)
    if not clashes:
        return Finding.passed(f"the boot framebuffer ({', '.join(sorted({r.name for r in framebuffers}))}) lies "
                              "outside this device's BARs", subject=address,
                              observed="no framebuffer inside a BAR", expected="none inside a BAR",
                              evidence=[Evidence("/proc/iomem", r.line) for r in framebuffers[:3]])
    if _vfio_pci_will_remove_it(facts, facts.pci[address]):
        return _removed_at_binding(facts, address, bars.source, clashes)
    return _fail(facts, address, bars.source, clashes)


def _vfio_pci_will_remove_it(facts, device) -> bool:
    """From 6.0 on, vfio-pci removes the firmware framebuffers in a VGA device's BARs when it takes the
    device (``aperture_remove_conflicting_pci_devices``; seen on 6.1: efifb leaves /proc/iomem at binding)."""
    from scanner.facts.pci import is_vfio_driver

    version = kernel_version(facts.release)
    return ((device.pci_class or "").startswith("0300") and not is_vfio_driver(device.driver)
            and version is not None and version >= VFIO_REMOVES_FRAMEBUFFERS_SINCE)


def _clashes(bars, framebuffers) -> List[Tuple[object, object]]:
    """(BAR, framebuffer range) pairs that overlap, BARs with an address only."""
    return [(bar, fb) for bar in bars if bar.is_standard_memory and bar.assigned
            for fb in framebuffers if fb.overlaps(bar.start, bar.end)]


def _where(clashes) -> str:
    return "; ".join(f"{fb.name} at {fb.start:x}-{fb.end:x} in BAR {bar.index} ({bar.start:x}-{bar.end:x})"
                     for bar, fb in clashes)


def _clash_evidence(source, clashes) -> List[Evidence]:
    evidence = [Evidence("/proc/iomem", fb.line) for _, fb in clashes]
    return evidence + [Evidence(source, f"BAR {bar.index}: {bar.line}")
                       for bar in {bar.index: bar for bar, _ in clashes}.values()]


def _removed_at_binding(facts, address, source, clashes) -> Finding:
    return Finding.passed(f"{_where(clashes)} now, but vfio-pci removes it when it takes this VGA device (kernels "
                          f"6.0 and later; this one is {facts.release}): the host's console on it stops then "
                          "(see VFIO-015)", subject=address, observed="framebuffer inside a BAR, device not on vfio-pci",
                          expected="none inside a BAR once on vfio-pci", evidence=_clash_evidence(source, clashes))


def _fail(facts, address, source, clashes) -> Finding:
    names = sorted({fb.name for _, fb in clashes})
    evidence = _clash_evidence(source, clashes)
    cant_reserve = facts.kernel_log.about(address, "can't reserve")
    evidence += [Evidence("kernel log", line) for line in cant_reserve[:3]]
    message = (f"a boot framebuffer holds part of its memory: {_where(clashes)}; vfio-pci cannot claim that BAR "
               "(\"can't reserve\") and QEMU's mmap of it fails at VM start")
    if cant_reserve:
        message += "; the kernel log shows it"
    return Finding.fail(message, subject=address, observed=f"{', '.join(names)} inside a BAR",
                        expected="no boot framebuffer inside a BAR", evidence=evidence,
                        remediation=_steps(facts, names))


def _steps(facts, names: Sequence[str]) -> List[Step]:
    from scanner.remediation.remedies import cmdline_steps

    wanted = sorted({framebuffer_option(n) for n in names})
    missing = [option for option in wanted if not _on_cmdline(facts.cmdline, option)]
    if not missing:
        return [_primary_display(f"{' '.join(wanted)} is already on the running command line, yet the framebuffer "
                                 "is there: make another GPU (or the integrated graphics) the primary display in the "
                                 "firmware setup")]
    return cmdline_steps(facts.boot, add=missing,
                         why=f"keeps {', '.join(names)} off the card at boot, so vfio-pci can claim its BARs") + [
        _primary_display("Or make another GPU (or the integrated graphics) the primary display in the firmware "
                         "setup, so the firmware's framebuffer is not on this card")]


def _primary_display(summary: str) -> Step:
    return Step(summary=summary, phase="firmware", manual=True, requires_reboot=True, persistent=True,
                action={"kind": "firmware", "feature": "primary-display"})


def _on_cmdline(cmdline, option: str) -> bool:
    key, _, value = option.partition("=")
    return cmdline is not None and value in cmdline.options(key)
