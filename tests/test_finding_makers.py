"""``Finding.passed``/``fail``/``warn``/``skip``/``error`` make what the dataclass's own constructor makes
(the same fields, in the same order, the same types), or raise what it raises."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from scanner.engine.model import Evidence, Finding, Step

MAKERS = {"pass": Finding.passed, "fail": Finding.fail, "warn": Finding.warn, "skip": Finding.skip,
          "error": Finding.error}

optional = st.fixed_dictionaries({}, optional={
    "subject": st.sampled_from(["host", "0000:01:00.0", ""]),
    "observed": st.sampled_from(["", "on", 3]),
    "expected": st.sampled_from(["", "off"]),
    "evidence": st.sampled_from([(), [], [Evidence("/proc/cmdline", "quiet")], (Evidence("a", "b"),), "ab", None]),
    "remediation": st.sampled_from([(), [Step("reload", "modules", ["modprobe vfio-pci"])], 5]),
    "severity": st.sampled_from([None, "low", "critical", "urgent"]),
    "rule_id": st.sampled_from(["", "VFIO-001"]),
    "waiver": st.sampled_from([None, {"justification": "lab"}]),
    "original_status": st.sampled_from([None, "fail"]),
    "status": st.just("pass"),  # given twice: refused
    "colour": st.just("red"),  # no such field: refused
})


class Tuple2(tuple):
    """A tuple subclass: the constructor makes it a plain tuple."""


def outcome(make):
    try:
        finding = make()
    except Exception as exc:  # noqa: BLE001 - the very error is what is compared
        return ("raised", type(exc), str(exc).replace("Finding._make()", "Finding.__init__()"))
    return ("made", type(finding), list(finding.__dict__.items()),
            [type(v) for v in finding.__dict__.values()], repr(finding))


@settings(max_examples=500, deadline=None)
@given(status=st.sampled_from(sorted(MAKERS)), message=st.sampled_from(["m", ""]), kw=optional,
       subclassed=st.booleans())
def test_each_maker_makes_what_the_constructor_makes(status, message, kw, subclassed):
    if subclassed and isinstance(kw.get("evidence"), tuple):
        kw["evidence"] = Tuple2(kw["evidence"])
    got = outcome(lambda: MAKERS[status](message, **kw))
    expected = outcome(lambda: Finding(status=status, message=message, **kw))
    if got[0] == "raised" and expected[0] == "raised":  # the maker's name may differ in a TypeError
        assert got[1] is expected[1]
    else:
        assert got == expected


def test_a_subclass_is_made_by_its_own_constructor():
    class Noted(Finding):
        pass

    made = Noted.fail("m", subject="0000:01:00.0")
    assert type(made) is Noted and made == Noted(status="fail", message="m", subject="0000:01:00.0")


def test_an_unknown_status_is_refused_as_before():
    try:
        Finding._make("maybe", "m")
    except ValueError as exc:
        assert str(exc) == "unknown finding status 'maybe'"
    else:
        raise AssertionError("an unknown status was accepted")


def test_a_made_finding_keeps_its_attributes_in_as_little_room_as_a_constructed_one():
    """A scan of thousands of targets holds over a hundred thousand findings: each one's attributes share
    their names with every other finding's, as the constructor's do, instead of a table of their own."""
    import sys

    made = Finding.passed("m", subject="0000:01:00.0", evidence=[Evidence("a", "b")])
    constructed = Finding(status="pass", message="m", subject="0000:01:00.0", evidence=[Evidence("a", "b")])
    assert sys.getsizeof(made.__dict__) <= sys.getsizeof(constructed.__dict__)
