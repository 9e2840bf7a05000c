"""The rules run without cyclic garbage collection walking what they make, and the collector is left
as it was found (on stays on, off stays off), even when a rule fails; one host of many is freed as soon
as its job is done."""

from __future__ import annotations

import gc
import weakref

import pytest

from scanner.base.gc_pause import collector_paused

from scanner.engine.model import Finding, Rule
from scanner.engine.runner import Scan, run_rules


def _rule(check, rule_id="GCP-100"):
    return Rule(id=rule_id, name="collector-rule", scope="host", severity="low", title="collector", check=check,
                docs=f"{rule_id} collector-rule: a rule for the collector's tests.")


def _many_findings(facts, scan):
    """Enough new containers to set off collections of every generation, were the collector on."""
    kept = [[n] for n in range(200_000)]
    yield Finding.passed(f"made {len(kept)} lists")


@pytest.fixture
def collections():
    seen = []

    def count(phase, info):
        if phase == "start":
            seen.append(info["generation"])

    gc.collect()  # a fresh count: no collection falls due between here and the code under test
    gc.callbacks.append(count)
    yield seen
    gc.callbacks.remove(count)


@pytest.mark.parametrize("enabled", [True, False])
def test_no_collection_while_the_rules_run_and_the_collector_is_left_as_found(collections, enabled):
    was = gc.isenabled()
    (gc.enable if enabled else gc.disable)()
    try:
        findings = run_rules([_rule(_many_findings)], facts=None, scan=Scan())
        assert gc.isenabled() is enabled
    finally:
        (gc.enable if was else gc.disable)()
    assert [f.status for f in findings] == ["pass"]
    assert collections == []


def test_a_rule_that_fails_leaves_the_collector_on(collections):
    def broken(facts, scan):
        raise RuntimeError("boom")

    assert gc.isenabled()
    findings = run_rules([_rule(broken)], facts=None, scan=Scan())
    assert gc.isenabled()
    assert [f.status for f in findings] == ["error"]


class _Host:
    """Stands for a scanned host: the facts keep the host, the host its facts (a reference cycle)."""


def test_a_host_job_is_freed_at_its_end_by_one_young_collection(collections):
    assert gc.isenabled()
    with collector_paused(free_after=True):
        host = _Host()
        host.facts = {"host": host, "readings": [[n] for n in range(200_000)]}
        gone = weakref.ref(host)
        del host
        assert collections == []  # no collection walked the readings while the job ran
        assert gone() is not None  # a cycle: only the collector frees it
    assert gone() is None
    assert collections == [0]
    assert gc.isenabled()


def test_a_host_job_is_freed_at_its_end_even_when_no_collection_is_due(collections):
    with collector_paused(free_after=True):
        host = _Host()
        host.facts = {"host": host, "snapshot": b"\0" * 50_000_000}  # one large buffer: few objects, much memory
        gone = weakref.ref(host)
        del host
        assert gc.get_count()[0] < gc.get_threshold()[0]  # the collector would not run on its own yet
    assert gone() is None


def test_a_paused_collector_stays_paused_and_nothing_is_collected_for_the_block(collections):
    gc.disable()
    try:
        with collector_paused(free_after=True):
            pass
        assert not gc.isenabled()
    finally:
        gc.enable()
    assert collections == []
