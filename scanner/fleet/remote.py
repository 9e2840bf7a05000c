"""Running the collector on one host over the system's OpenSSH client, and getting its snapshot back.

Why the ``ssh`` binary and not a Python SSH library: it is what operators already configured --
``~/.ssh/config``, ProxyJump bastions, agents, certificates, known_hosts -- and it adds nothing to
install. The collector's source goes to the remote ``python3 -`` on stdin, its snapshot comes back
on stdout; nothing is copied to or left on the host. ``BatchMode=yes`` makes a host that would
ask for a password or a host-key confirmation fail at once instead of hanging the run.

A host is not trusted to behave: whatever it sends, it cannot take the run down. Each collection
runs in its own process group (session) and is driven by one ``select()`` loop (:class:`Collection`)
that holds it to three bounds -- a wall-clock deadline (``--timeout``) over connecting, collecting
and reading, however many descendants keep the pipes open; at most :data:`MAX_REPLY_BYTES` on
stdout; at most :data:`MAX_ERROR_BYTES` on stderr, of which only the last :data:`ERROR_KEPT_BYTES`
are kept -- and ends the whole process group when one is crossed or the run is stopped
(:class:`InFlight`, SIGINT/SIGTERM). Memory per host is bounded by the caps, never by the flood.

Every failure becomes :class:`~scanner.hostset.HostUnavailable` with one line saying what went
wrong where: ssh's own last error line (unreachable, refused, authentication, host key), the
collector's (no python3 on the host), the deadline, a flood, an interruption, or a reply that is
not a valid snapshot.
"""

from __future__ import annotations

import hashlib
import os
import re
import selectors
import shlex
import signal
import subprocess
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence

from scanner.fleet.inventory import InventoryHost
from scanner.hostset import HostUnavailable

SSH_FAILED = 255  # ssh's own exit status for connection and authentication failures
TRUE = ("1", "true", "yes", "on", "y")

MIB = 1 << 20
#: What one host may send on stdout. A snapshot of a real host is a few hundred KB to a few MB;
#: a generated host of 10,000 PCI functions comes to 18 MB, and a tree at the collector's own
#: entry cap (250,000 paths) to about 31 MB. 64 MiB leaves room above all of those, and bounds the
#: memory one host can take (per host collected at once: ``--parallel`` of them).
MAX_REPLY_BYTES = 64 * MIB
#: What one host may send on stderr: ssh's and the collector's diagnostics are lines, a few KB
#: even under ``ssh -vvv``; a host sending more is flooding, and is stopped.
MAX_ERROR_BYTES = 16 * MIB
#: How much of stderr is kept: the reason of a failure is in its last lines.
ERROR_KEPT_BYTES = 64 << 10
#: Between SIGTERM and SIGKILL for a process group that must end: ssh closes its connection on
#: SIGTERM at once; whatever ignores it is killed after this.
KILL_GRACE_S = 1.0
#: How long a quoted error line of a host may be in its one-line reason.
MAX_REASON_CHARS = 300
READ_CHUNK = 1 << 16
#: How often the loop looks at the collector process when the kernel cannot tell (no pidfd).
POLL_S = 0.1


class HostInterrupted(HostUnavailable):
    """A host left unscanned because the run was stopped (SIGINT, SIGTERM): the report is partial."""


@dataclass
class RemoteOptions:
    timeout: float = 120.0
    ssh_options: Sequence[str] = ()  # -o OPTION=VALUE, passed through, ahead of our defaults (ssh: first wins)
    ssh_config: Optional[str] = None
    python: str = "python3"
    sudo: bool = False
    save_dir: Optional[str] = None
    ssh: str = "ssh"
    in_flight: Optional["InFlight"] = None  # the run's running collections, to stop them all on a signal
    max_reply_bytes: int = MAX_REPLY_BYTES
    max_error_bytes: int = MAX_ERROR_BYTES


def collector_source() -> bytes:
    """The collector's own file: the very module ``vfio-scan collect`` runs in-process."""
    from scanner import collector

    return Path(collector.__file__).read_bytes()


def remote_python(host: InventoryHost, options: RemoteOptions) -> List[str]:
    python = host.var("ansible_python_interpreter")
    if not python or python.startswith("auto"):  # Ansible's interpreter discovery: our default instead
        python = options.python
    return shlex.split(python)


def collector_command(host: InventoryHost, options: RemoteOptions) -> List[str]:
    """The collector's command line on the host: ``[sudo -n] python3 - [--root DIR]``."""
    argv = (["sudo", "-n"] if options.sudo or (host.var("ansible_become") or "").lower() in TRUE else [])
    argv += remote_python(host, options) + ["-"]
    root = host.var("vfio_scan_root")
    if root:
        argv += ["--root", root]
    return argv


def is_local(host: InventoryHost) -> bool:
    return host.var("ansible_connection") == "local"


def ssh_argv(host: InventoryHost, options: RemoteOptions) -> List[str]:
    """``ssh`` with BatchMode and a connect timeout, the user's options first, ``--`` before the host."""
    argv = [options.ssh, "-T"]
    if options.ssh_config:
        argv += ["-F", options.ssh_config]
    for option in options.ssh_options:
        argv += ["-o", option]
    for name in ("ansible_ssh_common_args", "ansible_ssh_extra_args"):
        argv += shlex.split(host.var(name) or "")
    if host.port:
        argv += ["-p", str(host.port)]
    if host.user:
        argv += ["-l", host.user]
    key = host.var("ansible_ssh_private_key_file", "ansible_private_key_file")
    if key:
        argv += ["-i", os.path.expanduser(key)]
    argv += ["-o", "BatchMode=yes", "-o", f"ConnectTimeout={max(1, min(int(options.timeout), 30))}"]
    remote = " ".join(shlex.quote(word) for word in collector_command(host, options))
    return argv + ["--", host.address, remote]


def command_for(host: InventoryHost, options: RemoteOptions) -> List[str]:
    """What runs the collector for ``host``: ssh, or the local python for ``ansible_connection=local``."""
    return collector_command(host, options) if is_local(host) else ssh_argv(host, options)


# -- the run's collections, and stopping them all -----------------------------------------------
class InFlight:
    """The collector process groups running now, and the run's request to stop them.

    Why a pipe: every collection waits in ``select()`` on its own pipes; one byte written here and
    never read wakes all of them at once, whatever each was waiting for. Why no lock around
    ``groups``: :meth:`stop` runs in a signal handler, in the main thread, possibly between two
    bytecodes of a collection running there; single dict operations are atomic, a lock could deadlock.
    """

    def __init__(self):
        self.groups: Dict[int, subprocess.Popen] = {}
        self.stopped_by: Optional[str] = None
        self.interrupted = 0  # hosts left unscanned by the stop
        self._count_lock = threading.Lock()
        self.wake_fd, self._wake_write = os.pipe()
        os.set_blocking(self._wake_write, False)

    def stop(self, why: str, kill: bool = False) -> int:
        """Refuse new collections and signal every running one's whole process group at once
        (SIGTERM, or SIGKILL when ``kill``); returns how many were running."""
        self.stopped_by = self.stopped_by or why
        try:
            os.write(self._wake_write, b"!")
        except OSError:  # already written (a full pipe) or closed: the collections know
            pass
        running = list(self.groups)
        for pgid in running:
            signal_group(pgid, signal.SIGKILL if kill else signal.SIGTERM)
        return len(running)

    def refuse_if_stopped(self, where: str) -> None:
        if self.stopped_by:
            raise self.interruption(f"before collecting from {where}")

    def interruption(self, when: str) -> HostInterrupted:
        with self._count_lock:
            self.interrupted += 1
        return HostInterrupted(f"interrupted by {self.stopped_by} {when}: not scanned (this report is partial)")

    def close(self) -> None:
        for fd in (self.wake_fd, self._wake_write):
            try:
                os.close(fd)
            except OSError:
                pass


# -- process groups ------------------------------------------------------------------------------
def signal_group(pgid: int, signum: int) -> None:
    try:
        os.killpg(pgid, signum)
    except OSError:  # gone already (ESRCH), or nothing in it we may signal
        pass


def group_exists(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    return True


def end_process_group(proc: subprocess.Popen, grace: float = KILL_GRACE_S) -> None:
    """End the collector's whole process group -- ssh and anything it left behind -- and reap it:
    SIGTERM, then SIGKILL to whatever is still there after ``grace`` seconds."""
    pgid = proc.pid  # start_new_session: the leader's pid is its group's id
    signal_group(pgid, signal.SIGTERM)
    until = time.monotonic() + grace
    while time.monotonic() < until:
        if proc.poll() is not None and not group_exists(pgid):
            return
        time.sleep(0.02)
    signal_group(pgid, signal.SIGKILL)
    proc.wait()


def _exit_fd(proc: subprocess.Popen) -> Optional[int]:
    """A descriptor that becomes readable when ``proc`` exits (Linux 5.3+), else None."""
    try:
        return os.pidfd_open(proc.pid)
    except (AttributeError, OSError):
        return None


# -- one collection, bounded ---------------------------------------------------------------------
@dataclass
class Reply:
    """What a collection sent: stdout whole (up to its cap), the tail of stderr, the exit status."""

    out: bytearray = field(default_factory=bytearray)
    err_tail: bytearray = field(default_factory=bytearray)
    err_total: int = 0
    returncode: Optional[int] = None


class Collection:
    """One collector process and its three pipes, driven by one ``select()`` loop.

    Done when the process has exited and its pipes have nothing more to give: a descendant still
    holding them then is a leftover and is ended with the group. Ended early -- the whole process
    group, and :class:`HostUnavailable` raised -- at the deadline, on a stop request, or when the
    host sends more than the caps allow. Why not ``communicate()``: it reads without bound and
    waits for every holder of the pipes, however long.
    """

    def __init__(self, proc: subprocess.Popen, where: str, options: RemoteOptions):
        self.proc, self.where, self.options = proc, where, options
        self.deadline = time.monotonic() + options.timeout
        self.reply = Reply()
        self.selector = selectors.DefaultSelector()
        self.pending = memoryview(b"")
        self.exit_fd = _exit_fd(proc)

    def run(self, source: bytes) -> Reply:
        try:
            self._watch(source)
            while self._step():
                pass
            if self._pipes_open():  # held by a leftover of the collection after it exited
                self._end()
        except BaseException:  # a deadline, a flood, a stop -- or anything else: nothing is left running
            self._end()
            raise
        finally:
            self._close()
        self.reply.returncode = self.proc.returncode
        return self.reply

    def _watch(self, source: bytes) -> None:
        self.pending = memoryview(source)
        os.set_blocking(self.proc.stdin.fileno(), False)
        self.selector.register(self.proc.stdin.fileno(), selectors.EVENT_WRITE, self._feed)
        self.selector.register(self.proc.stdout.fileno(), selectors.EVENT_READ, self._read_out)
        self.selector.register(self.proc.stderr.fileno(), selectors.EVENT_READ, self._read_err)
        if self.exit_fd is not None:
            self.selector.register(self.exit_fd, selectors.EVENT_READ, self._exited)
        if self.options.in_flight is not None:
            self.selector.register(self.options.in_flight.wake_fd, selectors.EVENT_READ, self._stopped)

    def _step(self) -> bool:
        """Handle what is ready; False once the process has exited and nothing more is waiting."""
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise HostUnavailable(f"timed out after {self.options.timeout:g} s collecting from {self.where}")
        exited = self.proc.poll() is not None
        if exited and not self._pipes_open():
            return False
        if exited:
            wait = 0.0  # only what is already in the pipes: nothing legitimate writes after the collector
        else:
            wait = left if self.exit_fd is not None else min(left, POLL_S)
        events = self.selector.select(wait)
        for key, _ in events:
            key.data(key.fd)
        return bool(events) or not exited

    def _pipes_open(self) -> bool:
        return any(key.data in (self._read_out, self._read_err) for key in self.selector.get_map().values())

    def _feed(self, fd: int) -> None:
        """The collector's source to its stdin, as fast as the host takes it; closed once sent."""
        try:
            sent = os.write(fd, self.pending[:READ_CHUNK])
        except BlockingIOError:
            return
        except OSError:  # the host stopped reading (exited, or no python3): its stderr says why
            sent = len(self.pending)
        self.pending = self.pending[sent:]
        if not self.pending:
            self._forget(fd)
            self.proc.stdin.close()

    def _read_out(self, fd: int) -> None:
        chunk = self._read(fd)
        if len(self.reply.out) + len(chunk) > self.options.max_reply_bytes:
            raise HostUnavailable(f"{self.where} sent more than {_size(self.options.max_reply_bytes)}, more than "
                                  "any snapshot: collection stopped")
        self.reply.out += chunk

    def _read_err(self, fd: int) -> None:
        chunk = self._read(fd)
        self.reply.err_total += len(chunk)
        if self.reply.err_total > self.options.max_error_bytes:
            raise HostUnavailable(f"{self.where} wrote more than {_size(self.options.max_error_bytes)} of errors "
                                  "on stderr: collection stopped")
        tail = self.reply.err_tail
        tail += chunk
        if len(tail) > 2 * ERROR_KEPT_BYTES:
            del tail[:-ERROR_KEPT_BYTES]

    def _read(self, fd: int) -> bytes:
        try:
            chunk = os.read(fd, READ_CHUNK)
        except BlockingIOError:
            return b""
        if not chunk:  # end of file: every holder of the pipe has closed it
            self._forget(fd)
        return chunk

    def _exited(self, fd: int) -> None:
        self._forget(fd)  # readable for good now; the next step sees the exit

    def _stopped(self, fd: int) -> None:
        raise self.options.in_flight.interruption(f"while collecting from {self.where}")

    def _forget(self, fd: int) -> None:
        try:
            self.selector.unregister(fd)
        except (KeyError, ValueError):
            pass

    def _end(self) -> None:
        self._close_pipes()  # a writer still blocked on a full pipe gets EPIPE instead
        end_process_group(self.proc)

    def _close_pipes(self) -> None:
        for pipe in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            if pipe is not None and not pipe.closed:
                self._forget(pipe.fileno())
                pipe.close()

    def _close(self) -> None:
        self._close_pipes()
        self.selector.close()
        if self.exit_fd is not None:
            os.close(self.exit_fd)


def _size(count: int) -> str:
    return f"{count / MIB:g} MiB" if count >= MIB else f"{count:,} bytes"


# -- running and judging --------------------------------------------------------------------------
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


# -- saved snapshots -------------------------------------------------------------------------------
MAX_NAME_CHARS = 200  # file names are at most 255 bytes; room is left for ".json" and a temporary name


def safe_name(name: str) -> str:
    """A readable file name for a host's snapshot: ``root@10.0.0.1:2222`` -> ``root@10.0.0.1_2222``.
    Not one-to-one (``web1:22`` and ``web1_22`` meet): :func:`snapshot_file_names` settles that."""
    cleaned = re.sub(r"[^A-Za-z0-9._@-]", "_", name).strip(".") or "host"
    return cleaned[:MAX_NAME_CHARS]


def escaped_name(name: str) -> str:
    """A file name that is one-to-one with ``name``: every byte outside ``[A-Za-z0-9._@-]``, a leading
    and a trailing dot percent-encoded (``web1:2222`` -> ``web1%3A2222``), never hidden, never a path.
    A longer name keeps its start and ends in ``%-`` and a hash of the whole (no escape looks so)."""
    raw = name.encode("utf-8", "surrogatepass")  # lone surrogates too, without meeting real characters
    text = "".join(chr(b) if chr(b) in _KEPT else f"%{b:02X}" for b in raw) or "%"
    if text.startswith("."):
        text = "%2E" + text[1:]
    if text.endswith("."):
        text = text[:-1] + "%2E"
    if len(text) <= MAX_NAME_CHARS:
        return text
    start = re.sub(r"%[0-9A-F]?$", "", text[:MAX_NAME_CHARS - 18])
    return f"{start}%-{hashlib.sha256(raw).hexdigest()[:16]}"


_KEPT = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._@-")


def snapshot_file_names(names: Sequence[str]) -> Dict[str, str]:
    """``DIR/NAME.json`` for each host of a run, unique among them and safe to create.

    A name that is already safe is its own file name; another one gets :func:`safe_name`'s readable
    form when no other host of the run claims that form, else :func:`escaped_name`'s, which meets
    neither (only an escaped name of a name that needed changing contains ``%``). Which host gets
    which name does not depend on the hosts' order.
    """
    readable = {name: safe_name(name) for name in names}
    claims = Counter(readable.values())
    return {name: (form if form == name or claims[form] == 1 else escaped_name(name)) + ".json"
            for name, form in readable.items()}


def save_snapshot(path: str, reply: bytearray) -> None:
    """Keep a reply under ``--save-snapshots``, whole or not at all: a snapshot cut short would break
    ``scan --snapshot DIR`` later."""
    from scanner.atomicwrite import OutputError, write_atomically

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
    try:
        return parse_snapshot(out.decode("utf-8", "replace"), f"the collector's reply from {host.name}")
    except SnapshotError as exc:
        raise HostUnavailable(str(exc)) from None


def snapshot_host(host: InventoryHost, options: RemoteOptions, file_name: Optional[str] = None):
    """A Host (scanner/host interface) for one inventory host, read over ssh."""
    from scanner.host.snapshot import SnapshotHost

    return SnapshotHost(collect_snapshot(host, options, file_name), origin=host.name)
