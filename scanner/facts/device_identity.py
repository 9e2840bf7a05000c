"""What a PCI device is, as every output names it: ids, class, driver, and pci.ids names.

One shape for ``groups --format json`` (each member), the report's ``devices`` (each target, so
that the table's device headers, the NFD labels and the HTML report can name a device without
reading the host again) and ``diff``.
"""

from __future__ import annotations


def device_entry(facts, address: str) -> dict:
    """One device as the JSON shows it; a group member sysfs does not list keeps only its address."""
    from scanner.facts.pci import class_name

    device = facts.pci.fields.get(address)  # only what is shown: ids, class, driver
    ids = facts.pci_ids
    vendor = device.vendor if device else None
    dev = device.device if device else None
    return {
        "address": address,
        "vendor": vendor,
        "device": dev,
        "class": device.pci_class if device else None,
        "class_name": class_name(device.pci_class if device else None, base_fallback=True),
        "vendor_name": ids.vendor_name(vendor),
        "device_name": ids.device_name(vendor, dev),
        "driver": device.driver if device else None,
        "bridge": bool(device and device.is_bridge),
    }
