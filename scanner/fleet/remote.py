"""Collecting one host's snapshot: run the collector there, judge its reply, keep it, parse it.

Every failure becomes :class:`~scanner.engine.hostset.HostUnavailable` with one line saying what went
wrong where: ssh's own last error line (unreachable, refused, authentication, host key), the
collector's (no python3 on the host), the deadline, a flood, an interruption, or a reply that is
not a valid snapshot. The command is built in scanner/fleet/remote_command.py, the process held
to its bounds in scanner/fleet/collection.py.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
from typing import List, Optional

from scanner.fleet.collection import Collection, Reply
from scanner.fleet.inventory import InventoryHost
from scanner.fleet.remote_command import RemoteOptions, collector_source, command_for, is_local
from scanner.fleet.snapshot_names import snapshot_file_names
from scanner.engine.hostset import HostUnavailable

SSH_FAILED = 255  # ssh's own exit status for connection and authentication failures
#: How long a quoted error line of a host may be in its one-line reason.
MAX_REASON_CHARS = 300
#: Replies parsed at once, whatever ``--parallel`` is. Why: parsing one may take 0.4 GB
#: (scanner/host/snapshot_json.py), and ten hosts replying together must not take ten times that.
PARSING = threading.BoundedSemaphore(2)


def _last_error(stderr: bytes) -> str:
    """ssh's (or the collector's) last meaningful stderr line, without ssh's known-hosts chatter, and
    short enough to stay one line of a report."""
    lines = [line.strip() for line in bytes(stderr).decode("utf-8", "replace").splitlines()]
    lines = [line for line in lines if line and not line.startswith("Warning: Permanently added")]
    last = lines[-1] if lines else ""
    return last if len(last) <= MAX_REASON_CHARS else last[:MAX_REASON_CHARS - 1] + "…"


def _exit_status(returncode: int) -> str:
    if returncode < 0:
        try:
            return f"killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"killed by signal {-returncode}"
    return f"exit status {returncode}"


def _judged(reply: Reply, host: InventoryHost, where: str) -> bytearray:
    """The reply's stdout when the collection succeeded; else HostUnavailable with ssh's or the collector's words."""
    err = _last_error(reply.err_tail)
    status = _exit_status(reply.returncode)
    if reply.returncode == SSH_FAILED and not is_local(host):
        raise HostUnavailable(f"ssh to {where} failed: {err or status}")
    if reply.returncode != 0:
        raise HostUnavailable(f"the collector failed on {where} ({status}): {err or status}")
    if not reply.out.strip():
        raise HostUnavailable(f"the collector printed nothing on {where}" + (f": {err}" if err else ""))
    return reply.out


def _start(argv: List[str]) -> subprocess.Popen:
    """The collector's command in a session of its own: its whole group can be ended at once, and
    a Ctrl-C on the terminal reaches vfio-scan alone, which ends the collections itself."""
    try:
        return subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                start_new_session=True)
    except OSError as exc:
        raise HostUnavailable(f"cannot run {argv[0]}: {exc.strerror or exc}") from None


def run_collector(host: InventoryHost, options: RemoteOptions) -> bytearray:
    """The collector's stdout from ``host``; raises HostUnavailable with the reason it failed."""
    where = f"{host.address}:{host.port}" if host.port else host.address
    in_flight = options.in_flight
    if in_flight is not None:
        in_flight.refuse_if_stopped(where)
    proc = _start(command_for(host, options))
    if in_flight is not None:
        in_flight.groups[proc.pid] = proc
    try:
        reply = Collection(proc, where, options).run(collector_source())
    finally:
        if in_flight is not None:
            in_flight.groups.pop(proc.pid, None)
    return _judged(reply, host, where)


def save_snapshot(path: str, reply: bytearray) -> None:
    """Keep a reply under ``--save-snapshots``, whole or not at all: a snapshot cut short would break
    ``scan --snapshot DIR`` later."""
    from scanner.output.atomicwrite import OutputError, write_atomically

    try:
        write_atomically(path, reply)
    except OutputError as exc:
        raise HostUnavailable(f"cannot save the snapshot to {path}: {exc.reason}") from None


def collect_snapshot(host: InventoryHost, options: RemoteOptions, file_name: Optional[str] = None) -> dict:
    """Run the collector on ``host``, keep its reply under ``--save-snapshots`` as ``file_name`` (by
    default, see :func:`snapshot_file_names`), return the parsed snapshot."""
    from scanner.host.snapshot import SnapshotError, parse_snapshot

    out = run_collector(host, options)
    if options.save_dir:
        save_snapshot(os.path.join(options.save_dir, file_name or snapshot_file_names([host.name])[host.name]), out)
    where = f"the collector's reply from {host.name}"
    try:
        text = out.decode("utf-8")
    except UnicodeDecodeError as exc:
        # the collector writes ASCII only: anything else is not its reply. Decoded with replacement,
        # it was scanned here while the copy saved under --save-snapshots was refused by a later scan.
        line = out[:exc.start].count(b"\n") + 1
        raise HostUnavailable(f"{where}: line {line}: not UTF-8 text (byte 0x{out[exc.start]:02x})") from None
    del out  # up to 64 MiB, and the text holds it all now
    try:
        with PARSING:
            return parse_snapshot(text, where)
    except SnapshotError as exc:
        raise HostUnavailable(str(exc)) from None


def snapshot_host(host: InventoryHost, options: RemoteOptions, file_name: Optional[str] = None):
    """A Host (scanner/host interface) for one inventory host, read over ssh."""
    from scanner.engine.snapshots import host_of_snapshot
    from scanner.host.snapshot import SnapshotError

    document = collect_snapshot(host, options, file_name)
    try:
        return host_of_snapshot(document, f"the collector's reply from {host.name}")
    except SnapshotError as exc:
        raise HostUnavailable(str(exc)) from None
