"""Fleet audits: many hosts scanned over ssh into one merged report (``vfio-scan fleet``).

``inventory`` reads who to scan (a hosts file or an Ansible inventory), ``remote`` runs the
collector on each host with the system's OpenSSH client, ``progress`` draws the live line on a
terminal, ``summary`` merges reports per rule for the table and the JSON fleet document.
"""
