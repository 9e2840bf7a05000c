"""``--snapshot FILE|DIR ...``: snapshot files as the hosts of one run.

A directory stands for the ``*.json`` files in it (what ``vfio-scan fleet --save-snapshots`` and
the Ansible playbook in contrib/ansible write). Each file is one host, named by its file name
without ``.json``. A path that does not exist, or names neither a directory nor a regular file
within the size cap (a FIFO would hang a plain read), is a usage error (exit 2, before any
scanning). A file that is not a valid snapshot is a usage error when it is the only host, and a
host-level error in the report (exit 3) when it is one of many: the others are still scanned.
Files are read through scanner/host/inputfile.py: never blocking, regular files only, capped.
"""

from __future__ import annotations

import os
from typing import List, Sequence

from scanner.base.errors import UsageError
from scanner.engine.hostset import HostJob, HostUnavailable
from scanner.host.inputfile import InputFileError, check_input_file


def snapshot_files(paths: Sequence[str]) -> List[str]:
    """The files named, directories expanded to their ``*.json`` (sorted), duplicates dropped."""
    files = []
    for path in paths:
        if os.path.isdir(path):
            files += _json_files(path)
        elif os.path.exists(path):
            files.append(_regular(path))
        else:
            raise UsageError(f"--snapshot {path}: no such file or directory")
    return list(dict.fromkeys(os.path.normpath(f) for f in files))


def _json_files(directory: str) -> List[str]:
    """The ``*.json`` names in ``directory`` but its subdirectories, sorted.

    Why not only the regular files: a host whose snapshot was replaced by a FIFO, a broken link or
    a link to a device would vanish from the audit without a word. Each is a host here, and its
    load says why it cannot be read, as ``diff`` says of the same directory.
    """
    try:
        names = os.listdir(directory)
    except OSError as exc:
        raise UsageError(f"--snapshot {directory}: cannot list this directory: {exc.strerror or exc}") from None
    found = sorted(os.path.join(directory, n) for n in names
                   if n.endswith(".json") and not os.path.isdir(os.path.join(directory, n)))
    if not found:
        raise UsageError(f"--snapshot {directory}: no *.json snapshot files in this directory")
    return found


def _regular(path: str) -> str:
    """``path``, once it is known to be a regular file (not a FIFO, a device, ...) of a snapshot's size."""
    from scanner.host.snapshot import MAX_SNAPSHOT_BYTES

    try:
        check_input_file(path, MAX_SNAPSHOT_BYTES)
    except InputFileError as exc:
        raise UsageError(f"--snapshot {path}: {exc}") from None
    return path


def load_snapshot_host(path: str):
    """The SnapshotHost of one file, read without blocking (raises SnapshotError naming ``path``).

    Why not ``SnapshotHost.from_file``: its plain ``open`` waits forever on a FIFO swapped in after
    :func:`snapshot_files` checked the name; the bytes are read here, and parsed there.
    """
    from scanner.host.snapshot import MAX_SNAPSHOT_BYTES, SnapshotError, parse_snapshot
    from scanner.host.inputfile import read_input_text

    try:
        text = read_input_text(path, MAX_SNAPSHOT_BYTES)
    except InputFileError as exc:
        raise SnapshotError(f"{path}: {exc}") from None
    return host_of_snapshot(parse_snapshot(text, path), path)


def host_of_snapshot(document: dict, origin: str):
    """The SnapshotHost of a parsed snapshot (raises SnapshotError naming ``origin`` when it is no host's).

    Why: a valid snapshot may record nothing at all (``"entries": {}``, a hand-made or hostile file);
    every rule would skip, and the scan would call READY a host it knows nothing about. The collector
    records ``/proc/cmdline`` and ``/sys/bus/pci/devices`` on every host, so a snapshot with neither is
    refused as ``--root`` refuses a tree with neither.
    """
    from scanner.host.snapshot import NOT_COLLECTED, SnapshotError, SnapshotHost
    from scanner.host.tree import MISSING, lacks_host_signs

    host = SnapshotHost(document, origin=origin)
    missing = lacks_host_signs(host, absent=(MISSING, NOT_COLLECTED))
    if missing:
        raise SnapshotError(f"{origin}: does not look like a host's snapshot: {missing} (a collector records both)")
    return host


def label_for(path: str, taken: set) -> str:
    """The host's name from its file name: ``web1%3A2222.json`` (what ``fleet --save-snapshots`` writes
    for a name unsafe in a file name) is ``web1:2222`` again; a clash gets `` (2)``."""
    base = os.path.basename(path)
    label = base[:-5] if base.endswith(".json") and len(base) > 5 else base
    if "%" in label:
        from urllib.parse import unquote

        label = unquote(label, errors="replace")
    return unique_label(label, taken)


def unique_label(label: str, taken: set) -> str:
    """``label``, or ``label (2)``, ``label (3)``... when taken; the answer is added to ``taken``."""
    unique, n = label, 1
    while unique in taken:
        n += 1
        unique = f"{label} ({n})"
    taken.add(unique)
    return unique


def snapshot_jobs(paths: Sequence[str]) -> List[HostJob]:
    from scanner.host.snapshot import SnapshotError

    files = snapshot_files(paths)
    if len(files) == 1:  # the only input: a bad snapshot is an input error, before scanning
        try:
            host = load_snapshot_host(files[0])
        except SnapshotError as exc:
            raise UsageError(f"--snapshot {exc}") from None
        return [HostJob(None, lambda: host)]

    def loader(path: str):
        def load():
            try:
                return load_snapshot_host(path)
            except SnapshotError as exc:
                raise HostUnavailable(f"snapshot {exc}") from None
        return load

    taken: set = set()
    return [HostJob(label_for(f, taken), loader(f)) for f in files]
