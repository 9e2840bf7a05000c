"""Built-in rules of vfio-scan: one requirement of the passthrough chain per module.

Each module registers its rule through the same ``vfio_scan_register_rules`` hook a third-party
plugin uses; its docstring is the text ``vfio-scan explain`` shows.

May import: scanner.base, scanner.host, scanner.facts, scanner.engine.model, scanner.remediation.
"""
