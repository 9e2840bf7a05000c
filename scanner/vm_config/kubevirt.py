"""KubeVirt: ``permittedHostDevices.pciHostDevices`` of the KubeVirt CR, and the VM's hostDevices.

KubeVirt's device plugin hands out devices bound to vfio-pci on the node, by vendor:device
(``pciVendorSelector``, upper-case hex as its docs write it) under a ``resourceName`` of the form
``vendor.domain/NAME``: the vendor's domain where known, the pci.ids name upper-cased with
underscores. One entry per vendor:device, however many devices share it.
"""

from __future__ import annotations

import re
from typing import Dict

from scanner.vm_config.plan import PassedDevice, Plan

VENDOR_DOMAINS = {"10de": "nvidia.com", "1002": "amd.com", "8086": "intel.com", "15b3": "mellanox.com",
                  "14e4": "broadcom.com", "1077": "qlogic.com", "144d": "samsung.com", "1af4": "redhat.com"}


def resource_name(device: PassedDevice) -> str:
    domain = VENDOR_DOMAINS.get(device.vendor, "devices.kubevirt.io")
    name = re.sub(r"[^A-Za-z0-9]+", "_", device.name or "").strip("_").upper()[:60]
    return f"{domain}/{name or device.vendor.upper() + '_' + device.device.upper()}"


def render(plan: Plan) -> str:
    unique: Dict[str, PassedDevice] = {}
    for device in plan.devices:
        unique.setdefault(device.ids, device)
    lines = ["# kubectl edit kubevirt kubevirt -n kubevirt: under spec.configuration",
             "permittedHostDevices:", "  pciHostDevices:"]
    for ids, device in unique.items():
        lines += [f'  - pciVendorSelector: "{ids.upper()}"', f'    resourceName: "{resource_name(device)}"']
    lines += ["", "# in the VirtualMachine: spec.template.spec.domain.devices", "hostDevices:"]
    for number, device in enumerate(plan.devices):
        lines += [f"- name: hostdev{number}", f'  deviceName: "{resource_name(device)}"']
    return "\n".join(lines)
