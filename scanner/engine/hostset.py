"""The hosts one run scans, and how each becomes a report even when it cannot be read.

A scan reads one host (this machine, ``--root DIR``) or many (``--snapshot FILE...``,
``vfio-scan fleet``). A many-host run never stops at a broken host: a snapshot that is not JSON,
an unreachable ssh host or a failed collection becomes a report whose ``notes`` say why (exit
3), and every other host is still scanned and reported. Each host is loaded only when its turn
comes and dropped once scanned, so a fleet of hundreds does not hold every snapshot in memory.
"""

from __future__ import annotations

import _thread  # threading.Lock is _thread.allocate_lock; threading itself is imported only for a pool
from typing import Callable, List, Optional, Sequence

from scanner import __version__
from scanner.base.gc_pause import collector_paused
from scanner.base.record import record
from scanner.engine.report import Report, local_timestamp


class HostUnavailable(Exception):
    """A host that could not be read at all (its snapshot, its ssh connection, its collector)."""


@record
class HostJob:
    """One host: ``load()`` returns a Host (the scanner/host interface) or raises HostUnavailable."""

    label: Optional[str]  # how the run names it (inventory name, snapshot file); None for a lone host
    load: Callable[[], object]
    source: str = "snapshot"


def unavailable_report(job: HostJob, reason: str, fail_on: str) -> Report:
    """The report of a host that could not be scanned: no findings, the reason in ``notes``."""
    return Report(
        host={"hostname": job.label or "?", "kernel": None, "arch": None, "cpu_vendor": None, "source": job.source,
              "label": job.label or "?"},
        findings=[],
        started_at=local_timestamp(),
        duration_s=0.0,
        tool={"name": "vfio-scan", "version": __version__},
        fail_on=fail_on,
        notes=[reason],
    )


class HostSet:
    """The hosts of one run, scanned one by one or ``parallel`` at a time, reports in input order.

    ``fleet`` asks the renderers for the merged fleet output even for a single host (what
    ``vfio-scan fleet`` promises a script); ``progress`` is told ``(done, total, job, report)``;
    ``guard``, a context manager, is held while the hosts are read and scanned and no longer
    (``vfio-scan fleet``'s signal handling: a Ctrl-C while the report is written is an ordinary one).
    """

    def __init__(self, jobs: Sequence[HostJob], parallel: int = 1, fleet: bool = False,
                 progress: Optional[Callable] = None, processes: bool = False, guard=None):
        self.jobs = list(jobs)
        self.guard = guard
        self.processes = processes  # local, CPU-bound jobs (snapshot files): may go to worker processes
        self.parallel = max(1, parallel)
        self.fleet = fleet or len(self.jobs) > 1
        self.progress = progress
        self._done = 0
        self._lock = _thread.allocate_lock()

    def scan(self, scan_one: Callable[[object], Report], fail_on: str = "fail",
             finish: Optional[Callable[[Report], None]] = None) -> List[Report]:
        """Every host's report; ``finish(report)`` is run on each finished report in the worker process
        that made it, when the hosts are scanned in such (made there, what it adds is spread over
        every CPU with the scans); it may add to ``report.prepared`` and must change nothing else."""
        if self.guard is None:
            return self._scan_all(scan_one, fail_on, finish)
        with self.guard:
            return self._scan_all(scan_one, fail_on, finish)

    def _scan_all(self, scan_one: Callable[[object], Report], fail_on: str, finish=None) -> List[Report]:
        # many snapshot files, one after another in each process (never threads: a pause is process-wide)
        one_by_one = self.processes and self.parallel == 1 and len(self.jobs) > 1
        scan_job = _collected_after if one_by_one else self._scan_job

        def one(job: HostJob) -> Report:
            report = scan_job(job, scan_one, fail_on)
            if self.progress:
                with self._lock:
                    self._done += 1
                    self.progress(self._done, len(self.jobs), job, report)
            return report

        if self.processes and self.progress is None and len(self.jobs) > 1:
            from scanner.engine.hostpool import map_jobs

            def in_worker(job: HostJob) -> Report:
                report = scan_job(job, scan_one, fail_on)
                if finish is not None:
                    finish(report)
                return report

            def lost(job: HostJob, why: str) -> Report:  # a bug must cost one host, never the whole report
                return unavailable_report(job, f"internal error while scanning: the worker process scanning it {why}",
                                          fail_on)

            reports = map_jobs(self.jobs, in_worker, lost)
            if reports is not None:
                return reports
        if self.parallel == 1 or len(self.jobs) == 1:
            return [one(job) for job in self.jobs]
        # Imported here: only fleets and multi-snapshot runs scan in parallel, and
        # concurrent.futures (with logging, threading, queue) is a noticeable part of a lone scan's start-up.
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(max_workers=min(self.parallel, len(self.jobs))) as pool:
            return list(pool.map(one, self.jobs))

    @staticmethod
    def _scan_job(job: HostJob, scan_one, fail_on: str) -> Report:
        try:
            host = job.load()
        except HostUnavailable as exc:
            return unavailable_report(job, str(exc), fail_on)
        try:
            report = scan_one(host)
        except Exception as exc:  # in a many-host run, a bug must cost one host, never the whole report
            if job.label is None:
                raise
            return unavailable_report(job, f"internal error while scanning: {type(exc).__name__}: {exc}", fail_on)
        if job.label:
            report.host["label"] = job.label
        # a host read only in part (a snapshot whose collector stopped at a limit) is no verdict
        report.notes.extend(getattr(host, "collection_limits", ()))
        return report


def _collected_after(job: HostJob, scan_one, fail_on: str) -> Report:
    """:meth:`HostSet._scan_job` with the cyclic garbage collector paused, and what the job left
    collected at once when it is done.

    Why: a scan leaves its host in a reference cycle (the facts keep the host, the host its whole
    snapshot). With the collector on, the snapshot's containers are walked again and again as they
    age through the generations during the scan, and the finished host waits for a rare full
    collection to be freed, several snapshots held at once. Paused, everything the job made is
    still in the youngest generation at its end: one walk of it frees the host and its snapshot,
    and keeps the report (a job makes few cycles: facts and readings, a host's worth).
    """
    with collector_paused(free_after=True):
        return HostSet._scan_job(job, scan_one, fail_on)
