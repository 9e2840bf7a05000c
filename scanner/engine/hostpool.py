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
before vfio-scan itself dies of it (a shell shows 143); either way the workers are ended first.
The workers themselves are scanner/engine/forked_workers.py.
"""

from __future__ import annotations

import gc
import os
import signal
import sys
import threading
from contextlib import contextmanager
from typing import Callable, List, Optional, Sequence

from scanner.base.gc_pause import collector_paused
from scanner.engine.forked_workers import run_forked

#: fewer jobs than this are scanned in-process: forking costs more than it saves
MIN_JOBS = 16
MAX_WORKERS = 8


class _Terminated(BaseException):
    """SIGTERM while the workers scan: unwinds the gathering, so that the workers are ended first."""


def _raise_terminated(signum, frame):
    raise _Terminated()


def _worker_start() -> None:
    """In each worker: a Ctrl-C on the terminal is the parent's to handle; SIGTERM ends the worker; and
    the collector runs, though the parent's is paused while reports come back (a worker scans host
    after host: each host's rules pause it on their own)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    gc.enable()


def _die_of_sigterm() -> None:
    """The workers are gone: end as SIGTERM would have ended this process (a shell shows 143)."""
    print("vfio-scan: terminated (SIGTERM)", file=sys.stderr, flush=True)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    os.kill(os.getpid(), signal.SIGTERM)
    os._exit(128 + signal.SIGTERM)  # not reached: the signal is delivered as the call returns


@contextmanager
def _sigterm_unwinds():
    """SIGTERM raises :class:`_Terminated` in the block (only the main thread can set a handler)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        yield
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


def scan_in_processes(count: int, work: Callable[[int], object], workers: int,
                      lost: Optional[Callable[[int, str], object]] = None) -> Optional[List[object]]:
    """``[work(0), ..., work(count - 1)]`` computed by ``workers`` forked processes, or None when
    that cannot be done here (no fork, a report that cannot be pickled; a worker that died, without
    ``lost``): the caller scans itself. ``lost(index, why)`` stands for a job that kills its worker
    (scanner/engine/forked_workers.py)."""
    if not hasattr(os, "fork"):
        return None
    size = max(1, min(8, count // (workers * 4)))
    spans = [(first, min(first + size, count)) for first in range(0, count, size)]
    try:
        # This process only receives the reports meanwhile: some hundred thousand long-lived objects,
        # no cyclic garbage. With the collector on, each collection walked the reports received so far
        # again, on a CPU the workers need; paused, it walks them once.
        with _sigterm_unwinds(), collector_paused():
            return run_forked(work, spans, workers, start=_worker_start, lost=lost)
    except _Terminated:  # the workers are ended and waited for by now
        _die_of_sigterm()
    except Exception:  # WorkLost, or no pipe to be had (too many open files): scan here instead
        return None


def map_jobs(jobs: Sequence, work: Callable[[object], object],
             lost: Optional[Callable[[object, str], object]] = None) -> Optional[List[object]]:
    """``work`` over ``jobs`` on every CPU, or None when it is not worth it or not possible; ``lost(job,
    why)`` stands for a job that kills the worker process doing it, alone (a crash in C, the OOM killer)."""
    workers = workers_for(len(jobs))
    if workers <= 1:
        return None
    return scan_in_processes(len(jobs), lambda index: work(jobs[index]), workers,
                             lost=None if lost is None else (lambda index, why: lost(jobs[index], why)))
