"""Drift between two scans of the same hosts: ``vfio-scan diff OLD NEW``.

An upgrade can move a GPU into the boot NVMe's IOMMU group, renumber a bus so that a libvirt
``<hostdev>`` names an address that is gone, or hand a device back to its host driver, and the
host still boots. What lives here finds those changes between two captures of the same hosts:

* :mod:`scanner.drift.sides` reads each side (a snapshot, a JSON report, a fleet report, a
  ``groups --format json`` document, or a directory of them) into one :class:`HostState` per host;
* :mod:`scanner.drift.compare` compares two states of one host into :class:`Change` items, each
  marked as a regression or not;
* :mod:`scanner.drift.render` writes the result as a table or JSON (``schemas/diff.schema.json``).

It may import the Host layer, Facts, the scan and the groups document; nothing imports it but
the ``diff`` command.

May import: scanner.base, scanner.host, scanner.facts, scanner.engine.model, scanner.engine, scanner.output.
"""
