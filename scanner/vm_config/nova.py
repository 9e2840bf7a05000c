"""OpenStack Nova: ``[pci] device_spec`` and ``alias`` for nova.conf, and the flavor property.

``device_spec`` (nova-compute) names each device by address and vendor:device; ``alias``
(nova-api and nova-compute) names what a flavor asks for, with ``device_type`` type-PCI, type-PF
(an SR-IOV physical function) or type-VF. Nova's libvirt driver detaches the devices itself.
"""

from __future__ import annotations

import json
import re
from typing import Dict

from scanner.vm_config.plan import PassedDevice, Plan


def alias_name(device: PassedDevice) -> str:
    name = re.sub(r"[^a-z0-9]+", "-", (device.name or "").lower()).strip("-")[:40]
    return name or f"pci-{device.vendor}-{device.device}"


def render(plan: Plan) -> str:
    lines = ["# nova.conf of the compute node", "[pci]"]
    for device in plan.devices:
        spec = {"address": device.address, "vendor_id": device.vendor, "product_id": device.device}
        lines.append("device_spec = " + json.dumps(spec))
    aliases: Dict[str, PassedDevice] = {}
    for device in plan.devices:
        aliases.setdefault(f"{device.ids}/{device.kind}", device)
    for device in aliases.values():
        alias = {"name": alias_name(device), "vendor_id": device.vendor, "product_id": device.device,
                 "device_type": device.kind}
        lines.append("alias = " + json.dumps(alias))
    counts: Dict[str, int] = {}
    for device in plan.devices:
        counts[alias_name(device)] = counts.get(alias_name(device), 0) + 1
    wanted = ",".join(f"{name}:{count}" for name, count in counts.items())
    lines += ["", "# the flavor that asks for them (the alias lines also go to nova-api's nova.conf)",
              f'# openstack flavor set FLAVOR --property "pci_passthrough:alias"="{wanted}"']
    return "\n".join(lines)
