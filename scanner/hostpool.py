"""Scan many snapshot files on every CPU: one forked worker process per CPU.

Why processes: a scan is pure Python and holds the GIL, so threads cannot spread it over CPUs;
a thousand snapshots took ten seconds on one CPU of two. Why fork: the workers inherit the
loaded rules, plugins, policy and targets as they are, so only a job's index goes to a worker
and only its finished report comes back (pickled). Reports come back in input order.

Used only where it pays and is safe: many local snapshot files (``scan --snapshot DIR``), on
Linux with more than one CPU. ``VFIO_SCAN_PROCESSES=1`` turns it off, ``=N`` caps the workers.
Anything that keeps the pool from starting or a report from coming back falls back to scanning
in this process, so the result never depends on it.
"""

from __future__ import annotations

import os
from typing import Callable, List, Optional, Sequence

#: fewer jobs than this are scanned in-process: forking costs more than it saves
MIN_JOBS = 16
MAX_WORKERS = 8

_work: Optional[Callable[[int], object]] = None  # set in the parent just before the fork


def _run(index: int):
    return _work(index)


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
        with context.Pool(workers) as pool:
            return pool.map(_run, range(count), chunksize=max(1, min(32, count // (workers * 4))))
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
