"""cloud-hypervisor: ``--device path=/sys/bus/pci/devices/ADDR/`` for each device (on vfio-pci)."""

from __future__ import annotations

from scanner.vm_config.plan import Plan


def render(plan: Plan) -> str:
    return "--device " + " ".join(f"path=/sys/bus/pci/devices/{d.address}/" for d in plan.devices)
