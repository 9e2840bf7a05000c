"""One collector process held to its bounds, and the run's means to stop them all.

A host is not trusted to behave: whatever it sends, it cannot take the run down. Each collection
runs in its own process group (session) and is driven by one ``select()`` loop (:class:`Collection`)
that holds it to three bounds -- a wall-clock deadline (``--timeout``) over connecting, collecting
and reading, however many descendants keep the pipes open (a reply already on its way when it
passes is still read, for a few seconds at most: this process may have been too busy to read
it); at most :data:`MAX_REPLY_BYTES` on stdout; at most :data:`MAX_ERROR_BYTES` on stderr, of
which only the last :data:`ERROR_KEPT_BYTES` are kept -- and ends the whole process group when one is crossed or the run is stopped
(:class:`InFlight`, SIGINT/SIGTERM). A host's reply is bounded by the caps, never by the flood.
What the reply means is judged elsewhere (scanner/fleet/remote.py).
"""

from __future__ import annotations

import os
import selectors
import signal
import subprocess
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Dict, Optional

from scanner.engine.hostset import HostUnavailable

if TYPE_CHECKING:
    from scanner.fleet.remote_command import RemoteOptions

MIB = 1 << 20
#: What one host may send on stdout. A snapshot of a real host is a few hundred KB to a few MB;
#: a generated host of 10,000 PCI functions comes to 28 MB, and a tree at the collector's own
#: entry cap (250,000 paths) to about 31 MB. 64 MiB leaves room above all of those, and bounds the
#: memory one host's reply takes (per host collected at once: ``--parallel`` of them); what parsing
#: it may take is bounded by its count of values (scanner/host/snapshot_json.py).
MAX_REPLY_BYTES = 64 * MIB
#: What one host may send on stderr: ssh's and the collector's diagnostics are lines, a few KB
#: even under ``ssh -vvv``; a host sending more is flooding, and is stopped.
MAX_ERROR_BYTES = 16 * MIB
#: How much of stderr is kept: the reason of a failure is in its last lines.
ERROR_KEPT_BYTES = 64 << 10
#: Between SIGTERM and SIGKILL for a process group that must end: ssh closes its connection on
#: SIGTERM at once; whatever ignores it is killed after this.
KILL_GRACE_S = 1.0
READ_CHUNK = 1 << 16
#: How often the loop looks at the collector process when the kernel cannot tell (no pidfd).
POLL_S = 0.1
#: Past the deadline, how long one look at the pipes waits for more of a reply: long enough for a
#: writer that was blocked on the full pipe to fill it again, far shorter than any host's pause.
LATE_WAIT_S = 0.2
#: Past the deadline, how long a reply that keeps coming is still read, at most: what was held up
#: while this process was busy gets through, a host dripping bytes forever does not.
LATE_GRACE_S = 5.0



class HostInterrupted(HostUnavailable):
    """A host left unscanned because the run was stopped (SIGINT, SIGTERM): the report is partial."""



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

    def __init__(self, proc: subprocess.Popen, where: str, options: "RemoteOptions"):
        self.proc, self.where, self.options = proc, where, options
        self.deadline = time.monotonic() + options.timeout
        self.reply = Reply()
        self.selector = selectors.DefaultSelector()
        self.pending = memoryview(b"")
        self.exit_fd = _exit_fd(proc)
        self.late_since: Optional[float] = None  # when the loop first ran past the deadline

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
        """Handle what is ready; False once the process has exited and nothing more is waiting.

        The deadline is judged after a look at the pipes, never before one. Why: every host's reply
        is parsed and scanned in this one process, and a long parse holds the others' threads; a
        reply that arrived meanwhile is waiting in the pipe (or its writer is, on the full pipe),
        and the host is not to blame for the wait. So past the deadline the host times out only
        when a look of :data:`LATE_WAIT_S` finds nothing more, or it is still sending
        :data:`LATE_GRACE_S` later.
        """
        exited = self.proc.poll() is not None
        if exited and not self._pipes_open():
            return False
        now = time.monotonic()
        late = now >= self.deadline
        if late:
            self.late_since = self.late_since or now
            if now - self.late_since > LATE_GRACE_S:
                raise self._timed_out()
            wait = 0.0 if exited else LATE_WAIT_S
        elif exited:
            wait = 0.0  # only what is already in the pipes: nothing legitimate writes after the collector
        else:
            left = self.deadline - now
            wait = left if self.exit_fd is not None else min(left, POLL_S)
        events = self.selector.select(wait)
        for key, _ in events:
            key.data(key.fd)
        if late and not events and self.proc.poll() is None:
            raise self._timed_out()
        return bool(events) or not exited

    def _timed_out(self) -> HostUnavailable:
        return HostUnavailable(f"timed out after {self.options.timeout:g} s collecting from {self.where}")

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
