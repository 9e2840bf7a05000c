"""``--snapshot FILE|DIR ...``: snapshot files as the hosts of one run.

A directory stands for the ``*.json`` files in it (what ``vfio-scan fleet --save-snapshots`` and
the Ansible playbook in contrib/ansible write). Each file is one host, named by its file name
without ``.json``. A path that does not exist is a usage error (a typo, exit 2, before any
scanning). A file that is not a valid snapshot is a usage error when it is the only host, and a
host-level error in the report (exit 3) when it is one of many: the others are still scanned.
"""

from __future__ import annotations

import os
from typing import List, Sequence

from scanner.cli import UsageError
from scanner.hostset import HostJob, HostUnavailable


def snapshot_files(paths: Sequence[str]) -> List[str]:
    """The files named, directories expanded to their ``*.json`` (sorted), duplicates dropped."""
    files = []
    for path in paths:
        if os.path.isdir(path):
            found = sorted(os.path.join(path, n) for n in os.listdir(path)
                           if n.endswith(".json") and os.path.isfile(os.path.join(path, n)))
            if not found:
                raise UsageError(f"--snapshot {path}: no *.json snapshot files in this directory")
            files += found
        elif os.path.exists(path):
            files.append(path)
        else:
            raise UsageError(f"--snapshot {path}: no such file or directory")
    return list(dict.fromkeys(os.path.normpath(f) for f in files))


def label_for(path: str, taken: set) -> str:
    base = os.path.basename(path)
    label = base[:-5] if base.endswith(".json") and len(base) > 5 else base
    unique, n = label, 1
    while unique in taken:
        n += 1
        unique = f"{label} ({n})"
    taken.add(unique)
    return unique


def snapshot_jobs(paths: Sequence[str]) -> List[HostJob]:
    from scanner.host.snapshot import SnapshotError, SnapshotHost

    files = snapshot_files(paths)
    if len(files) == 1:  # the only input: a bad snapshot is an input error, before scanning
        try:
            host = SnapshotHost.from_file(files[0])
        except SnapshotError as exc:
            raise UsageError(f"--snapshot {exc}") from None
        return [HostJob(None, lambda: host)]

    def loader(path: str):
        def load():
            try:
                return SnapshotHost.from_file(path)
            except SnapshotError as exc:
                raise HostUnavailable(f"snapshot {exc}") from None
        return load

    taken: set = set()
    return [HostJob(label_for(f, taken), loader(f)) for f in files]
