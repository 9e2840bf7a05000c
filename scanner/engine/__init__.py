"""The engine: rules as pluggy plugins, run over one host's facts into findings and a report.

``model`` is the vocabulary (a rule, a finding, its evidence, a fix step); ``hookspecs``,
``entrypoints`` and ``plugins`` load the built-in and third-party rules and formats; ``runner``
runs every rule under a guard; ``scanning`` takes one host from facts to report, ``report`` is
that report, ``hostset``, ``snapshots`` and ``hostpool`` make the hosts of one run (this machine,
a tree, snapshot files on every CPU), ``fleet_summary`` merges many reports per rule and
``groups_document`` is what ``groups`` prints and ``diff`` compares: the IOMMU groups, no rules.

``model`` imports only :mod:`scanner.base`, so the facts and the remediation can speak it.

May import: scanner.base, scanner.host, scanner.facts, scanner.engine.model, scanner.policy, scanner.remediation.
"""
