"""VFIO-017 binding-persistence: what is on vfio-pci now is there again after the next boot.

What: each target now on vfio-pci is bound to it again at boot by one of: a driverctl override
(``/etc/driverctl.d/pci-ADDR``), a udev rule setting its ``driver_override`` to vfio-pci, or its
vendor:device in the ``vfio-pci ids=`` that takes effect (``/etc/modprobe.d/*.conf``, or
``vfio-pci.ids=`` on the command line of the next boot; only the command line when vfio-pci is
built into the kernel: modprobe never runs for a built-in module, so its options lines are never read). ``ids=`` also needs vfio-pci loaded
before the host driver (a ``softdep ... pre: vfio-pci``, a modules-load.d entry, or vfio-pci built
in), and must not take a device the host keeps: another device with the same vendor:device that
stays on a host driver would be taken too. A PF given ``--vfs PF=N`` with its N VFs enabled needs
what creates them at boot: a udev rule naming it, or a sysfsutils setting (``/etc/sysfs.conf``,
``/etc/sysfs.d/*.conf``), that writes its ``sriov_numvfs``; so does a VF target, whatever binds it,
since after a reboot without it the VF does not exist.

Why: ``driver_override`` and ``sriov_numvfs`` written at run time are lost at reboot: the
device returns to its host driver (or the VFs are gone), and the VM that started yesterday does
not start today.

The initramfs comes first: when the running release's image (``/boot/initrd.img-R``,
``/boot/initramfs-R.img``, ``/boot/initrd-R``, ``/boot/initramfs-linux.img``; gzip, xz, lzma,
bzip2, zstd or lz4 behind the early microcode archive) holds a driver whose ``modules.alias``
matches the target, that driver binds it before the root filesystem is mounted. ``ids=`` then
needs vfio_pci in the image, the ``ids=`` line in the image's modprobe.d (an image built before
the line was written lacks it), and what loads vfio_pci first (a softdep, initramfs-tools'
``/etc/initramfs-tools/modules``, dracut's ``force_drivers``); a driverctl override or a udev rule
applies only in the real root, after that driver (a warning). An image that cannot be read
(``/boot`` is root's on many distributions) is named in the evidence and the pass stands.

How: the files above, read as the next boot will read them (see VFIO-016 for the command line).
A target not on vfio-pci now is VFIO-013's: this rule follows from it. With ``--managed`` the VMM
binds the target at every VM start, so there is no binding to keep (a VF count still is).

Fix: the persistent steps VFIO-013 gives (driverctl where installed, else ``ids=`` with a softdep,
else a udev rule per device), and for VFs the udev rule VFIO-011 writes.
"""

from typing import List, Optional

from scanner import hookimpl
from scanner.engine.model import Evidence, Finding, Rule

RULE_ID = "VFIO-017"


@hookimpl
def vfio_scan_register_rules(register):
    register(Rule(id=RULE_ID, name="binding-persistence", scope="device", severity="high",
                  title="vfio-pci binding and VF counts survive a reboot", check=check, docs=__doc__))


def check(facts, scan):
    from scanner.facts.pci import is_vfio_driver

    for target in scan.targets:
        device = facts.pci.get(target.address)
        if device is None:
            yield Finding.skip("follows from VFIO-010: the device is not there", subject=target.address)
        elif target.vfs is not None:
            yield _vf_count(facts, target, device)
        elif not target.for_passthrough:
            yield Finding.skip(target.stays_on_host_reason(device), subject=target.address)
        elif scan.managed:
            gone = _vf_gone_at_boot(facts, device) if device.physfn else None
            yield gone or Finding.passed("managed mode: the VMM binds it to vfio-pci at every VM start, after any "
                                         "reboot (see VFIO-013 for whether it can)", subject=target.address,
                                         observed=f"driver {device.driver or '(none)'}", expected="a binding at VM start")
        elif not (device.driver and is_vfio_driver(device.driver)):
            yield Finding.skip(f"follows from VFIO-013: {target.address} is not on vfio-pci now "
                               f"({'on ' + device.driver if device.driver else 'no driver'}); its fix keeps it at boot too",
                               subject=target.address)
        else:
            yield _binding(facts, scan, device)


def _binding(facts, scan, device) -> Finding:
    from scanner.remediation.persistent_binding import persistent_steps, same_ids_on_host

    address = device.address
    if device.physfn:
        gone = _vf_gone_at_boot(facts, device)
        if gone is not None:
            return gone
    kept_by = _kept_by(facts, device)
    evidence = [Evidence(f"/sys/bus/pci/devices/{address}/driver", device.driver)]
    twins = same_ids_on_host(facts, device, scan.target_set)
    if kept_by and kept_by[0].startswith("ids=") and twins:
        names = ", ".join(f"{t.address} (on {t.driver or 'no driver'})" for t in twins)
        return Finding.fail(f"{kept_by[0]} at the next boot takes {names} too, which the host keeps: same "
                            f"vendor:device {device.ids}", subject=address, evidence=evidence,
                            observed=kept_by[0], expected="a binding by address (driverctl or a udev rule)",
                            remediation=persistent_steps(facts, scan, device))
    unread = facts.boot_config_unread() if not kept_by or len(kept_by) == 1 else []
    if unread and (not kept_by or kept_by[0].startswith("ids=")):  # what binds or loads it may be in there
        more = f" (and {len(unread) - 1} more)" if len(unread) > 1 else ""
        return Finding.skip(f"cannot tell whether anything binds {address} to vfio-pci at boot: cannot read "
                            f"{unread[0]}{more}", subject=address,
                            evidence=evidence + [Evidence(path, f"<{why}>") for path, _, why in
                                                 (u.partition(": ") for u in unread)])
    if kept_by and kept_by[0].startswith("ids=") and len(kept_by) == 1:
        return Finding.fail(f"works now, lost at next boot: {kept_by[0]} names it, but nothing loads vfio-pci before "
                            f"its host driver at boot (no softdep ... pre: vfio-pci, no modules-load.d entry), so the "
                            "host driver takes it first", subject=address, evidence=evidence, observed=kept_by[0],
                            expected="vfio-pci loaded before the host driver",
                            remediation=persistent_steps(facts, scan, device))
    if kept_by:
        evidence += [Evidence("boot configuration", k) for k in kept_by]
        from scanner.remediation import early_binding

        broken, seen = early_binding.judge(facts, device, kept_by[0])
        evidence += seen
        if broken:
            status, message, steps = broken
            make = Finding.fail if status == "fail" else Finding.warn
            return make(message, subject=address, evidence=evidence, observed="; ".join(kept_by),
                        expected="vfio-pci claims it before any driver of the initramfs", remediation=steps)
        return Finding.passed(f"on vfio-pci now and at boot: {'; '.join(kept_by)}", subject=address,
                              evidence=evidence, observed="; ".join(kept_by),
                              expected="a binding that survives a reboot")
    override = device.driver_override or "(null)"
    return Finding.fail(f"works now, lost at next boot: {address} is on {device.driver} through a runtime binding "
                        f"(driver_override {override}); no driverctl override, udev rule or vfio-pci ids= binds it at "
                        f"boot, so it returns to its host driver{_unheeded_ids(facts, device)}", subject=address,
                        evidence=evidence + [Evidence(f"/sys/bus/pci/devices/{address}/driver_override", override)],
                        observed="bound at run time only", expected="a binding that survives a reboot",
                        remediation=persistent_steps(facts, scan, device))


def _kept_by(facts, device) -> List[str]:
    """What binds the device to vfio-pci at boot, first the mechanism, then what makes ``ids=`` work."""
    address = device.address
    driver = device.driver if device.driver != "vfio_pci" else "vfio-pci"  # a variant keeps its own name
    override = facts.driverctl_overrides.get(address, "")
    if (override.replace("_", "-") if driver == "vfio-pci" else override) == driver:
        return [f"driverctl override /etc/driverctl.d/pci-{address}"]
    rules = facts.udev_rules_for(address, "driver_override", driver)
    if rules:
        return [f"udev rule {rules[0]}"]
    if driver != "vfio-pci":
        return []  # only vfio-pci itself takes ids=
    ids = _ids_at_boot(facts, device)
    if not ids:
        return []
    loaders = _vfio_pci_loaders(facts, device)
    return [ids] + loaders


def _ids_at_boot(facts, device) -> Optional[str]:
    configured = facts.boot.configured
    if configured is not None:
        for value in configured.options("vfio_pci.ids"):
            if value == device.ids:
                return f"ids={device.ids} on the next boot's command line ({configured.source})"
    winner = _modprobe_ids_line(facts, device)
    if winner and facts.modules.state("vfio_pci") != "builtin":
        return f"ids={device.ids} in {winner}"
    return None


def _modprobe_ids_line(facts, device) -> Optional[str]:
    """The modprobe.d file whose ``options vfio-pci ids=`` (the one that takes effect) names the device."""
    winner, _ = facts.modprobe_vfio
    return winner[0] if winner and device.ids in winner[1] else None


def _unheeded_ids(facts, device) -> str:
    """What a fail adds when modprobe.d names the device for a vfio-pci built into the kernel: modprobe
    never runs for a built-in module, so that line is never read (its ids go on the command line)."""
    line = _modprobe_ids_line(facts, device)
    if line and facts.modules.state("vfio_pci") == "builtin":
        return (f" (ids={device.ids} in {line} is never read: vfio-pci is built into this kernel, and a built-in "
                "module takes its options only from the kernel command line, as vfio-pci.ids=)")
    return ""


def _vfio_pci_loaders(facts, device) -> List[str]:
    """What loads vfio-pci at boot before a host driver could take the device."""
    if facts.modules.state("vfio_pci") == "builtin":
        return ["vfio-pci is built in"]
    return facts.vfio_pci_loaders()


def _vf_gone_at_boot(facts, device) -> Optional[Finding]:
    """The fail of a VF target whose PF's VF count nothing writes at boot: whatever binds the VF to
    vfio-pci then binds nothing, since after a reboot the VF does not exist. None when it is written."""
    from scanner.remediation.sriov import persist_step, udev_rule_file

    pf = facts.pci.get(device.physfn)
    if pf is None or facts.vf_count_at_boot(pf.address):
        return None
    count = pf.sriov_numvfs or 0
    return Finding.fail(f"works now, lost at next boot: {device.address} is a VF of {pf.address}, whose {count} VF(s) "
                        f"were made at run time; no udev rule or sysfsutils setting writes its sriov_numvfs at boot, "
                        "so after a reboot this VF does not exist", subject=device.address,
                        evidence=[Evidence(f"/sys/bus/pci/devices/{device.address}/physfn", pf.address),
                                  Evidence(f"/sys/bus/pci/devices/{pf.address}/sriov_numvfs", str(count))],
                        observed="VFs made at run time only", expected="what writes the PF's sriov_numvfs at boot",
                        remediation=[persist_step(pf.address, count, pf.sriov_drivers_autoprobe,
                                                  facts.etc_file(udev_rule_file(pf.address)))] if count else [])


def _vf_count(facts, target, device) -> Finding:
    from scanner.remediation.sriov import persist_step, udev_rule_file, vfs

    address, wanted = target.address, target.vfs
    current = device.sriov_numvfs
    if not wanted or current != wanted:
        return Finding.skip(f"follows from VFIO-011: {vfs(current or 0)} enabled now, {wanted} asked", subject=address)
    kept = facts.vf_count_at_boot(address)
    evidence = [Evidence(f"/sys/bus/pci/devices/{address}/sriov_numvfs", str(current))]
    if kept:
        return Finding.passed(f"{vfs(current)} now and at boot: {kept}", subject=address, evidence=evidence,
                              observed=kept, expected="what writes sriov_numvfs at boot")
    return Finding.fail(f"works now, lost at next boot: {vfs(current)} exist now, but no udev rule or sysfsutils "
                        f"setting writes sriov_numvfs for {address} at boot, so they are gone after a reboot",
                        subject=address,
                        evidence=evidence, observed="set at run time only", expected="what writes sriov_numvfs at boot",
                        remediation=[persist_step(address, wanted, device.sriov_drivers_autoprobe,
                                                  facts.etc_file(udev_rule_file(address)))])

