"""A finding written straight to JSON reads exactly as its dict did through ``json.dumps`` (indent 2,
not ASCII-only, lone surrogates escaped), at any depth of a document, and so does the whole report."""

from __future__ import annotations

import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reports.finding_json import finding_text
from reports.json import render
from reports.jsontext import escape_surrogates
from scanner.engine.model import Evidence, Finding, Step
from scanner.engine.report import Report

text = st.text(st.characters(blacklist_categories=()), max_size=12) | st.sampled_from(
    ["", "host", "0000:01:00.0", "\udcff", "é\x1b[2J\n\t\"\\", "works now, lost at next boot: x"])


class Noted(Finding):
    """A plugin's own finding class."""


@st.composite
def findings(draw):
    status = draw(st.sampled_from(["pass", "fail", "warn", "skip", "error", "waived"]))
    kind = Noted if draw(st.integers(0, 9)) == 0 else Finding
    finding = kind(
        status=status, message=draw(text), subject=draw(text), observed=draw(text), expected=draw(text),
        evidence=draw(st.lists(st.builds(Evidence, text, text), max_size=3)),
        remediation=draw(st.lists(st.builds(Step, text, st.just("modules"), st.lists(text, max_size=2),
                                            action=st.none() | st.just({"kind": "module", "n": 1.5})), max_size=2)),
        severity=draw(st.sampled_from([None, "low", "critical"])), rule_id=draw(text), rule=draw(text),
        title=draw(text),
        waiver={"justification": draw(text)} if status == "waived" else None,
        original_status="fail" if status == "waived" else None)
    odd = draw(st.sampled_from([None, "observed", "evidence"]))  # what a rule could still slip through
    if odd == "observed":
        object.__setattr__(finding, "observed", 3)
    elif odd == "evidence":
        object.__setattr__(finding, "evidence", (Evidence("a", 7),))
    return finding


def reference(finding, level):
    return escape_surrogates(json.dumps(finding.to_dict(), indent=2, ensure_ascii=False).replace("\n", "\n" + "  " * level))


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(finding=findings(), level=st.integers(0, 5))
def test_a_finding_reads_as_its_dict_did(finding, level):
    assert finding_text(finding, level) == reference(finding, level)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(hosts=st.lists(st.lists(findings(), max_size=6), min_size=1, max_size=3))
def test_a_report_and_a_fleet_read_as_their_documents_did(hosts):
    reports = [Report(host={"hostname": f"h{n}", "source": "snapshot"}, findings=found,
                      started_at="2024-01-01T00:00:00+00:00", duration_s=0.0) for n, found in enumerate(hosts)]
    fleet = len(reports) > 1
    from reports.json import document

    expected = escape_surrogates(json.dumps(document(reports, fleet), indent=2, ensure_ascii=False) + "\n")
    assert render(reports, {"fleet": fleet}) == expected
