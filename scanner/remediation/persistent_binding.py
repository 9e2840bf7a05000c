"""Remediation steps that keep one PCI function on its vfio driver at every boot.

Used by VFIO-013 (driver-binding), VFIO-012 (group-isolation) and VFIO-017 (binding-persistence), after
the runtime binding (scanner/remediation/binding.py). Each step's ``action`` in machine form, for the
remediation-script export:

``{"kind": "driverctl", "address", "driver"}``
    Persistent, per device, where the host has driverctl.
``{"kind": "vfio-ids", "ids", "softdeps", "file", "lines", "initramfs"}``
    Persistent by vendor:device ids in one ``/etc/modprobe.d/vfio.conf`` (written whole, for every
    target of the scan whose ids are safe to claim), then the initramfs rebuild; requires a reboot.
    The same step is in the finding of each target it covers; it does not list them all itself,
    which made a report of N targets N² addresses long (1.7 GB of JSON for 10,000 VFs).
``{"kind": "udev-driver-override", "address", "driver", "file", "rule"}``
    Persistent, per device, when ``ids=`` would also take a device that stays on the host, or
    when the driver is a variant (only vfio-pci itself takes ``ids=``).
"""

from __future__ import annotations

import shlex
from typing import Collection, Dict, List, Optional, Tuple

from scanner.remediation.binding import PCI_IDS, host_critical, host_needed, label, scanned_ids, vfio_choice
from scanner.remediation.confedit import EditError, edit_commands, file_state, merge_vfio_ids, own_rule
from scanner.facts.pci import PciDevice, is_vfio_driver
from scanner.facts.variants import VfioChoice
from scanner.engine.model import Step
from scanner.remediation.remedies import cmdline_steps
from scanner.remediation.shell import MODULE_NAME, PCI_ADDRESS, VFIO_DRIVER_NAME, checked, quote

MODPROBE_FILE = "/etc/modprobe.d/vfio.conf"
UDEV_DIR = "/etc/udev/rules.d"
INITRAMFS_COMMANDS = {
    "update-initramfs": "update-initramfs -u -k all",
    "dracut": "dracut -f --regenerate-all",
    "mkinitcpio": "mkinitcpio -P",
}


def _kept_on_host(facts, device: PciDevice, targets: Collection[str]) -> List[PciDevice]:
    """Devices with ``device``'s ids that stay on the host, from the index (not a scan of every device
    for every target); ``targets`` best as the scan's ``target_set``, which is not copied."""
    wanted = targets if isinstance(targets, frozenset) else frozenset(targets)
    return facts.pci_index.kept_on_host(device.ids, _leaving_host(facts, wanted))


def _leaving_host(facts, targets: frozenset) -> frozenset:
    """The targets that can leave the host: a target the host runs on stays, and ``ids=`` at boot
    would take it all the same. Kept per target set, which a scan asks about once per target."""
    memo = facts.__dict__.setdefault("_leaving_host", {})
    known = memo.get(id(targets))
    if known is not None and known[0] is targets:
        return known[1]
    needed = host_needed(facts)
    leaving = targets - needed if needed & targets else targets
    memo.clear()
    memo[id(targets)] = (targets, leaving)
    return leaving


def same_ids_on_host(facts, device: PciDevice, targets: Collection[str]) -> List[PciDevice]:
    """Other devices with the same vendor:device that stay on the host (not targets, not on vfio)."""
    return [d for d in _kept_on_host(facts, device, targets) if d.address != device.address]


def ids_safe(facts, device: PciDevice, targets: Collection[str]) -> bool:
    """Can ``ids=`` claim this device without taking a device the host keeps?"""
    return bool(PCI_IDS.match(device.ids)) and not any(
        d.address != device.address for d in _kept_on_host(facts, device, targets))


def softdep_module(facts, driver: Optional[str]) -> Tuple[Optional[str], str]:
    """(module to order after vfio-pci, note) for a host driver; None when no softdep can help."""
    if not driver or is_vfio_driver(driver) or driver == "pci-stub":
        return None, ""
    module = facts.driver_module(driver) or driver.replace("-", "_")
    if not MODULE_NAME.match(module):
        return None, f"host driver {driver!r} cannot be named in a softdep line"
    if facts.modules.state(module) == "builtin":
        return None, (f"{driver} is built into the kernel, so vfio-pci cannot be loaded before it: "
                      "ids= alone may lose the race")
    return module, ""


def persistent_steps(facts, scan, device: PciDevice) -> List[Step]:
    """Keep ``device`` on vfio-pci at every boot: driverctl, else ids= + softdep, else a udev rule."""
    address = device.address
    addr = quote(address, PCI_ADDRESS, "PCI address")
    targets = scan.target_set
    choice = vfio_choice(facts, device)
    driver = quote(choice.driver, VFIO_DRIVER_NAME, "vfio driver")
    if facts.has_tool("driverctl"):
        return [Step(summary=f"Keep {address} on {choice.driver} at every boot with driverctl (per device; it also "
                             "re-binds the device now)",
                     phase="binding", persistent=True,
                     commands=[f"driverctl set-override {addr} {driver}"],
                     undo=[f"driverctl unset-override {addr}"],
                     action={"kind": "driverctl", "address": address, "ids": scanned_ids(device),
                             "driver": choice.driver})]
    if choice.is_variant or not ids_safe(facts, device, targets):
        return [udev_step(facts, device, targets, choice)]
    return list(_per_scan(facts, scan, "boot-steps", lambda: tuple(_boot_steps(facts, scan))))


def _per_scan(facts, scan, name: str, make):
    """``make()``, made once per scan and host: what is the same for every target of a scan is not
    worked out again for each of its (maybe thousands of) targets. The result is shared: never mutate it."""
    key = (name, id(facts))
    kept = scan.memo.get(key)
    if kept is not None and kept[0] is facts:
        return kept[1]
    made = make()
    scan.memo[key] = (facts, made)
    return made


def _boot_steps(facts, scan) -> List[Step]:
    """``ids=`` + softdep in one modprobe.d file (or on the command line when vfio-pci is built in)
    for every target ``ids=`` may claim. The same steps for each of them, hence made once
    (:func:`_per_scan`): one action a script export sees once, not thousands of equal ones."""
    ids, softdeps, notes = boot_ids(facts, scan)
    if facts.modules.state("vfio_pci") == "builtin":
        words = ",".join(ids)
        return cmdline_steps(facts.boot, add=[f"vfio-pci.ids={words}"],
                             why=f"vfio-pci is built into this kernel, so it takes its ids from the command line; "
                                 f"keeps {', '.join(ids)} on vfio-pci at boot")
    lines = [f"options vfio-pci ids={','.join(ids)}"] + [f"softdep {m} pre: vfio-pci" for m in softdeps]
    tool = facts.initramfs_tool
    rebuild = INITRAMFS_COMMANDS.get(tool or "")
    files = [file_state(*f) for f in facts.modprobe_files]
    try:
        path, changes = merge_vfio_ids(files, ids, softdeps, default_path=MODPROBE_FILE)
    except EditError as exc:
        return [Step(summary=f"Keep {', '.join(ids)} on vfio-pci at every boot ({' / '.join(lines)} in /etc/modprobe.d), "
                             f"by hand: {exc}", phase="binding", persistent=True, requires_reboot=True, manual=True)]
    old = {f["path"]: f["text"] for f in files}
    commands = [c for p, text in changes.items() for c in edit_commands(p, old.get(p), text)]
    undo = [f"cp -p {shlex.quote(p)}.vfio-scan.bak {shlex.quote(p)}" if old.get(p) is not None else f"rm -f {p}"
            for p in changes]
    if rebuild:
        commands.append(rebuild)
        undo.append(rebuild)
    where = path if path == MODPROBE_FILE else f"{path}, which already holds the vfio-pci ids= that takes effect"
    summary = (f"Keep {', '.join(ids)} on vfio-pci at every boot: {' / '.join(lines)} in {where} "
               f"(one line for every device this scan passes through, sibling functions included; the file's other lines stay)")
    summary += f", then {rebuild} and reboot" if rebuild else \
        ", then rebuild the initramfs with your distribution's tool (none detected) and reboot"
    if notes:
        summary += "; " + "; ".join(notes)
    return [Step(summary=summary, phase="binding", persistent=True, requires_reboot=True,
                 commands=commands, undo=undo,
                 action={"kind": "vfio-ids", "ids": ids, "softdeps": softdeps, "file": MODPROBE_FILE,
                         "lines": lines, "initramfs": tool, "files": files})]


def boot_ids(facts, scan) -> Tuple[List[str], List[str], List[str]]:
    """(ids, softdep modules, notes) for the one modprobe.d file shared by every target of the scan
    (made once per scan, :func:`_per_scan`)."""
    ids, softdeps, notes = _per_scan(facts, scan, "boot-plan", lambda: _make_boot_plan(facts, scan))
    return list(ids), list(softdeps), list(notes)


def _make_boot_plan(facts, scan) -> Tuple[List[str], List[str], List[str]]:
    targets = scan.target_set
    ids: Dict[str, None] = {}
    softdeps: Dict[str, None] = {}
    notes: List[str] = []
    softdep_of: Dict[Optional[str], Tuple[Optional[str], str]] = {}  # thousands of VFs, a few drivers
    for address in passthrough_functions(facts, scan):
        device = facts.pci.get(address)  # a candidate: safe ids, not needed by the host itself
        if device is None or device.is_bridge or not ids_safe(facts, device, targets) \
                or host_critical(facts, address) or vfio_choice(facts, device).is_variant:
            continue  # a variant driver has no ids=: such a device gets its own udev rule
        ids[device.ids] = None
        if device.driver not in softdep_of:
            softdep_of[device.driver] = softdep_module(facts, device.driver)
        module, note = softdep_of[device.driver]
        if module:
            softdeps[module] = None
        if note and note not in notes:
            notes.append(note)
    return list(ids), sorted(softdeps), notes


def passthrough_functions(facts, scan) -> List[str]:
    """Every function that goes to a VM: the targets, and the sibling functions of their slots that share
    their IOMMU group (a GPU's HDMI audio goes with the GPU, and must stay off host drivers at boot too).
    Not the siblings in a group the host keeps a member of (its default-route NIC beside a chipset's
    audio and SMBus): that group never goes to a VM (VFIO-012), and claiming them would only take the
    host's SMBus at every boot."""
    found: Dict[str, None] = {}
    for address in (t.address for t in scan.targets if t.for_passthrough):
        found[address] = None
        device = facts.pci.get(address)
        if device is None or not device.iommu_group or host_critical(facts, address):
            continue
        slot = address.rsplit(".", 1)[0]
        members = facts.devices_in_group(device.iommu_group)
        if any(member != address and host_critical(facts, member) for member in members):
            continue  # the host keeps a member: the group never goes to a VM, and its siblings stay too
        for member in members:
            other = facts.pci.get(member)
            # a chipset's bridges (ISA/LPC, host: class 06) stay with the host whatever the group says
            if member.rsplit(".", 1)[0] == slot and other is not None and not other.is_bridge \
                    and not (other.pci_class or "").startswith("06"):
                found.setdefault(member, None)
    return list(found)


def udev_file(address: str) -> str:
    checked(address, PCI_ADDRESS, "PCI address")
    return f"{UDEV_DIR}/70-vfio-pci-{address.replace(':', '-')}.rules"


def udev_rule(address: str, driver: str) -> str:
    """The one rule that sets a device's driver_override at boot and loads the driver's module."""
    checked(address, PCI_ADDRESS, "PCI address")
    checked(driver, VFIO_DRIVER_NAME, "vfio driver")
    return (f'ACTION=="add", SUBSYSTEM=="pci", KERNEL=="{address}", ATTR{{driver_override}}="{driver}", '
            f'RUN{{builtin}}+="kmod load {driver}"')


def udev_step(facts, device: PciDevice, targets: Collection[str], choice: Optional[VfioChoice] = None) -> Step:
    """A per-device udev rule setting driver_override at boot (when ``ids=`` would take a twin, or
    the driver is a variant, which has no ``ids=``)."""
    address = device.address
    choice = choice or vfio_choice(facts, device)
    rule = udev_rule(address, choice.driver)
    path = udev_file(address)
    twins = same_ids_on_host(facts, device, targets)
    if choice.is_variant:
        why = f"{choice.driver} is a variant driver of vfio-pci, which takes no ids=, so bind by address"
    elif twins:
        why = (f"ids={device.ids} would also take {', '.join(label(t, t.address) for t in twins)}, which stays on "
               "the host, so bind by address, never by ids")
    else:
        why = f"its ids ({device.ids}) cannot be used in ids=, so bind by address"
    state = file_state(*facts.etc_file(path))
    new = own_rule(state["text"], rule, f'KERNEL=="{address}"')
    return Step(summary=f"Keep {address} on {choice.driver} at every boot: {why}; a udev rule sets its driver_override "
                        f"when it appears ({path}); if its host driver still takes it first at boot, install "
                        "driverctl, which also re-binds it",
                phase="binding", persistent=True,
                commands=edit_commands(path, state["text"], new), undo=[f"rm -f {path}"],
                action={"kind": "udev-driver-override", "address": address, "driver": choice.driver, "file": path,
                        "rule": rule,
                        "twins": [t.address for t in twins], "files": [state]})


__all__ = ["MODPROBE_FILE", "INITRAMFS_COMMANDS", "persistent_steps", "same_ids_on_host", "ids_safe", "boot_ids",
           "passthrough_functions", "udev_rule", "udev_step"]
