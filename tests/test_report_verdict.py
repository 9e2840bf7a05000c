"""A report's verdict (what blocks, whether it is incomplete, its readiness and exit code) is what the
plain definitions kept below give, for every mix of statuses, severities, notes and ``--fail-on``."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from scanner.engine.model import STATUSES, Finding
from scanner.engine.report import FAIL_ON_CHOICES, Report, is_blocking


def reference_blocking(report):
    return [f for f in report.findings if is_blocking(f, report.fail_on)]


def reference_incomplete(report):
    return bool(report.notes) or any(f.status == "error" for f in report.findings)


def reference_readiness(report):
    if reference_blocking(report) or reference_incomplete(report):
        return "NOT_READY"
    return "READY_WITH_WARNINGS" if any(f.status in ("warn", "fail") for f in report.findings) else "READY"


findings = st.builds(lambda status, severity: Finding(status=status, message="m", severity=severity,
                                                      waiver={"justification": "j"} if status == "waived" else None),
                     st.sampled_from(STATUSES), st.sampled_from([None, "info", "low", "medium", "high", "critical"]))


@settings(max_examples=500, deadline=None)
@given(found=st.lists(findings, max_size=8), fail_on=st.sampled_from(FAIL_ON_CHOICES),
       notes=st.lists(st.just("snapshot x: not valid JSON"), max_size=1))
def test_the_verdict_is_the_plain_definitions(found, fail_on, notes):
    report = Report(host={"hostname": "h"}, findings=found, started_at="t", duration_s=0.0, fail_on=fail_on, notes=notes)
    assert report.blocking == reference_blocking(report)
    assert all(a is b for a, b in zip(report.blocking, reference_blocking(report)))
    assert report.incomplete == reference_incomplete(report)
    assert report.readiness == reference_readiness(report)
    assert report.exit_code == (3 if reference_incomplete(report) else 1 if reference_blocking(report) else 0)
