"""Remediation steps for SR-IOV: give a PF back its driver, set the VF count, keep it across boots.

What the kernel does with these files (``drivers/pci/iov.c``, checked on Debian's 6.1 kernel
under QEMU with an SR-IOV NVMe):

* ``sriov_numvfs``: writing more than ``sriov_totalvfs`` is ``-ERANGE``; a PF without a driver
  answers ``no driver bound to device; cannot configure SR-IOV`` (``-ENOENT``, also what vfio-pci
  answers without ``enable_sriov=1``); changing a non-zero count to another non-zero count is
  ``-EBUSY`` with ``N VFs already enabled. Disable before enabling M VFs``, so 0 is written first;
  writing the count that is already set is a no-op.
* ``sriov_drivers_autoprobe``: read when VFs are created, so it is set to 0 *before* writing the
  count, or host drivers grab the VFs meant for vfio-pci.

Every step has the human commands (absolute ``/sys/bus/pci/devices/<addr>/...`` paths, every
value validated and quoted) and an ``action`` in machine form for the remediation-script export:

* ``{"kind": "pci-driver-probe", "address", "driver", "clear_override", "unbind"}``
* ``{"kind": "sriov-numvfs", "address", "current", "wanted", "autoprobe", "previous_autoprobe"}``
  (``autoprobe`` is the value to write first, 0, or None when nothing is to be written)
* ``{"kind": "sriov-persist", "method": "udev", "address", "wanted", "autoprobe", "file", "rule"}``
"""

from __future__ import annotations

from typing import List, Optional, Tuple

from scanner.remediation.confedit import edit_commands, file_state, own_rule
from scanner.engine.model import Step
from scanner.remediation.shell import DRIVER_NAME, PCI_ADDRESS, VFIO_DRIVER_NAME, checked, quote

DEVICES = "/sys/bus/pci/devices"
UDEV_RULES_DIR = "/etc/udev/rules.d"


def attr_path(address: str, name: str) -> str:
    """``/sys/bus/pci/devices/<addr>/<name>`` with the address validated (and quoted: a no-op for one)."""
    return f"{DEVICES}/{quote(address, PCI_ADDRESS, 'PCI address')}/{name}"


def vfs(n: int) -> str:
    """``1 VF``, ``4 VFs``."""
    return f"{n} VF" if n == 1 else f"{n} VFs"


def _count(value, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0 or value > 65535:
        raise ValueError(f"refusing to put {what} {value!r} into a command: not a VF count")
    return value


def udev_rule_file(address: str) -> str:
    """``/etc/udev/rules.d/70-vfio-scan-sriov-0000-02-00.0.rules`` (no ``:`` in file names)."""
    checked(address, PCI_ADDRESS, "PCI address")
    return f"{UDEV_RULES_DIR}/70-vfio-scan-sriov-{address.replace(':', '-')}.rules"


def pf_driver_step(address: str, driver: Optional[str], override: Optional[str], ids: Optional[str] = None) -> Step:
    """Let the PF's own (host) driver bind it: the kernel creates VFs only through a PF driver.

    ``driver`` is the PF's current driver (None: unbound; vfio-pci: unbind it first).
    """
    addr = quote(address, PCI_ADDRESS, "PCI address")
    commands: List[str] = []
    if override:
        commands.append(f"echo > {attr_path(address, 'driver_override')}")
    if driver:
        checked(driver, DRIVER_NAME, "driver name")
        commands.append(f"echo {addr} > {attr_path(address, 'driver/unbind')}")
    else:
        commands.append(f'modprobe "$(cat {attr_path(address, "modalias")})"')
    commands.append(f"echo {addr} > /sys/bus/pci/drivers_probe")
    if driver:
        summary = (f"Give {address} back to its host driver (unbind it from {driver}, then let the kernel probe "
                   "it): the PF stays on the host to create the VFs, only the VFs go to vfio-pci")
    else:
        summary = (f"Bind {address} to its own driver (load the module matching its modalias, then let the kernel "
                   "probe it); if that driver is blacklisted in /etc/modprobe.d or in the kernel command line "
                   "for passthrough, remove that: the PF needs its driver to create VFs, only the VFs go to vfio-pci")
    if override:
        summary += f"; its driver_override ({override}) is cleared first, or only that driver could bind it"
    return Step(summary=summary, phase="modules", commands=commands,
                action={"kind": "pci-driver-probe", "address": address, "ids": ids, "driver": driver,
                        "clear_override": bool(override), "unbind": bool(driver)})


def numvfs_step(address: str, current: int, wanted: int, autoprobe: Optional[int], ids: Optional[str] = None) -> Step:
    """Set the VF count now: autoprobe 0 first, 0 when VFs exist, then the wanted count.

    ``autoprobe`` is the PF's current ``sriov_drivers_autoprobe`` (None: no such file).
    """
    current, wanted = _count(current, "current VF count"), _count(wanted, "VF count")
    numvfs, probe_file = attr_path(address, "sriov_numvfs"), attr_path(address, "sriov_drivers_autoprobe")
    commands: List[str] = []
    undo: List[str] = []
    set_autoprobe = wanted > 0 and autoprobe is not None
    parts = []
    if set_autoprobe and autoprobe != 0:
        commands.append(f"echo 0 > {probe_file}")
        parts.append("stop host drivers from probing the new VFs (sriov_drivers_autoprobe=0; they are meant for "
                     "vfio-pci)")
    if current > 0:
        commands.append(f"echo 0 > {numvfs}")
        if wanted > 0:
            parts.append(f"remove the {vfs(current)} that exist (the kernel refuses to change a non-zero count: "
                         f"\"{current} VFs already enabled. Disable before enabling {wanted} VFs\"; stop any VM "
                         "using them first)")
        else:
            parts.append(f"remove the {vfs(current)} that exist (stop any VM using them first)")
    if wanted > 0:
        commands.append(f"echo {wanted} > {numvfs}")
        parts.append(f"enable {vfs(wanted)}")
        undo.append(f"echo 0 > {numvfs}")
    if set_autoprobe and autoprobe != 0:
        undo.append(f"echo {_count(autoprobe, 'autoprobe value')} > {probe_file}")
    if current > 0:
        undo.append(f"echo {current} > {numvfs}")
    summary = f"On {address}: " + ", then ".join(parts)
    if wanted > 0:
        summary += " (this lasts until the next reboot; the next step makes it permanent)"
    return Step(summary=summary, phase="sriov", commands=commands, undo=undo,
                action={"kind": "sriov-numvfs", "address": address, "ids": ids, "current": current, "wanted": wanted,
                        "autoprobe": 0 if set_autoprobe else None, "previous_autoprobe": autoprobe})


def bind_vfs_step(address: str, driver: str = "vfio-pci") -> Step:
    """Bind every VF of the PF to vfio-pci (or ``driver``, the variant chosen for its VFs), now and at each boot.

    With ``sriov_drivers_autoprobe`` 0 the kernel probes no driver for new VFs: they would stay
    driverless, neither on the host nor ready for a VM. ``driver_override`` plus a probe binds each
    to vfio-pci; the script also writes a udev rule per VF so that the same happens at boot.
    """
    base = f"{DEVICES}/{quote(address, PCI_ADDRESS, 'PCI address')}"
    checked(driver, VFIO_DRIVER_NAME, "vfio driver")
    return Step(summary=(f"Bind each VF of {address} to {driver} (with sriov_drivers_autoprobe 0 no driver takes "
                         "them, and they are meant for VMs): driver_override and a probe now, a udev rule per VF "
                         "for every boot"),
                phase="sriov", persistent=True,
                commands=[f'for vf in {base}/virtfn*; do a=$(basename "$(readlink "$vf")"); '
                          f'echo {driver} > "$vf/driver_override"; echo "$a" > /sys/bus/pci/drivers_probe; done'],
                action={"kind": "bind-vfs", "address": address} | ({} if driver == "vfio-pci" else {"driver": driver}))


def persist_step(address: str, wanted: int, autoprobe: Optional[int],
                 current: Optional[Tuple[str, Optional[str], Optional[str]]] = None) -> Step:
    """A udev rule that sets autoprobe 0 and the VF count whenever the PF's driver is bound.

    ``bind`` covers a driver loaded after udev started (the usual case) and a re-bind; ``add``
    covers coldplug after the initramfs, where the driver (e.g. nvme for the root disk) was bound
    before the rules existed; on a real hot-add the write is refused harmlessly until ``bind``.
    """
    wanted = _count(wanted, "VF count")
    checked(address, PCI_ADDRESS, "PCI address")
    path = udev_rule_file(address)
    assignments = ['ATTR{sriov_drivers_autoprobe}="0"'] if autoprobe is not None else []
    assignments.append(f'ATTR{{sriov_numvfs}}="{wanted}"')
    rule = f'ACTION=="add|bind", SUBSYSTEM=="pci", KERNEL=="{address}", ' + ", ".join(assignments)
    state = file_state(*(current or (path, None, None)))
    new = own_rule(state["text"], rule, f'KERNEL=="{address}"')
    return Step(
        summary=(f"Keep {vfs(wanted)} on {address} across reboots: a udev rule ({path}) that sets "
                 + ("sriov_drivers_autoprobe=0 and then " if autoprobe is not None else "")
                 + f"sriov_numvfs={wanted} when the PF's driver binds (a systemd oneshot unit writing the same "
                 "files after the driver has loaded does the same)"),
        phase="sriov", persistent=True,
        commands=edit_commands(path, state["text"], new) + ["udevadm control --reload"],
        undo=[f"rm -f {path}", "udevadm control --reload"],
        action={"kind": "sriov-persist", "method": "udev", "address": address, "wanted": wanted,
                "autoprobe": 0 if autoprobe is not None else None, "file": path, "rule": rule, "files": [state]})


__all__ = ["vfs", "attr_path", "numvfs_step", "persist_step", "pf_driver_step", "udev_rule_file", "bind_vfs_step"]
