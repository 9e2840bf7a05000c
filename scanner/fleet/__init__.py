"""Fleet audits: many hosts scanned over ssh into one merged report (``vfio-scan fleet``).

``inventory`` reads who to scan (a hosts file or an Ansible inventory); ``remote`` runs the
collector on each host with the system's OpenSSH client (``remote_command`` builds the ssh line,
``collection`` bounds the process and its reply, ``snapshot_names`` names the saved snapshots);
``progress`` draws the live line on a terminal. Merging the reports per rule is the engine's
(scanner/engine/fleet_summary.py): the renderers use it too.

May import: scanner.base, scanner.collector, scanner.host, scanner.engine.model, scanner.engine, scanner.output.
"""
