"""Scan many snapshot files on every CPU: one forked worker process per CPU.

Why processes: a scan is pure Python and holds the GIL, so threads cannot spread it over CPUs;
a thousand snapshots took ten seconds on one CPU of two. Why fork: the workers inherit the
loaded rules, plugins, policy and targets as they are, so only a job's index goes to a worker
and only its finished report comes back (pickled). Reports come back in input order.

Used only where it pays and is safe: many local snapshot files (``scan --snapshot DIR``), on
Linux with more than one CPU. ``VFIO_SCAN_PROCESSES=1`` turns it off, ``=N`` caps the workers.
Anything that keeps the pool from starting or a report from coming back falls back to scanning
in this process, so the result never depends on it.

No worker outlives the scan: a Ctrl-C is the parent's alone (the workers ignore SIGINT, so it is
one "interrupted" line, not a traceback per worker), and a SIGTERM while they scan ends them
before vfio-scan itself dies of it (a shell shows 143); either way the pool is terminated first.
"""

from __future__ import annotations

import gc
import os
import signal
import sys
import threading
from typing import Callable, List, Optional, Sequence

from scanner.base.gc_pause import collector_paused

#: fewer jobs than this are scanned in-process: forking costs more than it saves
MIN_JOBS = 16
MAX_WORKERS = 8

_work: Optional[Callable[[int], object]] = None  # set in the parent just before the fork


def _run(index: int):
    return _work(index)


class _Terminated(BaseException):
    """SIGTERM while the workers scan: unwinds ``pool.map`` so that the pool ends its workers."""


def _raise_terminated(signum, frame):
    raise _Terminated()


def _worker_start() -> None:
    """In each worker: a Ctrl-C on the terminal is the parent's to handle; SIGTERM ends the worker; and
    the collector runs, whatever the parent's was when it forked (one forked to replace a worker that
    died meets the parent's pause while reports come back, and scans host after host: each host's
    rules pause it on their own)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    gc.enable()


def _die_of_sigterm() -> None:
    """The workers are gone: end as SIGTERM would have ended this process (a shell shows 143)."""
    print("vfio-scan: terminated (SIGTERM)", file=sys.stderr, flush=True)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    os.kill(os.getpid(), signal.SIGTERM)
    os._exit(128 + signal.SIGTERM)  # not reached: the signal is delivered as the call returns


def _map_ending_on_sigterm(pool, count: int, chunksize: int) -> List[object]:
    """``pool.map`` over the job indexes, turning a SIGTERM into :class:`_Terminated` meanwhile."""
    if threading.current_thread() is not threading.main_thread():  # only there can a handler be set
        return pool.map(_run, range(count), chunksize=chunksize)
    previous = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        return pool.map(_run, range(count), chunksize=chunksize)
    finally:
        signal.signal(signal.SIGTERM, previous)


def workers_for(jobs: int) -> int:
    """How many worker processes ``jobs`` snapshot scans get (1: none, scan here)."""
    wanted = os.environ.get("VFIO_SCAN_PROCESSES", "")
    try:
        cap = int(wanted) if wanted.strip() else MAX_WORKERS
    except ValueError:
        cap = 1
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    if jobs < MIN_JOBS:
        return 1
    return max(1, min(cap, cpus, MAX_WORKERS))


def scan_in_processes(count: int, work: Callable[[int], object], workers: int) -> Optional[List[object]]:
    """``[work(0), ..., work(count - 1)]`` computed by ``workers`` forked processes, or None when
    that cannot be done here (no fork, a report that cannot be pickled): the caller scans itself."""
    global _work
    try:
        import multiprocessing

        context = multiprocessing.get_context("fork")
    except (ImportError, ValueError):
        return None
    _work = work
    try:
        # This process only receives the reports meanwhile (a thread unpickles them as they come): some
        # hundred thousand long-lived objects, no cyclic garbage. With the collector on, each collection
        # walked the reports received so far again, on a CPU the workers need; paused, it walks them once.
        with context.Pool(workers, initializer=_worker_start) as pool, collector_paused():
            return _map_ending_on_sigterm(pool, count, chunksize=max(1, min(8, count // (workers * 4))))
    except _Terminated:
        _die_of_sigterm()
    except Exception:  # a worker that died, a report that would not pickle: scan here instead
        return None
    finally:
        _work = None


def map_jobs(jobs: Sequence, work: Callable[[object], object]) -> Optional[List[object]]:
    """``work`` over ``jobs`` on every CPU, or None when it is not worth it or not possible."""
    workers = workers_for(len(jobs))
    if workers <= 1:
        return None
    return scan_in_processes(len(jobs), lambda index: work(jobs[index]), workers)
