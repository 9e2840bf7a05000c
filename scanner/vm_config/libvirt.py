"""libvirt ``<hostdev>`` elements, to paste into a domain's ``<devices>`` (``virsh edit VM``).

``managed='yes'`` lets libvirt detach each device from its host driver when the VM starts and give
it back when it stops; ``managed='no'`` keeps the binding the host has (vfio-pci at boot). A
vfio-pci variant driver is named with ``<driver name='vfio' model='...'/>`` (libvirt 10 and later).
Each host slot gets a ``pcie-root-port`` controller of its own (indexes from 16 on, clear of the
ones libvirt numbers itself) and its functions the guest addresses of one slot, ``multifunction='on'``
on function 0. A 64-bit window larger than QEMU's default is asked for on the ``pcie-root``.
"""

from __future__ import annotations

from typing import List

from scanner.vm_config.plan import Plan

FIRST_INDEX = 16


def _address(address: str) -> str:
    domain, bus, rest = address.split(":")
    slot, function = rest.split(".")
    return f"domain='0x{domain}' bus='0x{bus}' slot='0x{slot}' function='0x{function}'"


def render(plan: Plan) -> str:
    managed = "yes" if plan.managed else "no"
    lines: List[str] = [f"<!-- vfio-scan: paste into <devices> of the domain (virsh edit VM); {plan.machine} machine -->"]
    if plan.hole64:
        lines += ["<controller type='pci' index='0' model='pcie-root'>",
                  f"  <pcihole64 unit='KiB'>{plan.hole64 >> 10}</pcihole64>",
                  "</controller>"]
    for number, slot in enumerate(plan.slots):
        index = FIRST_INDEX + number
        lines.append(f"<controller type='pci' index='{index}' model='pcie-root-port'/>")
        for function, device in enumerate(slot):
            model = "" if device.vfio_driver == "vfio-pci" else f" model='{device.vfio_driver}'"
            multi = " multifunction='on'" if function == 0 and len(slot) > 1 else ""
            lines += [f"<hostdev mode='subsystem' type='pci' managed='{managed}'>",
                      f"  <driver name='vfio'{model}/>",
                      "  <source>",
                      f"    <address {_address(device.address)}/>",
                      "  </source>",
                      f"  <address type='pci' domain='0x0000' bus='{index:#04x}' slot='0x00' "
                      f"function='{function:#x}'{multi}/>",
                      "</hostdev>"]
    return "\n".join(lines)
