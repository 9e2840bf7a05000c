"""VM configuration for the devices a scan found ready: one module per VM manager.

``plan`` turns the facts and the addresses to pass (targets and the sibling functions that must go
with them) into a :class:`~scanner.vm_config.plan.Plan`: devices grouped by slot, with ids, names,
IOMMU groups, the vfio driver each is (or will be) bound to, iommufd availability and the 64-bit
window the BARs need. Each renderer (``qemu``, ``libvirt``, ``proxmox``, ``kubevirt``, ``nova``,
``cloud_hypervisor``) writes that plan in its tool's own format; none reads the host. Every host
value a renderer writes has passed a strict pattern here first (addresses, ids, driver names).

May import: scanner.base, scanner.facts, scanner.engine.model, scanner.remediation, scanner.engine.
"""
