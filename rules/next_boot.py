"""VFIO-016 next-boot: the next boot brings the kernel command line this one runs with.

What: every parameter that matters for passthrough (``intel_iommu``, ``amd_iommu``, ``iommu``,
``iommu.passthrough``, ``vfio-pci.ids``, ``video``, ``initcall_blacklist``, ``pci``,
``pcie_acs_override`` and the ``allow_unsafe_interrupts`` switches) is on the running command line
exactly as the boot configuration will pass it at the next boot.

Why: ``intel_iommu=on`` typed at the GRUB prompt, or a command line edited without regenerating
the boot loader's configuration, works now and is gone at the next reboot: the host that was
READY comes up with no IOMMU groups and the VM does not start.

How: ``/proc/cmdline`` against the configuration the boot stack really uses: ``/etc/default/grub``
with its ``grub.d`` drop-ins (GRUB), the BLS entry of the running release (grubby, with
``$kernelopts`` from ``grubenv``), ``/etc/kernel/cmdline`` (systemd-boot, proxmox-boot-tool),
``/etc/kernelstub/configuration`` (Pop!_OS). A parameter that runs now but is not configured is
"works now, lost at next boot" (a fail); one that is configured but not yet running is a pending
change, reported in the message (a reboot brings it). A next boot whose line turns the IOMMU off
(read as VFIO-004 reads the running one: the last ``intel_iommu`` wins, ``iommu=off`` wins over
``intel_iommu=on``) or interrupt remapping (``intremap=off``), while this boot runs with them, is
a fail of its own: every parameter may still be there, followed by the switch that undoes it. ``intel_iommu=on`` on a kernel that turns
VT-d on by itself is not needed at the next boot. Where the boot configuration cannot be read or
the boot loader is unknown, the rule skips with the reason.

Not lost, whatever the next boot does with them: the security downgrades (``pcie_acs_override``,
the ``allow_unsafe_interrupts`` switches; their going is a hardening someone configured -- where the VM
works only through the override, VFIO-006 reports its going, with no command that puts it back) and
``vfio-pci.ids`` (whether each target stays on vfio-pci is VFIO-017's, by address: putting ids
back blindly would hand the host's own device of the same vendor:device to vfio-pci).

Fix: add the lost parameters to the boot configuration with the stack's own tool, as VFIO-004's
fix does (the remediation script merges them into the file that takes effect).
"""

from typing import List

from scanner import hookimpl
from scanner.engine.model import Evidence, Finding, Rule
from scanner.remediation.remedies import cmdline_steps

#: Parameters of the passthrough chain, as the kernel compares names (``-`` is ``_``).
RELEVANT = ("intel_iommu", "amd_iommu", "iommu", "iommu.passthrough", "iommu.strict", "vfio_pci.ids",
            "vfio_iommu_type1.allow_unsafe_interrupts", "iommufd.allow_unsafe_interrupts", "pcie_acs_override",
            "video", "initcall_blacklist", "pci")


@hookimpl
def vfio_scan_register_rules(register):
    register(Rule(id="VFIO-016", name="next-boot", scope="host", severity="high",
                  title="The next boot keeps the kernel command line", check=check, docs=__doc__))


def check(facts, scan):
    if not facts.cmdline_read.ok:
        yield Finding.skip(f"cannot read the running command line ({facts.cmdline_read.describe()})")
        return
    boot = facts.boot
    configured = boot.configured
    if configured is None or (boot.stack == "grub" and not _sets_grub_cmdline(boot)):
        yield Finding.skip(f"cannot tell what the next boot passes: {_unread(boot)}")
        return
    running = facts.cmdline
    turned_off = [switch for switch in _turned_off(facts, configured) if switch not in _turned_off(facts, running)]
    if turned_off:
        yield _turns_off(facts, boot, running, configured, turned_off)
        return
    lost = _lost(facts, running, configured)
    pending = []  # configured, not running yet: each name's running texts looked up as a set (linear)
    for key in RELEVANT:
        now = set(running.texts(key))
        pending += [t for t in configured.texts(key) if t not in now]
    evidence = [Evidence(running.source, _relevant(running) or "(none of the passthrough parameters)"),
                Evidence(configured.source, _relevant(configured) or "(none of the passthrough parameters)")]
    if lost:
        yield Finding.fail(f"works now, lost at next boot: {' '.join(lost)} {'is' if len(lost) == 1 else 'are'} on the "
                           f"running command line but not in {configured.source}, so the next boot comes up without "
                           f"{'it' if len(lost) == 1 else 'them'}",
                           observed=f"configured: {_relevant(configured) or 'none'}",
                           expected=f"configured: {' '.join(lost)}", evidence=evidence,
                           remediation=cmdline_steps(boot, add=lost, why="keep what runs now"))
        return
    message = f"the next boot passes what runs now ({_relevant(running) or 'no passthrough parameters'})"
    if pending:
        message += f"; it also changes: {' '.join(pending)} (configured, not yet booted)"
    yield Finding.passed(message, observed=_relevant(configured), expected=_relevant(running), evidence=evidence)


def _turned_off(facts, cmdline) -> List[str]:
    """What on ``cmdline`` turns off what passthrough needs: the IOMMU (read as VFIO-004 reads it) or
    interrupt remapping (``intremap=off``: vfio_iommu_type1 then refuses every group)."""
    from rules.kernel_cmdline import iommu_switched_off

    off = [iommu_switched_off(facts, cmdline)]
    if cmdline.last_of("intremap", {"on", "off"}) == "off":
        off.append("intremap=off")
    return [switch for switch in off if switch]


def _turns_off(facts, boot, running, configured, switches: List[str]) -> Finding:
    """The fail of a next boot that turns the IOMMU or interrupt remapping off, though this boot runs with
    them: the host is READY now and comes up unable to start the VM."""
    keys = {switch.partition("=")[0] for switch in switches}
    remove = [text for key in sorted(keys) for text in configured.texts(key)
              if any(value in ("off", "0") for value in text.partition("=")[2].split(","))]
    add = [text for key in sorted(keys) for text in running.texts(key) if text not in remove]
    what = " and ".join(switches)
    return Finding.fail(f"the next boot turns off what passthrough needs: {what} in {configured.source}, not on the "
                        "running command line, so the host comes up "
                        + ("without interrupt remapping (vfio_iommu_type1 refuses every group)"
                           if switches == ["intremap=off"] else "with no IOMMU groups")
                        + " and the VM does not start",
                        observed=f"configured: {_relevant(configured, extra=keys) or 'none'}",
                        expected=f"configured without {what}",
                        evidence=[Evidence(running.source, _relevant(running, extra=keys) or "(none)"),
                                  Evidence(configured.source, _relevant(configured, extra=keys))],
                        remediation=cmdline_steps(boot, add=add, remove=remove, why="keep what runs now"))


def _unread(boot) -> str:
    """Why the next boot's command line is unknown, naming the file or tool behind it."""
    seen = f" (seen from {boot.detected_by})" if boot.detected_by else ""
    if boot.stack in ("nixos", "rpm-ostree"):
        return f"{boot.name} keeps it in a form this tool does not read{seen}"
    if boot.stack == "unknown":
        return f"no boot loader configuration this tool reads{seen}"
    if boot.stack == "grub":
        return f"{boot.config_file} and its drop-ins set no GRUB_CMDLINE_LINUX nor GRUB_CMDLINE_LINUX_DEFAULT"
    return f"{boot.config_file or 'its configuration'} could not be read ({boot.name}{seen})"


def _sets_grub_cmdline(boot) -> bool:
    return any(text and "GRUB_CMDLINE_LINUX" in text for _, text, _ in boot.files)


def _relevant(cmdline, extra=()) -> str:
    return " ".join(t for key in RELEVANT + tuple(k for k in sorted(extra) if k not in RELEVANT)
                    for t in cmdline.texts(key))


#: Running parameters the next boot is allowed to lose, never put back by this rule: the security
#: downgrades VFIO-004 warns of (losing one is a hardening someone configured), and ``vfio-pci.ids``,
#: which names devices by vendor:device for every function with those ids -- whether each target
#: stays on vfio-pci is VFIO-017's to judge, by address, with the host's own devices kept out.
NOT_PUT_BACK = ("vfio_iommu_type1.allow_unsafe_interrupts", "iommufd.allow_unsafe_interrupts", "pcie_acs_override",
                "vfio_pci.ids")


def _lost(facts, running, configured) -> List[str]:
    """Parameters of the running command line the next boot will not pass (and that matter there)."""
    lost = []
    for key in RELEVANT:
        if key in NOT_PUT_BACK:
            continue
        for param in running.all(key):
            text = param.text
            if _kept(param, configured.all(key)) or _switches_off(text):
                continue  # kept, or a switch-off the next boot is better without
            if key == "intel_iommu" and text.split("=", 1)[-1].split(",")[0] == "on" and _vt_d_on_by_default(facts):
                continue  # the kernel turns VT-d on by itself
            lost.append(text)
    return lost


def _kept(param, configured) -> bool:
    """Does the next boot pass ``param`` (a running parameter) in one of ``configured`` (the same key)?
    By what the kernel reads, not by spelling: ``vfio_pci.ids`` is ``vfio-pci.ids`` (keys are compared
    with ``-`` as ``_``), and ``intel_iommu=on,sm_on`` still passes ``on``: every comma-separated option of
    the running value is among those of a configured one."""
    wanted = set((param.value or "").split(","))
    return any(wanted <= set((other.value or "").split(",")) for other in configured)


def _switches_off(text: str) -> bool:
    """``intel_iommu=off``, ``iommu=off``: losing one of these at the next boot helps passthrough."""
    key, _, value = text.partition("=")
    return key in ("intel_iommu", "amd_iommu", "iommu") and any(v in ("off", "0") for v in value.split(","))


def _vt_d_on_by_default(facts) -> bool:
    kc = facts.kconfig
    return "y" in (kc.get("INTEL_IOMMU_DEFAULT_ON"), kc.get("INTEL_IOMMU_DEFAULT_ON_INTGPU_OFF"))
