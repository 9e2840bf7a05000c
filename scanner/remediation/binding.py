"""Remediation steps that bind one PCI function to vfio-pci now, and whether the host needs it.

Used by VFIO-013 (driver-binding) for a target and by VFIO-012 (group-isolation) for the other
members of a target's IOMMU group; keeping the binding at every boot is
scanner/remediation/persistent_binding.py's. Every step has human commands (each address, driver and module
name validated against :mod:`scanner.remediation.shell` patterns and quoted) and an ``action`` in machine
form for the remediation-script export:

``{"kind": "bind-vfio", "address", "driver", "current_driver", "driver_override", "group", "load_module",
"host_critical": None | why, "role", "for_target"}``
    The runtime binding (phase ``binding``): ``modprobe`` of the driver's module when it is not
    loaded, then ``driver_override`` + unbind (only when bound) + ``drivers_probe`` for that device
    only. ``driver`` is vfio-pci or the variant driver libvirt would pick from the kernel's
    modules.alias (:mod:`scanner.facts.variants`: ``mlx5_vfio_pci`` for a ConnectX VF). When
    ``host_critical`` is set (the device carries the host's default route, holds a mounted
    filesystem or swap, or is the PF of a VF that does) the step is manual with no
    commands, and an exporter must refuse it.

Never ``new_id``: ``echo VVVV DDDD > /sys/bus/pci/drivers/vfio-pci/new_id`` binds every device
with those ids, now and on hotplug, including the twin that the host still uses.
"""

from __future__ import annotations

from typing import List, Optional, Tuple

from scanner.facts.pci import PciDevice, class_name, is_vfio_driver
from scanner.facts.variants import PLAIN, VARIANT, VfioChoice
from scanner.base.lazyre import lazy_compile
from scanner.engine.model import Evidence, Step
from scanner.remediation.shell import PCI_ADDRESS, VFIO_DRIVER_NAME, UnsafeValue, quote

VFIO_DRIVER = "vfio-pci"
#: vendor:device as the kernel's ``ids=`` parameter takes it.
PCI_IDS = lazy_compile(r"^[0-9a-f]{4}:[0-9a-f]{4}$")


def sysfs_device(address: str) -> str:
    return f"/sys/bus/pci/devices/{quote(address, PCI_ADDRESS, 'PCI address')}"


def host_critical(facts, address: str) -> Optional[str]:
    """Why the host itself needs this device right now, or None.

    It carries the default route, holds a disk of a mounted filesystem (any: ``/``, ``/var``, a
    VM image store) or swap, or is the PF of a VF that does (unbinding the PF or setting its
    ``sriov_numvfs`` to 0 removes the VF). The remediation script asks the same again at run
    time (:mod:`scanner.remediation.script_guard`).
    """
    reasons = [f"it {use}: binding it to vfio-pci {harm}" for use, harm in _own_uses(facts, address)]
    for vf in facts.host_vf_parents.get(address, ()):
        reasons += [f"its VF {vf} {use}: unbinding this PF or setting its sriov_numvfs to 0 removes that VF, "
                    f"which {harm}" for use, harm in _own_uses(facts, vf)]
    return "; ".join(reasons) or None


def _own_uses(facts, address: str) -> List[Tuple[str, str]]:
    """(what the host uses the function for, what losing it does) for the function itself."""
    uses = []
    iface = facts.default_route_devices.get(address)
    if iface:
        uses.append((f"carries the host's default route ({iface})", "cuts this host's network"))
    disk = facts.host_disk_devices.get(address)
    if disk:
        what = "the host's root filesystem" if address in facts.root_fs_devices else "storage the running host uses"
        uses.append((f"holds {what} ({disk})", "takes the disk away from the running host"))
    return uses


def critical_evidence(facts, address: str) -> List[Evidence]:
    """Where :func:`host_critical` read it: the route tables, the mount and swap tables, a VF's physfn link."""
    evidence = _own_evidence(facts, address)
    for vf in facts.host_vf_parents.get(address, ()):
        evidence.append(Evidence(f"/sys/bus/pci/devices/{vf}/physfn", address))
        evidence += _own_evidence(facts, vf)
    return evidence


def _own_evidence(facts, address: str) -> List[Evidence]:
    evidence = []
    if address in facts.default_route_devices:
        evidence.append(Evidence("/proc/net/route, /proc/net/ipv6_route",
                                 f"default route via {facts.default_route_devices[address]}"))
    if address in facts.host_disk_devices:
        evidence.append(Evidence("/proc/self/mountinfo, /proc/swaps", facts.host_disk_devices[address]))
    return evidence


def vfio_pci_loaded(facts) -> bool:
    return facts.modules.state("vfio_pci") in ("loaded", "builtin")


def vfio_choice(facts, device: PciDevice) -> VfioChoice:
    """The vfio driver to bind ``device`` to, now and at boot: the one it is on when that is already a
    vfio driver (it works; keep it), else vfio-pci or the variant libvirt would pick."""
    if device.driver and is_vfio_driver(device.driver) and (device.driver == PLAIN or VARIANT.match(device.driver)):
        return VfioChoice(device.driver, None, f"/sys/bus/pci/devices/{device.address}/driver")
    return facts.vfio_driver_for(device)


def vf_vfio_choice(facts, pf: PciDevice) -> VfioChoice:
    """The vfio driver for the VFs a PF is about to get: chosen from the VF device ID the PF announces
    (``sriov_vf_device``), its vendor and class, as for a device that exists (a ConnectX PF's VFs:
    mlx5_vfio_pci where the kernel has it). No subsystem IDs are known yet: an alias that names them
    does not match, and the VFs get vfio-pci."""
    if not pf.sriov_vf_device:
        return VfioChoice(PLAIN, None, f"/sys/bus/pci/devices/{pf.address}/sriov_vf_device")
    vf = PciDevice(address=pf.address, vendor=pf.vendor, device=pf.sriov_vf_device, pci_class=pf.pci_class)
    return facts.vfio_driver_for(vf)


def choice_evidence(choice: VfioChoice) -> List[Evidence]:
    """Why this driver: the modules.alias line that chose a variant, or why none could be looked for."""
    if choice.note:
        return [Evidence(choice.source, f"<{choice.note}>")]
    if choice.is_variant and choice.alias:
        return [Evidence(choice.source, f"alias {choice.alias} {choice.module} (the best vfio_pci: match, "
                                        "as libvirt picks it)")]
    return []


def _variant_words(choice: VfioChoice) -> str:
    return (f" (the vfio-pci variant driver this kernel has for it, as libvirt picks from modules.alias)"
            if choice.is_variant else "")


def driver_loaded(facts, choice: VfioChoice) -> bool:
    return facts.modules.state(choice.module) in ("loaded", "builtin")


def label(device: Optional[PciDevice], address: str) -> str:
    """``0000:01:00.1 (10de:1aef Audio device, driver snd_hda_intel)``."""
    if device is None:
        return f"{address} (not listed in /sys/bus/pci/devices)"
    driver = f"driver {device.driver}" if device.driver else "no driver"
    return f"{address} ({device.ids} {class_name(device.pci_class)}, {driver})"


def runtime_commands(facts, device: PciDevice, choice: Optional[VfioChoice] = None) -> Tuple[List[str], List[str]]:
    """(commands, undo) binding ``device`` to its vfio driver now, for that device only."""
    choice = choice or vfio_choice(facts, device)
    driver = quote(choice.driver, VFIO_DRIVER_NAME, "vfio driver")
    addr = quote(device.address, PCI_ADDRESS, "PCI address")
    base = sysfs_device(device.address)
    commands = []
    if not driver_loaded(facts, choice):
        commands.append(f"modprobe {choice.driver}")
    commands.append(f"echo {driver} > {base}/driver_override")
    if device.driver:
        commands.append(f"echo {addr} > {base}/driver/unbind")
    commands.append(f"echo {addr} > /sys/bus/pci/drivers_probe")
    undo = [f"echo > {base}/driver_override",
            f"echo {addr} > {base}/driver/unbind",
            f"echo {addr} > /sys/bus/pci/drivers_probe"]
    return commands, undo


def bind_now_step(facts, device: PciDevice, role: Optional[str] = None, for_target: Optional[str] = None,
                  summary: Optional[str] = None) -> Step:
    """The runtime binding of one device (phase ``binding``); manual and empty when host-critical."""
    critical = host_critical(facts, device.address)
    choice = vfio_choice(facts, device)
    action = {"kind": "bind-vfio", "address": device.address, "ids": scanned_ids(device), "driver": choice.driver,
              "current_driver": device.driver, "driver_override": device.driver_override, "group": device.iommu_group,
              "load_module": not driver_loaded(facts, choice), "host_critical": critical,
              "role": role, "for_target": for_target}
    if critical:
        return Step(summary=f"Do NOT bind {device.address} to vfio-pci on this host: {critical}. Move the host's "
                            "network or root filesystem to another device first, or use another device",
                    phase="binding", manual=True, action=action)
    commands, undo = runtime_commands(facts, device, choice)
    if summary is None:
        now = f"it is on {device.driver}" if device.driver else "it has no driver"
        summary = (f"Bind {device.address} to {choice.driver} now{_variant_words(choice)} ({now}; driver_override "
                   "for this device only, lost at reboot)")
    return Step(summary=summary, phase="binding", commands=commands, undo=undo, action=action)


def scanned_ids(device: PciDevice) -> Optional[str]:
    """The device's vendor:device as scanned, which the script checks again before it touches the address."""
    return device.ids if PCI_IDS.match(device.ids or "") else None


def host_needed(facts) -> frozenset:
    """Every PCI function :func:`host_critical` names (its default route, its disks, the PFs of such VFs)."""
    return frozenset(facts.default_route_devices) | frozenset(facts.host_disk_devices) | frozenset(facts.host_vf_parents)


__all__ = ["VFIO_DRIVER", "host_critical", "critical_evidence", "host_needed", "bind_now_step", "vfio_choice",
           "vf_vfio_choice", "choice_evidence", "runtime_commands", "scanned_ids", "label", "UnsafeValue"]
