"""The forked workers behind a many-snapshot scan: answers in order, every worker ended, and any
trouble in a worker handed back to the caller (who then scans in-process) instead of a hang."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time

import pytest

from scanner.engine import hostpool
from scanner.engine.forked_workers import WorkLost, run_forked

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork here")


def children_of_this_process():
    """Child processes not yet waited for (zombies included), from the kernel's own list."""
    pids = set()
    for task in os.listdir(f"/proc/{os.getpid()}/task"):
        with open(f"/proc/{os.getpid()}/task/{task}/children") as listed:
            pids.update(int(pid) for pid in listed.read().split())
    return pids


def spans_of(count, size):
    return [(first, min(first + size, count)) for first in range(0, count, size)]


def test_answers_come_back_in_order_whatever_order_the_workers_finish_in():
    def slow_first(index):
        time.sleep(0.02 if index % 7 == 0 else 0)
        return index, os.getpid()

    before = children_of_this_process()
    got = run_forked(slow_first, spans_of(50, 3), workers=3)
    assert [index for index, _ in got] == list(range(50))
    pids = {pid for _, pid in got}
    assert os.getpid() not in pids and len(pids) >= 2
    assert children_of_this_process() == before  # every worker ended and waited for


def test_a_worker_that_dies_mid_way_is_work_lost_not_a_hang():
    def dies_at_13(index):
        if index == 13:
            os._exit(9)
        return index

    before = children_of_this_process()
    started = time.monotonic()
    with pytest.raises(WorkLost, match=r"worker \d+ ended before"):
        run_forked(dies_at_13, spans_of(40, 2), workers=2)
    assert time.monotonic() - started < 30
    assert children_of_this_process() == before


def test_a_job_that_kills_its_worker_costs_that_job_alone_when_the_caller_says_what_stands_for_it():
    """A crash in C or the OOM killer takes the worker, not the run: the jobs it held are done again one
    by one in workers forked in its place, and only the job that kills a worker alone is lost."""
    import signal

    def killers(index):
        if index in (5, 6, 23):
            os.kill(os.getpid(), signal.SIGKILL)
        if index == 31:
            os._exit(3)
        return index * 10

    before = children_of_this_process()
    got = run_forked(killers, spans_of(40, 4), workers=2, lost=lambda index, why: f"lost {index}: {why}")
    expected = [index * 10 for index in range(40)]
    for index in (5, 6, 23):
        expected[index] = f"lost {index}: was killed by SIGKILL"
    expected[31] = "lost 31: exited with status 3"
    assert got == expected
    assert children_of_this_process() == before


def test_workers_that_cannot_start_leave_the_work_to_the_caller_without_losing_a_job():
    def dies(): os._exit(1)  # noqa: E704

    before = children_of_this_process()
    with pytest.raises(WorkLost, match="ended before it was ready|neither answered nor handed out"):
        run_forked(lambda index: index, spans_of(6, 2), workers=2, start=dies, lost=lambda index, why: None)
    assert children_of_this_process() == before


def test_a_fork_that_fails_ends_the_workers_already_forked(monkeypatch):
    """Out of processes (``ulimit -u``) after the first worker: no work is lost half-way and nothing is left running."""
    real_fork, forks = os.fork, []

    def second_fork_fails():
        if forks:
            raise BlockingIOError(11, "Resource temporarily unavailable")
        forks.append(1)
        return real_fork()

    monkeypatch.setattr(os, "fork", second_fork_fails)
    before = children_of_this_process()
    with pytest.raises(WorkLost, match="cannot fork a worker: .*Resource temporarily unavailable"):
        run_forked(lambda index: index, spans_of(40, 2), workers=3)
    assert forks == [1] and children_of_this_process() == before


def test_a_job_that_raises_or_a_result_that_will_not_pickle_is_left_to_the_caller(monkeypatch):
    monkeypatch.setenv("VFIO_SCAN_PROCESSES", "2")
    if hostpool.workers_for(40) < 2:
        pytest.skip("one CPU: the jobs are scanned in-process")

    def raises(n):
        if n == 30:
            raise ValueError("a bug in a plugin")
        return n

    before = children_of_this_process()
    assert hostpool.map_jobs(list(range(40)), raises) is None
    assert hostpool.map_jobs(list(range(40)), lambda n: threading.Lock()) is None  # a lock does not pickle
    assert children_of_this_process() == before


def test_the_parent_receives_the_reports_itself_with_no_helper_thread(monkeypatch):
    """A helper thread that polled the answers' pipe while a report was in it took a tenth of a second
    or more of the parent's CPU over 1,000 snapshots: the parent's main thread receives them itself.
    Each worker counts the parent's threads while it works."""
    monkeypatch.setenv("VFIO_SCAN_PROCESSES", "2")
    if hostpool.workers_for(40) < 2:
        pytest.skip("one CPU: the jobs are scanned in-process")
    parent = os.getpid()
    threads = len(os.listdir(f"/proc/{parent}/task"))

    def parents_threads(n):
        time.sleep(0.01)
        return len(os.listdir(f"/proc/{parent}/task")), len(os.listdir("/proc/self/task"))

    got = hostpool.map_jobs(list(range(40)), parents_threads)
    assert got == [(threads, 1)] * 40


def test_a_worker_never_runs_the_parents_exit_handlers():
    """A worker ends with os._exit: the parent's ``atexit`` handlers (say, one that removes its temporary
    files) and the code after the call run once, in the parent, not once more in every worker."""
    code = (
        "import atexit, os, sys\n"
        "from scanner.engine.forked_workers import run_forked\n"
        "atexit.register(lambda: os.write(2, b'exit handler\\n'))\n"
        "got = run_forked(lambda i: i * 2, [(0, 5), (5, 10)], workers=2)\n"
        "os.write(1, b'%d\\n' % sum(got))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                          cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    assert proc.returncode == 0, proc.stderr
    assert (proc.stdout, proc.stderr) == ("90\n", "exit handler\n")
