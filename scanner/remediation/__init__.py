"""Remediation: the fix for each finding, as steps a person reads and a script runs.

``remedies``, ``binding`` and ``persistent_binding``, ``sriov``, ``vm_access`` and
``early_binding`` build the steps rules attach to findings; ``confedit`` computes every configuration-file change as the file's whole new
text, merged, never clobbered; ``shell`` validates and quotes every value a command line gets.
The ``script_*`` modules are the bash of the remediation script (``vfio-scan fix``): its runtime
(dry run, backups, undo), the per-action and per-device blocks, the run-time host guard.
Pure functions of facts and text: nothing here reads or writes the host.

May import: scanner.base, scanner.facts, scanner.engine.model.
"""
