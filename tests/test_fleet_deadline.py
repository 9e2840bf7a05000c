"""A host that answered in time is never "timed out" because vfio-scan itself was busy.

Every host's reply is parsed and scanned in one process: while one host's large reply is parsed,
the threads reading the other hosts do not run, and their replies wait in the pipes (or their
writers do, on a full pipe). Here the collection is started and then, as such a thread would be,
not run until its deadline has passed; the host had answered long before. The deadline must
still stop a host that is not done: one that keeps dripping bytes past it.
"""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from scanner.engine.hostset import HostUnavailable
from scanner.fleet.collection import Collection
from scanner.fleet.remote_command import RemoteOptions

#: a reply far larger than a pipe holds: its writer is still blocked on the full pipe at the deadline
BIG = 3 << 20
WRITE_BIG = f"import sys; sys.stdout.write('x' * {BIG})"


def started(code: str, timeout: float) -> tuple:
    """A collector process (Python running ``code``) and its Collection, not yet run."""
    proc = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, start_new_session=True)
    return proc, Collection(proc, "busyhost", RemoteOptions(timeout=timeout))


def held_past_the_deadline(collection: Collection) -> None:
    """What a reading thread goes through while another holds the process: it does not run at all."""
    time.sleep(max(0.0, collection.deadline - time.monotonic()) + 0.3)


def test_a_reply_that_arrived_while_the_process_was_busy_is_read_not_timed_out():
    proc, collection = started("print('{\"the\": \"reply\"}')", timeout=0.5)
    proc.wait()  # answered and gone long before the deadline
    held_past_the_deadline(collection)
    reply = collection.run(b"")
    assert bytes(reply.out) == b'{"the": "reply"}\n' and reply.returncode == 0


def test_a_large_reply_whose_writer_waits_on_the_full_pipe_is_read_whole():
    proc, collection = started(WRITE_BIG, timeout=0.5)
    held_past_the_deadline(collection)
    reply = collection.run(b"")
    assert len(reply.out) == BIG and reply.returncode == 0


def test_a_host_still_sending_at_its_deadline_is_stopped_all_the_same():
    """A byte every 50 ms, for ever: it is never silent for a whole look, so only the grace stops it."""
    drip = "import sys, time\nwhile True:\n    sys.stdout.write('x'); sys.stdout.flush(); time.sleep(0.05)"
    proc, collection = started(drip, timeout=0.5)
    with pytest.raises(HostUnavailable, match=r"^timed out after 0\.5 s collecting from busyhost$"):
        collection.run(b"")
    assert proc.poll() is not None  # ended with its group, not left running
