"""VFIO-014 device-reset: the device has a reset method.

What: ``reset_method`` lists at least one method the kernel can use to reset the device
(``flr`` function-level reset, ``af_flr``, ``pm`` D3hot->D0, ``bus`` secondary bus reset,
``acpi``, ``device_specific``, ``cxl_bus``), tried in that file's order. On kernels before 5.15,
which have no ``reset_method`` file, the older ``reset`` file tells the same.

Why: vfio-pci resets a device when a VM opens it, reboots and releases it. A device it cannot
reset keeps the state the last guest left: it may hang or show garbage after a VM reboot, or only
work again after a host reboot — the "reset bug" of many AMD GPUs. Since 5.15 the kernel hides
``reset_method`` (and ``reset``) on devices without any method; an *empty* ``reset_method`` means
someone disabled every method by writing to it (the kernel logs "All device reset methods
disabled by user").

How: ``/sys/bus/pci/devices/<addr>/reset_method`` (present and non-empty: pass; empty: warn;
absent: the ``reset`` file decides, present: pass, absent: warn).

Fix: ``echo default > reset_method`` restores the kernel's methods after they were disabled. AMD
GPUs: the gnif/vendor-reset DKMS module, loaded at boot, then ``echo device_specific >
reset_method``. Otherwise a firmware update of the device, or a host reboot between guests.
"""

import re

from scanner import hookimpl
from scanner.engine.model import Evidence, Finding, Rule, Step

RESET_BUG = ("vfio-pci cannot reset it between guests, so it may not survive a VM reboot or shutdown "
             "(the \"reset bug\")")
#: What the kernel logs after a device's address when its reset_method is emptied (a literal, no pattern).
RESET_DISABLED = ": All device reset methods disabled by user"


@hookimpl
def vfio_scan_register_rules(register):
    register(Rule(id="VFIO-014", name="device-reset", scope="device", severity="medium",
                  title="Device can be reset", check=check, docs=__doc__))


def _path(address: str, name: str) -> str:
    from scanner.remediation.shell import PCI_ADDRESS, quote

    return f"/sys/bus/pci/devices/{quote(address, PCI_ADDRESS, 'PCI address')}/{name}"


def is_amd_gpu(device) -> bool:
    return device.vendor == "1002" and bool(device.pci_class) and device.pci_class.startswith("03")


def wants_vendor_reset(device) -> bool:
    """An AMD GPU this rule finds no reset method for: the one it sends to gnif/vendor-reset, an out-of-tree
    module (VFIO-023 checks that kernel lockdown lets it load)."""
    can_reset = bool(device.reset_method) or (device.reset_method is None and device.has_reset)
    return is_amd_gpu(device) and not can_reset


def _steps(device, empty: bool):
    from scanner.remediation.binding import scanned_ids

    address = device.address
    steps = []
    if empty:
        steps.append(Step(
            summary=(f"Restore the kernel's reset methods for {address}: an empty reset_method means every method "
                     "was disabled by a write (a script or udev rule); if it stays empty after this, the device "
                     "has none"),
            phase="binding", commands=[f"echo default > {_path(address, 'reset_method')}"],
            action={"kind": "reset-method", "address": address, "ids": scanned_ids(device), "method": "default"}))
    if is_amd_gpu(device):
        steps.append(Step(
            summary=("AMD GPUs need the gnif/vendor-reset module: install it with DKMS "
                     "(https://github.com/gnif/vendor-reset) and load it at every boot "
                     "(/etc/modules-load.d/vendor-reset.conf), before vfio-pci takes the GPU"),
            phase="modules", manual=True, persistent=True,
            action={"kind": "vendor-reset", "address": address}))
        if device.reset_method is not None:
            steps.append(Step(
                summary=(f"Then select vendor-reset's reset for {address} (again after every boot, e.g. from a "
                         "systemd unit)"),
                phase="binding", commands=[f"echo device_specific > {_path(address, 'reset_method')}"],
                action={"kind": "reset-method", "address": address, "ids": scanned_ids(device),
                        "method": "device_specific"}))
    steps.append(Step(
        summary=("Update the device's firmware (some cards gain a function-level reset), or plan around it: shut "
                 "the guest down cleanly and reboot the host before giving the device to a VM again"),
        phase="firmware", manual=True))
    return steps


def check(facts, scan):
    from scanner.facts.pci import describe

    for target in scan.targets:
        device = facts.pci[target.address]
        base = f"/sys/bus/pci/devices/{target.address}"
        unreadable = device.unreadable("reset_method")
        if unreadable:
            yield Finding.skip(f"cannot read reset_method ({'; '.join(unreadable)})", subject=target.address)
            continue
        if device.reset_method:
            methods = ", ".join(device.reset_method)
            yield Finding.passed(f"reset methods: {methods} (tried in this order)", subject=target.address,
                                 observed=f"reset_method: {' '.join(device.reset_method)}",
                                 expected="at least one reset method",
                                 evidence=[Evidence(f"{base}/reset_method", " ".join(device.reset_method))])
            continue
        if device.reset_method == ():
            said = re.compile(re.escape(target.address) + RESET_DISABLED)
            disabled = [line for line in facts.kernel_log.with_text(RESET_DISABLED) if said.search(line)]
            evidence = [Evidence(f"{base}/reset_method", "(empty)")]
            evidence += [Evidence("kernel log", line) for line in disabled[:1]]
            yield Finding.warn(f"reset_method is empty: every reset method is disabled; {RESET_BUG}",
                               subject=target.address, observed="reset_method: (empty)",
                               expected="at least one reset method", evidence=evidence,
                               remediation=_steps(device, empty=True))
            continue
        if device.has_reset:
            yield Finding.passed("the device can be reset (reset file present; this kernel has no reset_method "
                                 "file, before 5.15, so the method is not shown)", subject=target.address,
                                 observed="reset: present, reset_method: absent", expected="a reset method",
                                 evidence=[Evidence(f"{base}/reset", "present")])
            continue
        yield Finding.warn(f"no reset method (neither reset_method nor reset exists for {describe(device)}); "
                           f"{RESET_BUG}", subject=target.address, observed="reset_method: absent, reset: absent",
                           expected="at least one reset method",
                           evidence=[Evidence(f"{base}/reset_method", "<missing>"),
                                     Evidence(f"{base}/reset", "<missing>")],
                           remediation=_steps(device, empty=False))
