"""The ``groups`` document: every IOMMU group with its members and a passthrough verdict.

What ``vfio-scan groups`` prints (as a table or as JSON, ``schemas/groups.schema.json``) and what
``vfio-scan diff`` compares for a snapshot: built from the facts only, no rule runs.
"""

from __future__ import annotations

from scanner.facts.device_identity import device_entry

SCHEMA_VERSION = "1.0"
NOIOMMU_VERDICT = "vfio-noiommu fake group: no DMA isolation, never fit for a VM (see VFIO-005)"


def group_verdict(facts, group) -> str:
    from scanner.facts.groups import classify, verdict

    if group.devices_reason:
        return f"devices unreadable ({group.devices_reason})"
    if group.is_noiommu:
        return NOIOMMU_VERDICT
    if not group.devices:
        return "no devices"
    return verdict(classify(facts, group.number, devices=facts.pci.fields))


def _read_device_by_device(facts) -> None:
    """Read what the document shows of every device (ids, class, driver, whether a bridge), one
    device after the other in the order of their listing.

    Why: the document asks for them group by group, after the names from pci.ids have asked for
    every device's ids; each device's directory would be opened twice, the second time in group
    order, which is no order on disk. The same files are read either way, each once.
    """
    for device in facts.pci.fields.values():
        device.vendor, device.device, device.pci_class, device.driver, device.is_bridge


def groups_document(facts) -> dict:
    """The whole answer as a JSON-ready dict (the table is rendered from it too)."""
    from scanner import __version__
    from scanner.engine.scanning import host_info

    _read_device_by_device(facts)
    groups, grouped = [], set()
    for number, group in facts.iommu.groups.items():  # already in numeric order
        if not (number.isascii() and number.isdigit() and len(number) <= 20):  # "²" is isdigit(), yet no int
            continue  # the kernel names groups by number only; anything else is not a group
        grouped.update(group.devices)
        groups.append({
            "group": int(number),
            "type": group.type,
            "verdict": group_verdict(facts, group),
            "devices": [device_entry(facts, a) for a in group.devices],
        })
    return {
        "schema_version": SCHEMA_VERSION,
        "tool": {"name": "vfio-scan", "version": __version__},
        "host": host_info(facts),
        "pci_ids": facts.pci_ids.source,
        "groups": groups,
        "ungrouped": [device_entry(facts, a) for a in sorted(facts.pci) if a not in grouped],
    }
