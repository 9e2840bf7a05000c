"""Proxmox VE: ``hostpciN`` lines for the VM's config, and a cluster PCI resource mapping.

A host slot whose every function goes to the VM is passed whole (``hostpci0: 0000:01:00``: all
functions, kept together as one multifunction device); otherwise each function on its own line.
``pcie=1`` needs the q35 machine (``machine: q35``). Proxmox detaches the devices itself at VM
start. The mapping (``/etc/pve/mapping/pci.cfg``, Datacenter > Resource Mappings) names each
device by ``id``, ``iommugroup``, ``path`` and ``subsystem-id`` for this node, so that a VM can
use ``hostpci0: mapping=NAME`` and Proxmox refuses to start it when the device changed.
"""

from __future__ import annotations

import re
from typing import List, Tuple

from scanner.vm_config.plan import PassedDevice, Plan

NODE_NAME = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\Z")


def _entries(plan: Plan) -> List[Tuple[str, PassedDevice]]:
    """(path, the device whose ids describe it): a whole slot, or each function."""
    entries = []
    for slot in plan.slots:
        if slot[0].host_slot in plan.whole_slots:
            entries.append((slot[0].host_slot, slot[0]))
        else:
            entries += [(d.address, d) for d in slot]
    return entries


def _mapping_name(path: str) -> str:
    return "pci-" + path.replace(":", "-").replace(".", "-")


def render(plan: Plan) -> str:
    node = plan.hostname.split(".")[0]
    node_known = bool(NODE_NAME.match(node))
    entries = _entries(plan)
    lines = ["# /etc/pve/qemu-server/VMID.conf (with machine: q35 for pcie=1)"]
    lines += [f"hostpci{n}: {path},pcie=1" for n, (path, _) in enumerate(entries)]
    lines += ["", "# or through a cluster resource mapping: /etc/pve/mapping/pci.cfg"
              + ("" if node_known else f" (set node= to this node's name: {node!r} is not one)")]
    for path, device in entries:
        subsystem = (f",subsystem-id={device.subsystem_vendor}:{device.subsystem_device}"
                     if device.subsystem_vendor and device.subsystem_device else "")
        lines += [_mapping_name(path),
                  f"\tmap id={device.ids},iommugroup={device.group},node={node if node_known else 'NODE'},"
                  f"path={path}{subsystem}"]
    lines += ["", "# and in the VM's config, instead of the lines above:"]
    lines += [f"hostpci{n}: mapping={_mapping_name(path)},pcie=1" for n, (path, _) in enumerate(entries)]
    return "\n".join(lines)
