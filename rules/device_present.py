"""VFIO-010 device-present: every requested target exists.

What: each ``--device`` selector (full or short address, ``vendor:device`` ids), ``--class``
prefix and ``--vfs`` physical function matches at least one PCI function of this host.

Why: a typo in an address, a card in another slot than the inventory says, or a device that
fell off the bus (link training failure, a dead card, a BIOS that hid it) all look the same
downstream: QEMU says ``vfio 0000:01:00.0: no such host device``. Better to know first.

How: the selectors are matched against ``/sys/bus/pci/devices``; each match is reported with its
ids, class and driver, each selector that matched nothing fails under its own name.

Fix: check the address (``vfio-scan groups`` lists every device), reseat the card, or check the
firmware's slot settings.
"""

from scanner import hookimpl
from scanner.engine.model import Evidence, Finding, Rule, Step


@hookimpl
def vfio_scan_register_rules(register):
    register(Rule(id="VFIO-010", name="device-present", scope="device", severity="high",
                  title="Requested device present", check=check, docs=__doc__))


def check(facts, scan):
    from scanner.facts.pci import describe
    from scanner.facts.targets import unknown_to

    listing = facts.pci_listing
    for target in scan.targets:
        device = facts.pci[target.address]
        evidence = [Evidence(f"/sys/bus/pci/devices/{target.address}", describe(device))]
        evidence += [Evidence("sysfs", note) for note in device.notes]
        extra = f"; virtual function of {device.physfn}" if device.physfn else ""
        yield Finding.passed(f"present: {describe(device)}{extra}", subject=target.address,
                             observed=f"selected by {', '.join(target.selectors)}", expected="device present",
                             evidence=evidence)
    for selector in scan.unmatched:
        subject = selector.value if selector.kind == "address" else selector.text.strip()
        if not listing.ok:
            yield Finding.skip(f"cannot list PCI devices ({listing.path}: {listing.reason})", subject=subject)
            continue
        unknown = unknown_to(facts.pci.fields, selector)
        if unknown:  # the device asked for may be one of these
            more = f" (and {len(unknown) - 1} more)" if len(unknown) > 1 else ""
            yield Finding.skip(f"no device matches {selector.text}, but the ids or class of {unknown[0]}{more} cannot "
                               "be read: it may be the one", subject=subject)
            continue
        what = {"address": "no PCI device at this address", "ids": "no PCI device with these vendor:device ids",
                "class": "no PCI device of this class", "match": "no PCI device matches"}[selector.kind]
        yield Finding.fail(f"{what} ({selector.text}); {len(facts.pci)} PCI devices on this host",
                           subject=subject, observed="no match", expected="at least one matching device",
                           evidence=[Evidence(listing.path, f"{len(facts.pci)} devices")],
                           remediation=[Step(summary="Check the selector against 'vfio-scan groups', reseat the card "
                                                     "or check the firmware's slot settings", phase="firmware",
                                             manual=True)])

