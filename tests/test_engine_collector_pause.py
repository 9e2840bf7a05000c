"""The rules run without cyclic garbage collection walking what they make, and the collector is left
as it was found (on stays on, off stays off), even when a rule fails."""

from __future__ import annotations

import gc

import pytest

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
