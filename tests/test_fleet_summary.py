"""The fleet summary counts, rule by rule, each host's worst status: held to the plain definition.

fleet_summary reads each host's findings once; these tests compare it, on fleets hypothesis makes
(hosts with no findings, several findings of one rule, host-level notes, every status), with a
reference that asks :func:`outcome` for every rule on every host.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from scanner.engine.fleet_summary import READINESS, fleet_summary, host_name, outcome, outcomes, rules_seen
from scanner.engine.model import STATUSES, Finding
from scanner.engine.report import Report, combined_exit_code

FINDINGS = st.lists(st.builds(
    lambda status, rule, severity, subject: Finding(status, "m", subject=subject, severity=severity, rule_id=rule,
                                                    rule=f"name-{rule}", title=f"title {rule}"),
    st.sampled_from(STATUSES), st.sampled_from(["VFIO-001", "VFIO-002", "VFIO-010", "X-1"]),
    st.sampled_from([None, "low", "critical"]), st.sampled_from(["host", "0000:01:00.0"])), max_size=6)
REPORTS = st.lists(st.builds(
    lambda findings, notes, name, fail_on: Report(host={"hostname": name, "label": name}, findings=findings,
                                                  started_at="t", duration_s=0.0, notes=notes, fail_on=fail_on),
    FINDINGS, st.lists(st.sampled_from(["snapshot x: not valid JSON", "cut"]), max_size=2),
    st.sampled_from(["a", "b", "c"]), st.sampled_from(["fail", "warn", "high"])), max_size=6)


def reference(reports) -> dict:
    rules = []
    for rule_id, name, title in rules_seen(reports):
        hosts = {status: 0 for status in STATUSES}
        hosts["not_run"] = 0
        failing = []
        for report in reports:
            got = outcome(report, rule_id)
            hosts[got or "not_run"] += 1
            if got in ("fail", "error"):
                failing.append(host_name(report))
        rules.append({"rule_id": rule_id, "rule": name, "title": title, "hosts": hosts, "failing_hosts": failing})
    return {
        "hosts": len(reports),
        "readiness": {state: sum(1 for r in reports if r.readiness == state) for state in READINESS},
        "incomplete": sum(1 for r in reports if r.incomplete),
        "host_errors": [{"host": host_name(r), "reason": note} for r in reports for note in r.notes],
        "rules": rules,
        "exit_code": combined_exit_code(reports),
    }


@settings(max_examples=400, deadline=None)
@given(REPORTS)
def test_the_summary_is_each_rules_worst_status_on_each_host(reports):
    assert fleet_summary(reports) == reference(reports)


@settings(max_examples=300, deadline=None)
@given(REPORTS)
def test_outcomes_of_a_host_are_its_outcome_rule_by_rule(reports):
    for report in reports:
        rules = {f.rule_id for f in report.findings}
        assert outcomes(report) == {rule: outcome(report, rule) for rule in rules}


def test_a_rule_failing_on_one_device_and_passing_on_another_fails_that_host():
    findings = [Finding("pass", "m", subject="0000:01:00.0", rule_id="VFIO-010"),
                Finding("fail", "m", subject="0000:02:00.0", rule_id="VFIO-010")]
    report = Report(host={"hostname": "a"}, findings=findings, started_at="t", duration_s=0.0)
    summary = fleet_summary([report, Report(host={"hostname": "b"}, findings=[], started_at="t", duration_s=0.0)])
    assert summary["rules"][0]["hosts"]["fail"] == 1 and summary["rules"][0]["hosts"]["not_run"] == 1
    assert summary["rules"][0]["failing_hosts"] == ["a"]
