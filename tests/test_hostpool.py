"""Many snapshot scans go to forked worker processes, one per CPU, and come back in order."""

from __future__ import annotations

import os

import pytest

from scanner.engine import hostpool

CPUS = len(os.sched_getaffinity(0))


def test_jobs_are_scanned_by_other_processes_and_come_back_in_input_order(monkeypatch):
    if CPUS < 2:
        pytest.skip("one CPU: the jobs are scanned in-process")
    monkeypatch.setenv("VFIO_SCAN_PROCESSES", "2")
    got = hostpool.map_jobs(list(range(40)), lambda n: (n * n, os.getpid()))
    assert [square for square, _ in got] == [n * n for n in range(40)]
    assert os.getpid() not in {pid for _, pid in got}


@pytest.mark.parametrize("env, jobs, workers", [
    ("1", 1000, 1),             # turned off
    ("", 5, 1),                 # too few jobs to be worth a fork
    ("", 1000, min(CPUS, 8)),   # one per CPU, at most eight
    ("64", 1000, min(CPUS, 8)),
    ("junk", 1000, 1),          # a value that is not a number: off, never a crash
])
def test_how_many_workers(monkeypatch, env, jobs, workers):
    monkeypatch.setenv("VFIO_SCAN_PROCESSES", env)
    assert hostpool.workers_for(jobs) == workers


def test_a_result_that_cannot_come_back_leaves_the_jobs_to_the_caller(monkeypatch):
    if CPUS < 2:
        pytest.skip("one CPU: the jobs are scanned in-process")
    monkeypatch.setenv("VFIO_SCAN_PROCESSES", "2")
    assert hostpool.map_jobs(list(range(40)), lambda n: (lambda: n)) is None  # a lambda does not pickle


def test_the_reports_coming_back_are_not_walked_by_the_collector_again_and_again(monkeypatch):
    """The parent only receives reports while the workers scan: its collector is paused meanwhile
    (each collection walked every report received so far), and on again once they are all in."""
    import gc

    if CPUS < 2:
        pytest.skip("one CPU: the jobs are scanned in-process")
    monkeypatch.setenv("VFIO_SCAN_PROCESSES", "2")
    collections = []

    def count(phase, info):
        if phase == "start":
            collections.append(info["generation"])

    assert gc.isenabled()
    gc.callbacks.append(count)
    try:
        got = hostpool.map_jobs(list(range(40)), lambda n: [[n, i] for i in range(2000)])  # 80,000 containers
    finally:
        gc.callbacks.remove(count)
    assert [len(made) for made in got] == [2000] * 40 and got[39][1999] == [39, 1999]
    assert len(collections) <= 2 and gc.isenabled()  # with the collector on: over a hundred


def test_a_worker_forked_while_the_parent_pauses_its_collector_runs_with_it(monkeypatch):
    """The workers are forked once the parent has paused its collector for the reports: each scans host
    after host all the same, so it turns its collector on."""
    import gc

    if CPUS < 2:
        pytest.skip("one CPU: the jobs are scanned in-process")
    monkeypatch.setenv("VFIO_SCAN_PROCESSES", "2")
    gc.disable()  # as the parent is while the reports come back
    try:
        got = hostpool.map_jobs(list(range(20)), lambda n: (gc.isenabled(), os.getpid()))
    finally:
        gc.enable()
    assert len({pid for _, pid in got} - {os.getpid()}) >= 1  # forked workers did the jobs
    assert all(enabled for enabled, _ in got)
