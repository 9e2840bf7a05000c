"""QEMU arguments: each host slot behind its own PCIe root port on q35, its functions together.

On q35 a passed device belongs behind a ``pcie-root-port`` (QEMU's docs/pcie.txt): plugged into
``pcie.0`` directly it is an integrated endpoint, which guest drivers of GPUs and NICs do not expect.
The functions of one host slot go to one guest slot, function by function, ``multifunction=on``
on the first, so that a GPU and its HDMI audio stay one device in the guest. On the ``pc`` machine
(i440fx, no PCIe) the slots go on ``pci.0`` from slot 0x10 on. Root ports use chassis numbers from
101 on, clear of the ones a VM definition usually has. With /dev/iommu and every device's vfio cdev,
the iommufd backend is used (``-object iommufd``); a 64-bit window larger than QEMU's default is
asked for with ``-global ...pci-hole64-size``.
"""

from __future__ import annotations

from typing import List

from scanner.facts.vm_start_hw import GIB
from scanner.vm_config.plan import Plan

FIRST_CHASSIS = 101
FIRST_PC_SLOT = 0x10
MACHINES = ("q35", "pc")


def render(plan: Plan, machine: str = "q35") -> str:
    words: List[str] = []
    backend = ""
    if plan.iommufd:
        words.append("-object iommufd,id=fd0")
        backend = ",iommufd=fd0"
    if plan.hole64:
        bridge = "q35-pcihost" if machine == "q35" else "i440FX-pcihost"
        words.append(f"-global {bridge}.pci-hole64-size={plan.hole64 // GIB}G")
    if len(plan.slots) > 255 - FIRST_CHASSIS:
        raise ValueError(f"{len(plan.slots)} slots: more than QEMU's root-port chassis numbers allow")
    for number, slot in enumerate(plan.slots, start=1):
        if machine == "q35":
            port = f"vfio-rp{number}"
            words.append(f"-device pcie-root-port,id={port},chassis={FIRST_CHASSIS + number - 1},bus=pcie.0")
            where = f"bus={port},addr=00"
        else:
            where = f"bus=pci.0,addr={FIRST_PC_SLOT + number - 1:#04x}"
        for function, device in enumerate(slot):
            multi = ",multifunction=on" if function == 0 and len(slot) > 1 else ""
            words.append(f"-device vfio-pci,host={device.address},{where}.{function}{multi}{backend}")
    return " ".join(words)
