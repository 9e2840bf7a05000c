"""The engine stamps each finding with its rule's identity as ``Finding.bind`` does, whatever the finding holds.

The engine makes the bound copy itself for the model's own Finding (``bind`` would validate again
what the engine has just checked); a subclass still binds its own way.
"""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from scanner.engine.runner import Scan, run_rule
from scanner.engine.model import SEVERITIES, Evidence, Finding, Rule, Step

words = st.text(min_size=1, max_size=12).filter(lambda t: t.strip())
subjects = st.sampled_from(["host", "0000:01:00.0", "0000:02:00.1"])


@st.composite
def findings(draw):
    return Finding(status=draw(st.sampled_from(["pass", "fail", "warn", "skip", "error"])), message=draw(words),
                   subject=draw(subjects), observed=draw(st.text(max_size=8)), expected=draw(st.text(max_size=8)),
                   evidence=tuple(Evidence(draw(words), draw(st.text(max_size=8))) for _ in range(draw(st.integers(0, 2)))),
                   remediation=tuple(Step(summary=draw(words), phase="binding", commands=("true",))
                                     for _ in range(draw(st.integers(0, 1)))),
                   severity=draw(st.none() | st.sampled_from(SEVERITIES)))


def make_rule(produced, severity="high", scope="host") -> Rule:
    return Rule(id="ACME-100", name="acme-rule", title="An acme rule", scope=scope, severity=severity,
                check=lambda facts, scan: list(produced), docs="What, why, how, fix.", plugin="acme")


@settings(max_examples=200, deadline=None)
@given(produced=st.lists(findings(), min_size=1, max_size=5), severity=st.sampled_from(SEVERITIES))
def test_each_finding_is_bound_as_bind_binds_it(produced, severity):
    rule = make_rule(produced, severity)
    got = run_rule(rule, facts=None, scan=Scan())
    expected = [f.bind(rule) for f in produced]
    assert got == expected
    assert [dataclasses.asdict(f) for f in got] == [dataclasses.asdict(f) for f in expected]
    assert all(type(f) is Finding for f in got)
    with pytest.raises(dataclasses.FrozenInstanceError):
        got[0].status = "pass"


class Stamped(Finding):
    """A plugin's own finding type, which binds its own way."""

    def bind(self, rule):
        return dataclasses.replace(super().bind(rule), message="stamped: " + self.message)


def test_a_finding_subclass_binds_its_own_way():
    rule = make_rule([Stamped(status="pass", message="fine")])
    (got,) = run_rule(rule, facts=None, scan=Scan())
    assert got.message == "stamped: fine" and type(got) is Stamped and got.rule_id == "ACME-100"
