"""VFIO-013 driver-binding: the target is bound to vfio-pci and /dev/vfio/GROUP exists.

What: each target's ``driver`` link names ``vfio-pci`` (or a vendor variant driver such as
``mlx5_vfio_pci``, ``nvgrace_gpu_vfio_pci``), and the vfio group node ``/dev/vfio/<group>`` that
QEMU opens exists.

Why: QEMU's ``-device vfio-pci,host=0000:01:00.0`` fails unless the device is on a vfio driver
("vfio 0000:01:00.0: no iommu_group found" or "failed to open /dev/vfio/1"). A device bound to
vfio-pci without its ``/dev/vfio/<group>`` node means /dev is not the host's devtmpfs (a
container or chroot that was not given /dev/vfio), or a kernel that offers only the iommufd
device nodes (``CONFIG_VFIO_GROUP`` unset: ``/dev/vfio/devices/vfioN``, QEMU needs ``iommufd``).
The node exists as soon as one device of the group is on vfio-pci, even when the group is not
yet viable: the other members are VFIO-012's business.

How: ``/sys/bus/pci/devices/<addr>/driver`` and ``driver_override``, ``/dev/vfio``,
``/proc/modules`` for vfio_pci, the host's tools (driverctl, the initramfs tool), and what the
host itself runs on (the default route's NIC, followed through bridges and bonds; the root
filesystem's disk, followed through LVM, LUKS and RAID).

A policy target may name another driver (``driver = "ixgbe"`` for a PF that stays on the host,
or one vfio variant): that target then passes when it is bound to exactly that driver.

Fix, now (phase binding), for exactly that device::

    modprobe vfio-pci                                              # when not loaded
    echo vfio-pci > /sys/bus/pci/devices/ADDR/driver_override
    echo ADDR > /sys/bus/pci/devices/ADDR/driver/unbind            # when bound
    echo ADDR > /sys/bus/pci/drivers_probe

(undo: ``echo > .../driver_override``, unbind, ``drivers_probe``: the host driver takes it back).
Never ``echo VVVV DDDD > /sys/bus/pci/drivers/vfio-pci/new_id``: it binds *every* device with
those ids, now and on hotplug, including an identical card the host keeps.

Variant drivers: when the running kernel's modules.alias has a ``vfio_pci:`` alias for the
device more specific than vfio_pci's own (``mlx5_vfio_pci`` for a ConnectX VF,
``nvgrace_gpu_vfio_pci`` for a Grace Hopper GPU), the fix binds that driver, chosen as libvirt
chooses it (the match with the fewest wildcards), and the alias line is in the evidence. A
variant takes no ``ids=``, so it is kept at boot per device (driverctl or a udev rule).

Fix, at every boot: ``driverctl set-override ADDR vfio-pci`` where driverctl is installed;
otherwise ``options vfio-pci ids=VVVV:DDDD`` plus ``softdep <host driver> pre: vfio-pci`` in one
``/etc/modprobe.d/vfio.conf`` and the initramfs rebuild of the detected tool
(``update-initramfs -u -k all``, ``dracut -f --regenerate-all``, ``mkinitcpio -P``), then a
reboot (``vfio-pci.ids=`` on the kernel command line when vfio-pci is built in). When another
device with the same vendor:device stays on the host, ``ids=`` would take it too: then a udev
rule sets ``driver_override`` for that one address instead. If the host driver is loaded from
the initramfs, vfio-pci must be there too (dracut follows the softdep; with initramfs-tools
list ``vfio_pci`` in /etc/initramfs-tools/modules, with mkinitcpio in ``MODULES=``).

With ``--managed`` (libvirt's ``<hostdev managed='yes'>``, Proxmox's ``hostpciN``: the VMM
detaches the device from its host driver when the VM starts and gives it back when it stops), a
target still on its host driver passes when it can be detached: it is not what the host runs on,
and its IOMMU group is viable with it gone (every other member a bridge, another target, on vfio
or unbound: VFIO-012). Nothing is bound now and nothing needs keeping at boot (VFIO-017).

A target the host runs on -- it carries a default route, holds a disk of ``/``, ``/usr``,
``/boot``, ``/boot/efi``, ``/efi`` or swap, or is the PF of a VF that does -- is never given a
command: binding it cuts the host's own network or disk. The finding says so first, and the
step is manual (its action carries ``host_critical``, so the script export refuses it).
"""

from scanner import hookimpl
from scanner.engine.model import Evidence, Finding, Rule, Step

SHOWN_NODES = 8  # /dev/vfio names shown when a device's own node is absent
EXPECTED = "bound to vfio-pci (or a *_vfio_pci variant) and /dev/vfio/{group} present"


@hookimpl
def vfio_scan_register_rules(register):
    register(Rule(id="VFIO-013", name="driver-binding", scope="device", severity="high",
                  title="Device bound to vfio-pci", check=check, docs=__doc__))


def check(facts, scan):
    from scanner.facts.pci import is_vfio_driver

    for target in scan.targets:
        expected = target.expected_driver  # set by a policy target's ``driver``; None means vfio-pci
        if expected and expected != "vfio-pci" and (facts.pci[target.address].driver != expected
                                                    or not is_vfio_driver(expected)):
            yield judge_expected(facts, target.address, expected)
            continue
        if not target.for_passthrough:
            yield Finding.skip(target.stays_on_host_reason(facts.pci.get(target.address)), subject=target.address)
            continue
        yield judge(facts, scan, target.address)


def _evidence(facts, device):
    base = f"/sys/bus/pci/devices/{device.address}"
    evidence = [Evidence(f"{base}/driver", device.driver or "<no driver bound>"),
                Evidence(f"{base}/driver_override", device.driver_override or "(null)"),
                _node_evidence(facts, device.iommu_group)]
    evidence += [Evidence("sysfs", note) for note in device.notes]
    return evidence


def _node_evidence(facts, group):
    """This device's group node, not the whole of ``/dev/vfio``: a host with thousands of VFs on
    vfio-pci has thousands of nodes, and listing them all in every target's finding made the
    report quadratic in size."""
    listing = facts.dev_vfio
    if not listing.ok:
        return Evidence(listing.path, f"<{listing.reason}>")
    if group and group in facts.dev_vfio_names:
        return Evidence(f"{listing.path}/{group}", "present")
    names = listing.entries()
    shown = " ".join(names[:SHOWN_NODES]) + (f" ... ({len(names)} in all)" if len(names) > SHOWN_NODES else "")
    where = f"{listing.path}/{group}" if group else listing.path
    return Evidence(where, f"absent; {listing.path} has: {shown or 'nothing'}" if group else shown or "<empty>")


def judge(facts, scan, address):
    from scanner.facts.pci import describe, is_vfio_driver
    from scanner.remediation.binding import (bind_now_step, choice_evidence, critical_evidence, host_critical, vfio_choice,
                                 vfio_pci_loaded)
    from scanner.remediation.persistent_binding import persistent_steps

    device = facts.pci[address]
    group = device.iommu_group
    evidence = _evidence(facts, device)
    expected = EXPECTED.format(group=group or "GROUP")
    observed = f"driver {device.driver or '(none)'}; driver_override {device.driver_override or '(null)'}"
    dev_vfio = facts.dev_vfio
    node = f"/dev/vfio/{group}" if group else None

    if device.is_bridge:
        return Finding.fail(f"{describe(device)} is a bridge: bridges stay on the host and vfio-pci refuses "
                            "them (probe fails with error -22); pass the endpoints behind it instead",
                            subject=address, observed=observed, expected="an endpoint device",
                            evidence=evidence,
                            remediation=[Step(summary=f"Pass the devices behind bridge {address}, not the bridge "
                                                      "('vfio-scan groups' lists them)", phase="binding",
                                              manual=True, action={"kind": "not-passable", "address": address,
                                                                   "reason": "bridge"})])

    if is_vfio_driver(device.driver):
        if not group:
            return Finding.fail(f"bound to {device.driver} but in no IOMMU group: the IOMMU does not run "
                                "(see VFIO-005)", subject=address, observed=observed, expected=expected,
                                evidence=evidence, remediation=[_see_iommu()])
        observed += f"; {node} {'present' if group in facts.dev_vfio_names else 'absent'}"
        if dev_vfio.ok and group in facts.dev_vfio_names:
            return Finding.passed(f"bound to {device.driver}; {node} exists", subject=address,
                                  observed=observed, expected=expected, evidence=evidence)
        if dev_vfio.ok and f"noiommu-{group}" in facts.dev_vfio_names:
            return Finding.fail(f"bound to {device.driver}, but only /dev/vfio/noiommu-{group} exists: unsafe "
                                "no-IOMMU mode, no DMA protection, never fit for a VM (see VFIO-005)",
                                subject=address, observed=observed, expected=expected, evidence=evidence,
                                remediation=[_see_iommu()])
        if not dev_vfio.ok and not dev_vfio.missing:
            return Finding.skip(f"bound to {device.driver}; cannot list /dev/vfio to check for {node} "
                                f"({dev_vfio.reason})", subject=address, observed=observed, expected=expected,
                                evidence=evidence)
        cdev = "devices" in facts.dev_vfio_names
        why = ("this kernel offers only iommufd device nodes (/dev/vfio/devices/): QEMU must use "
               "iommufd instead of the group" if cdev else
               "QEMU cannot open the group: /dev here is not the host's devtmpfs (a container or chroot "
               "without /dev/vfio), or the node was removed")
        return Finding.fail(f"bound to {device.driver}, but {node} does not exist: {why}", subject=address,
                            observed=observed, expected=expected, evidence=evidence,
                            remediation=[Step(summary=f"Make {node} available where QEMU runs (bind-mount the "
                                                      "host's /dev/vfio into the container, or check that /dev "
                                                      "is devtmpfs)", phase="access", manual=True,
                                              action={"kind": "dev-vfio", "address": address, "group": group})])

    if not group and address in facts.stream_aliases:
        sid, holder = facts.stream_aliases[address]
        return Finding.fail(f"not on vfio-pci ({_current(device)}), and in no IOMMU group: it shares SMMU stream {sid} "
                            f"with {holder}, which the kernel grouped instead, so vfio-pci would refuse it (see VFIO-012)",
                            subject=address, observed=observed, expected=expected, evidence=evidence,
                            remediation=[Step(summary=f"See VFIO-012: pass {holder}'s group instead, or move the device",
                                              phase="binding", manual=True,
                                              action={"kind": "see-rule", "rules": ["VFIO-012"]})])
    if not group:
        return Finding.fail(f"not on vfio-pci ({_current(device)}), and in no IOMMU group: vfio-pci would refuse "
                            "it (probe fails with error -22); the IOMMU must run first (see VFIO-005)",
                            subject=address, observed=observed, expected=expected, evidence=evidence,
                            remediation=[_see_iommu()])

    critical = host_critical(facts, address)
    if scan.managed and not critical:
        return judge_managed(facts, scan, device, evidence, observed)
    if critical:
        evidence += critical_evidence(facts, address)
        return Finding.fail(f"HOST DEVICE: {address} is what this host runs on — {critical}. It is not on vfio-pci "
                            f"({_current(device)}) and no command is offered: free it first (move the host's network "
                            "or disks elsewhere) or pass another device",
                            subject=address, observed=observed, expected=expected, evidence=evidence,
                            remediation=[bind_now_step(facts, device, role="target", for_target=address)])

    message = f"not on vfio-pci: {_current(device)}"
    if device.driver_override and device.driver_override != "vfio-pci":
        message += f"; driver_override is {device.driver_override}"
    if not device.driver and device.driver_override == "vfio-pci" and not vfio_pci_loaded(facts):
        message += " (driver_override already names vfio-pci, but vfio_pci is not loaded)"
    choice = vfio_choice(facts, device)
    evidence += choice_evidence(choice)
    variant = f" (the vfio-pci variant this kernel has for {device.ids})" if choice.is_variant else ""
    message += f"; QEMU needs it on {choice.driver}{variant} with {node}"
    return Finding.fail(message, subject=address, observed=observed, expected=expected, evidence=evidence,
                        remediation=[bind_now_step(facts, device, role="target", for_target=address)]
                        + persistent_steps(facts, scan, device))


def judge_managed(facts, scan, device, evidence, observed):
    """``--managed``: the VMM detaches the target at VM start. That works when the host does not run
    on it (checked by the caller) and its group is viable once it is detached."""
    from scanner.facts.groups import classify

    address, group = device.address, device.iommu_group
    expected = "detachable by the VMM at VM start: not host-critical, IOMMU group viable"
    info = facts.iommu.groups.get(group)
    if info is None or getattr(info, "devices_reason", None):
        return Finding.skip(f"managed mode: cannot list IOMMU group {group} to tell whether the VMM can detach "
                            f"{address} (see VFIO-012)", subject=address, observed=observed, expected=expected,
                            evidence=evidence)
    blockers = classify(facts, group, scan.target_set).blockers
    blockers = [m for m in blockers if m.address != address]
    if blockers:
        names = ", ".join(f"{m.address} (on {m.driver})" for m in blockers)
        return Finding.fail(f"follows from VFIO-012: managed mode, but IOMMU group {group} is not viable with "
                            f"{address} detached ({names} stay on host drivers), so the VM would not start",
                            subject=address, observed=observed, expected=expected, evidence=evidence,
                            remediation=[Step(summary=f"See VFIO-012: free IOMMU group {group} first, or add its "
                                                      "other devices to the VM as managed hostdevs too",
                                              phase="binding", manual=True,
                                              action={"kind": "see-rule", "rules": ["VFIO-012"]})])
    if not device.driver:
        how = "it has no driver now: the VMM binds it to vfio-pci when the VM starts"
    else:
        how = f"the VMM detaches it from {device.driver} when the VM starts and gives it back when the VM stops"
    return Finding.passed(f"managed mode: {how}; the host does not run on it and IOMMU group {group} is viable",
                          subject=address, observed=observed, expected=expected, evidence=evidence)


def judge_expected(facts, address, expected):
    """A target a policy expects on another driver than vfio-pci: a PF kept on ``ixgbe``, a NIC the
    host keeps, or one vfio variant driver. Passes when bound to exactly that driver."""
    from scanner.remediation.shell import DRIVER_NAME, PCI_ADDRESS, quote
    from scanner.remediation.binding import sysfs_device

    device = facts.pci[address]
    evidence = _evidence(facts, device)
    observed = f"driver {device.driver or '(none)'}; driver_override {device.driver_override or '(null)'}"
    wanted = f"bound to {expected} (the policy's driver for this device)"
    if device.driver == expected:
        return Finding.passed(f"bound to {expected}, as the policy expects", subject=address, observed=observed,
                              expected=wanted, evidence=evidence)
    base = sysfs_device(address)
    addr = quote(address, PCI_ADDRESS, "PCI address")
    commands = [f"echo {quote(expected, DRIVER_NAME, 'driver')} > {base}/driver_override"]
    if device.driver:
        commands.append(f"echo {addr} > {base}/driver/unbind")
    commands.append(f"echo {addr} > /sys/bus/pci/drivers_probe")
    step = Step(summary=f"Bind {address} to {expected} now (driver_override for this device only, lost at reboot; "
                        f"'driverctl set-override {address} {expected}' keeps it)", phase="binding",
                commands=commands, undo=[f"echo > {base}/driver_override"])
    return Finding.fail(f"not on {expected}, the driver the policy expects: {_current(device)}", subject=address,
                        observed=observed, expected=wanted, evidence=evidence, remediation=[step])


def _current(device):
    return f"bound to {device.driver}" if device.driver else "no driver bound"


def _see_iommu():
    return Step(summary="Get the IOMMU running first (see VFIO-005 and VFIO-004), reboot, then run vfio-scan again",
                phase="kernel", manual=True, action={"kind": "see-rule", "rules": ["VFIO-005"]})
