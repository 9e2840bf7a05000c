"""``vfio-scan fleet``: scan many hosts over ssh into one merged report.

Hosts come from the command line, a hosts file or an Ansible inventory (scanner/fleet/inventory.py).
On each, the collector runs over the system's ``ssh`` (scanner/fleet/remote.py), ``--parallel``
at a time, each with its own ``--timeout``; the snapshot is scanned as soon as it arrives and
then dropped. Everything after the hosts -- device targets, rules, ``--policy``, ``--fail-on``,
formats and output files -- is ``vfio-scan scan``'s own code path, so a fleet is judged exactly as
``scan --snapshot`` of the same snapshots would be. An unreachable host or a failed collection
is a host-level error in the report (exit 3); every other host is still reported.

While hosts are collected, SIGINT and SIGTERM stop the run instead of killing it or waiting for
every host (:class:`StopOnSignals`): every running collection is ended at once, and the report of
the hosts that finished is still written, the others in it as interrupted; exit 130 (SIGINT) or
143 (SIGTERM), as a shell reports a command a signal ended.
"""

from __future__ import annotations

import math
import os
import signal
import sys
import threading
from functools import partial
from typing import Optional

from scanner.base.errors import UsageError
from scanner.commands import scan
from scanner.commands.common import check_given


def add_arguments(parser) -> None:
    src = parser.add_argument_group("hosts")
    src.add_argument("hosts", nargs="*", metavar="HOST", help="[user@]host[:port] to scan (IPv6: [addr]:port)")
    src.add_argument("--hosts-file", action="append", default=[], metavar="FILE",
                     help="one [user@]host[:port] a line, # comments (repeatable)")
    src.add_argument("-i", "--inventory", action="append", default=[], metavar="FILE",
                     help="an Ansible inventory: INI, or YAML (.yml/.yaml; needs PyYAML); groups, ansible_host, "
                          "ansible_port, ansible_user, ansible_ssh_private_key_file, ansible_python_interpreter, "
                          "vfio_scan_root (repeatable)")
    src.add_argument("--limit", action="append", default=[], metavar="PATTERN",
                     help="only these hosts or groups (globs, comma-separated; repeatable)")
    con = parser.add_argument_group("connection")
    con.add_argument("--parallel", type=int, default=10, metavar="N", help="hosts collected at once (default 10)")
    con.add_argument("--timeout", type=float, default=120.0, metavar="SECONDS",
                     help="per host, a deadline for connecting, collecting and reading its reply (default 120)")
    con.add_argument("--ssh-option", action="append", default=[], metavar="OPTION=VALUE",
                     help="passed to ssh as -o OPTION=VALUE, before vfio-scan's own (repeatable)")
    con.add_argument("--ssh-config", metavar="FILE", help="ssh configuration file (ssh -F FILE)")
    con.add_argument("--python", default="python3", metavar="CMD",
                     help="the host's Python 3.6+ (default python3; an inventory's ansible_python_interpreter wins)")
    con.add_argument("--sudo", action="store_true", help="run the collector with 'sudo -n' (root sees more)")
    con.add_argument("--save-snapshots", metavar="DIR",
                     help="keep each host's snapshot as DIR/HOST.json, to scan again with 'scan --snapshot DIR'")
    scan.add_arguments(parser, hosts=False)


def gather_hosts(asked) -> list:
    """Every host ``asked`` (a :class:`~scanner.commands.options.FleetHosts`) names, in order, once each
    (by name); a bad file or host is a usage error."""
    from scanner.fleet.inventory import InventoryError, limit, make_host, parse_host_spec, read_inventory

    hosts = []
    try:
        for spec in asked.names:
            try:
                parse_host_spec(spec)
            except ValueError as exc:
                raise InventoryError(f"HOST {exc}") from None
            hosts.append(make_host(spec, {}))
        for path in asked.hosts_files:
            hosts += read_inventory(path, hosts_file=True)
        for path in asked.inventories:
            hosts += read_inventory(path)
    except InventoryError as exc:
        raise UsageError(str(exc)) from None
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    unique = list({h.name: h for h in hosts}.values())
    chosen = limit(unique, asked.limits)
    if not chosen:
        raise UsageError("no hosts to scan: give HOST arguments, --hosts-file or -i INVENTORY"
                         + (" (--limit matched none)" if unique else ""))
    return chosen


class StopOnSignals:
    """While hosts are collected, SIGINT and SIGTERM stop the run: the ssh process groups are ended,
    the hosts that finished are reported, and the command exits 128 + the signal's number.

    Why not the default: SIGINT would wait for every running host (up to ``--timeout``) with no
    word and then write nothing; SIGTERM would kill vfio-scan and leave its ssh processes running.
    A second signal kills what is still running at once instead of waiting for a clean end.
    Written to stderr's descriptor directly: a handler must not re-enter a buffered write that
    the code it interrupted was in the middle of (the progress line).
    """

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self, in_flight, progress=None):
        self.in_flight = in_flight
        self.progress = progress
        self.received: Optional[int] = None
        self._previous: dict = {}

    def __enter__(self):
        if threading.current_thread() is not threading.main_thread():  # the only thread that may set handlers
            return self
        for signum in self.SIGNALS:
            if signal.getsignal(signum) is not signal.SIG_IGN:  # ignored from the start (nohup): stays ignored
                self._previous[signum] = signal.signal(signum, self._on_signal)
        return self

    def __exit__(self, *exc_info) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous.clear()

    def _on_signal(self, signum, frame) -> None:
        name = signal.Signals(signum).name
        again = self.received is not None
        self.received = self.received or signum
        if self.progress:
            self.progress.stop()
        running = self.in_flight.stop(name, kill=again)
        collections = f"{running} collection{'' if running == 1 else 's'}"
        if again:
            say(f"vfio-scan fleet: {name} again: killing the {collections} still running now")
        else:
            say(f"vfio-scan fleet: {name}: stopping; ending {collections} in progress, then writing the report "
                "of the hosts that finished")

    @property
    def exit_code(self) -> Optional[int]:
        return 128 + self.received if self.received else None


def say(line: str) -> None:
    """One line on stderr, unbuffered: safe in a signal handler."""
    try:
        os.write(2, (line + "\n").encode("utf-8", "replace"))
    except OSError:
        pass


def check_connection_arguments(connection) -> None:
    """A :class:`~scanner.commands.options.Connection` that cannot work is a usage error, before any host is reached."""
    if connection.parallel < 1:
        raise UsageError("--parallel N: N must be 1 or more")
    if not (connection.timeout > 0 and math.isfinite(connection.timeout)):
        raise UsageError("--timeout SECONDS: must be a number of seconds more than 0")
    for option in connection.ssh_options:
        if "=" not in option or option.startswith("-"):
            raise UsageError(f"--ssh-option {option}: expected OPTION=VALUE, e.g. ConnectTimeout=5")
    check_given("--ssh-config", connection.ssh_config, "an ssh configuration file, or leave --ssh-config out")
    check_given("--save-snapshots", connection.save_snapshots, "a directory, or leave --save-snapshots out")
    if connection.ssh_config and not os.path.isfile(connection.ssh_config):
        raise UsageError(f"--ssh-config {connection.ssh_config}: no such file")
    save = connection.save_snapshots
    if save:
        try:
            os.makedirs(save, exist_ok=True)
        except OSError as exc:
            raise UsageError(f"--save-snapshots {save}: {exc.strerror or exc}") from None
        if not os.access(save, os.W_OK):
            raise UsageError(f"--save-snapshots {save}: not writable")


def run(options) -> int:
    from scanner.fleet.progress import Progress
    from scanner.commands.options import HostSource
    from scanner.fleet.collection import InFlight
    from scanner.fleet.remote import snapshot_host
    from scanner.fleet.remote_command import RemoteOptions
    from scanner.fleet.snapshot_names import snapshot_file_names
    from scanner.engine.hostset import HostJob, HostSet

    connection = options.connection
    check_connection_arguments(connection)
    hosts = gather_hosts(options.hosts)
    in_flight = InFlight()
    remote = RemoteOptions(timeout=connection.timeout, ssh_options=connection.ssh_options,
                           ssh_config=connection.ssh_config, python=connection.python, sudo=connection.sudo,
                           save_dir=connection.save_snapshots, in_flight=in_flight)
    files = snapshot_file_names([h.name for h in hosts])
    progress = Progress() if Progress.wanted() else None
    stopper = StopOnSignals(in_flight, progress)
    jobs = [HostJob(h.name, partial(snapshot_host, h, remote, files[h.name])) for h in hosts]
    host_set = HostSet(jobs, parallel=connection.parallel, fleet=True, progress=progress, guard=stopper)
    if progress:
        progress.start(len(jobs))
    try:
        code = scan.run(options.scan.replace(hosts=HostSource(preset=host_set)))
    finally:
        if progress:
            progress.finish()
            sys.stderr.flush()
        in_flight.close()
    if stopper.exit_code:
        say(f"vfio-scan fleet: partial report: {in_flight.interrupted} of {len(jobs)} hosts not scanned "
            f"(interrupted by {in_flight.stopped_by})")
        return stopper.exit_code
    return code
