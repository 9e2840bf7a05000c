"""The PCI tree: which bridge each function sits under, for the HTML report's picture.

sysfs lays devices out as the bus does: ``/sys/bus/pci/devices/0000:01:00.0`` links to
``/sys/devices/pci0000:00/0000:00:01.0/0000:01:00.0``, so a function's parent is the PCI address
before its own in that path (none for a function on a root bus). Read through the Host layer
(``resolve``), as every other fact; a link that cannot be resolved leaves the function at the top
of the picture rather than guessing a parent.
"""

from __future__ import annotations

from typing import Dict, List, Optional

from scanner.facts.pci import ADDRESS


def pci_parents(facts) -> Dict[str, Optional[str]]:
    """{address: the bridge it sits under, or None} for every function sysfs lists."""
    parents: Dict[str, Optional[str]] = {}
    for address in sorted(facts.pci):
        got = facts.host.resolve(f"/sys/bus/pci/devices/{address}")
        chain = [part for part in got.text.split("/") if ADDRESS.match(part)] if got.ok else []
        parent = chain[-2] if len(chain) >= 2 and chain[-1] == address else None
        parents[address] = parent if parent in facts.pci else None
    return parents


def pci_tree(facts) -> List[dict]:
    """Every function as the report names it (scanner/facts/device_identity.py), with its ``parent`` and
    ``group``, in address order: what an HTML picture of the host is drawn from."""
    from scanner.facts.device_identity import device_entry

    parents = pci_parents(facts)
    tree = []
    for address, parent in parents.items():
        entry = device_entry(facts, address)
        entry["parent"] = parent
        entry["group"] = facts.pci[address].iommu_group
        tree.append(entry)
    return tree
