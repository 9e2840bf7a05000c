"""The JSON and JUnit writers stream their text, and it is the very text of the whole-document writers.

The whole-document JUnit writer (the junit-xml package, then the tree re-parsed, fixed up and
re-serialised) is kept here as the reference; the JSON one is ``reports.json.document`` written by
``reports.jsontext.dumps``. Both are held to the streamed text over many generated reports, hostile
text included (control characters, lone surrogates, ANSI colours, XML specials, line breaks, huge
evidence). Then: the writers make each finding's text only when its turn comes, and a streamed
output reaches its file through the temporary file, never partly.
"""

from __future__ import annotations

import os
import pickle
import re
import sys
import xml.etree.ElementTree as ET

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reports import finding_json
from reports import json as json_format
from reports import junit
from reports.jsontext import dumps
from scanner.output import atomicwrite
from scanner.commands.common import write_outputs
from scanner.engine.model import PHASES, SEVERITIES, STATUSES, Evidence, Finding, Step
from scanner.engine.report import Report
from scanner.output.streaming import Streamed


# -- the whole-document JUnit writer, as it was, text cleaning included ---------------------------

ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b[@-_]")
ILLEGAL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x84\x86-\x9f\ud800-\udfff\ufdd0-\ufddf\ufffe\uffff"
                     + "".join(f"{chr(plane << 16 | 0xfffe)}{chr(plane << 16 | 0xffff)}" for plane in range(1, 17))
                     + "]")


def _visible(match) -> str:
    code = ord(match.group())
    return "\\x%02x" % code if code < 0x100 else "\\u%04x" % code if code < 0x10000 else "\\U%08x" % code


def clean(text) -> str:
    return ILLEGAL.sub(_visible, ANSI.sub("", str(text or "")))


def details(f) -> str:
    lines = [f.message, f"observed: {f.observed or '-'}", f"expected: {f.expected or '-'}"]
    lines += [f"evidence: {e.source}: {e.value}" for e in f.evidence]
    for step in f.remediation:
        tag = f"[{step.phase}{', manual' if step.manual else ''}{', reboot' if step.requires_reboot else ''}]"
        lines.append(f"fix {tag} {step.summary}")
        lines += [f"  $ {c}" for c in step.commands]
    return clean("\n".join(lines))


def host_slug(host: str) -> str:
    return re.sub(r"[^A-Za-z0-9_\-]", "_", host or "host") or "host"


def run_name(report) -> str:
    return report.host.get("label") or report.host.get("hostname") or "host"


def reference_junit(reports, options) -> str:
    from junit_xml import TestCase, TestSuite, to_xml_report_string

    def testcase(f, fail_on, slug):
        name = f"{f.rule_id} {f.title}" + ("" if f.subject == "host" else f" {f.subject}")
        case = TestCase(name=clean(name), classname=clean(f"{slug}.{f.rule or 'rule'}"),
                        stdout=details(f) if f.status in ("pass", "warn") else None)
        message = clean(f.message) or f"{f.rule_id} {f.status}"
        if f.status == "fail" or (f.status == "warn" and fail_on == "warn"):
            case.add_failure_info(message=message, output=details(f), failure_type=f.severity or "info")
        elif f.status == "error":
            case.add_error_info(message=message, output=details(f), error_type="error")
        elif f.status == "skip":
            case.add_skipped_info(message=message, output=details(f))
        elif f.status == "waived":
            w = f.waiver or {}
            why = f"waived: {w.get('justification', '')} (expires {w.get('expires') or 'never'})"
            case.add_skipped_info(message=clean(why), output=details(f))
        elif f.status == "warn":
            case.stdout = clean("WARNING: " + details(f))
        return case

    def suite(report, index):
        host = run_name(report)
        slug = host_slug(host)
        cases = [testcase(f, report.fail_on, slug) for f in report.findings]
        seen = {}
        for case in cases:
            key = (case.classname, case.name)
            seen[key] = seen.get(key, 0) + 1
            if seen[key] > 1:
                case.name = f"{case.name} #{seen[key]}"
        props = {"vfio-scan.version": report.tool.get("version", ""), "kernel": report.host.get("kernel") or "",
                 "arch": report.host.get("arch") or "", "cpu_vendor": report.host.get("cpu_vendor") or "",
                 "readiness": report.readiness, "source": report.host.get("source") or ""}
        ts = TestSuite(name=clean(f"vfio-scan:{host}"), test_cases=cases,
                       hostname=clean(report.host.get("hostname") or host), id=index,
                       timestamp=report.started_at, properties={k: clean(v) for k, v in props.items()})
        for note in report.notes:
            err = TestCase(name="host scan", classname=f"{slug}.scan")
            err.add_error_info(message=clean(note), output=clean(note), error_type="error")
            ts.test_cases.append(err)
        return ts

    xml = to_xml_report_string([suite(r, i) for i, r in enumerate(reports)], prettyprint=False, encoding="utf-8")
    root = ET.fromstring(xml)
    root.set("name", "vfio-scan")
    total_skipped = 0
    for elem, report in zip(root.findall("testsuite"), reports):
        elem.set("time", f"{max(report.duration_s, 0.0):.3f}")
        elem.set("timestamp", report.started_at)
        skipped = len(elem.findall("testcase/skipped"))
        elem.set("skipped", str(skipped))
        total_skipped += skipped
    root.set("skipped", str(total_skipped))
    root.set("time", f"{sum(r.duration_s for r in reports):.3f}")
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


def reference_json(reports, options) -> str:
    fleet = bool(options.get("fleet")) or len(reports) > 1
    return dumps(json_format.document(reports, fleet), end="\n")


# -- reports with hostile text --------------------------------------------------------------------

HOSTILE = ["\x1b[31m", "\x1b[0m", "\x1b[?25l", "\x1b", "\r", "\r\n", "\n", "\t", "&", "<", ">", '"', "'", "]]>",
           "&amp;", "\x00", "\x07", "\x0b", "\x7f", "\x85", "\x9b", "\ud800", "\udcff", "\ufdd0", "\ufffe", "\uffff",
           "\U0001fffe", "\U0010ffff", "é", "漢", "\u2028", "\\", "\\u0000", " ", ".", "#2"]
TEXT = st.lists(st.one_of(st.sampled_from(HOSTILE), st.characters(blacklist_categories=()),
                          st.text(max_size=5)), max_size=6).map("".join)
WORDS = st.sampled_from(["", "gpu01", "gpu01.dc1", "h\x1b[1m", "\x1b[0m", "a&b", "x\ud800"])
COMMANDS = st.lists(TEXT, max_size=9).map(tuple)
SHARED = [f"0000:11:{n:02x}.0" for n in range(10)]  # a list that many findings share, as group members do
ACTIONS = st.one_of(st.none(), st.fixed_dictionaries({"kind": st.sampled_from(["bind", "note"]),
                                                      "members": st.just(SHARED), "n": st.integers(-2, 2)}),
                    st.fixed_dictionaries({"kind": st.just("odd"), "value": st.sampled_from(
                        [float("nan"), ("a", 1), 1.5, {"k": [None, True]}])}))
STEPS = st.builds(Step, summary=TEXT, phase=st.sampled_from(PHASES), commands=COMMANDS,
                  requires_reboot=st.booleans(), manual=st.booleans(), persistent=st.booleans(), undo=COMMANDS,
                  action=ACTIONS)
HUGE = "x" * 70_000 + "\x1b[0m<&>\r"
EVIDENCE = st.builds(Evidence, source=TEXT, value=st.one_of(TEXT, TEXT, TEXT, st.just(HUGE)))


@st.composite
def findings(draw):
    status = draw(st.sampled_from(STATUSES))
    waived = status == "waived" or draw(st.booleans()) and status != "pass"
    return Finding(status=status, message=draw(TEXT), subject=draw(st.sampled_from(["host", "0000:01:00.0", "01:00.0"])),
                   observed=draw(TEXT), expected=draw(TEXT), evidence=draw(st.lists(EVIDENCE, max_size=3)),
                   remediation=draw(st.lists(STEPS, max_size=2)), severity=draw(st.sampled_from((None,) + SEVERITIES)),
                   rule_id=draw(st.sampled_from(["VFIO-010", "ACME-100", ""])),
                   rule=draw(st.sampled_from(["device-present", "", "x.y"])), title=draw(st.sampled_from(["T", "", "A&B"])),
                   waiver=draw(st.fixed_dictionaries({"justification": TEXT, "expires": st.one_of(st.none(), TEXT)}))
                   if waived else None, original_status="fail" if waived else None)


@st.composite
def reports(draw):
    host = {"hostname": draw(st.one_of(st.none(), WORDS)), "kernel": draw(st.one_of(st.none(), TEXT)),
            "arch": "x86_64", "cpu_vendor": draw(st.sampled_from([None, "intel"])), "source": "root"}
    if draw(st.booleans()):
        host["label"] = draw(WORDS)
    return Report(host=host, findings=draw(st.lists(findings(), max_size=6)),
                  started_at=draw(st.sampled_from(["2024-05-01T10:00:00+00:00", "", "2024\r\n\t&<"])),
                  duration_s=draw(st.sampled_from([0.0, 0.0004, 1.2345, -0.5, 12345.6789])),
                  targets=draw(st.lists(st.sampled_from(["0000:01:00.0", "02", "t\x1b"]), max_size=2)),
                  tool={"name": "vfio-scan", "version": draw(st.sampled_from(["0.1.0", None, "1\x00"]))},
                  fail_on=draw(st.sampled_from(["fail", "warn", "high"])),
                  notes=draw(st.lists(st.one_of(TEXT, st.just("")), max_size=2)),
                  policy=draw(st.one_of(st.none(), st.fixed_dictionaries({"file": TEXT, "waivers": st.integers(0, 3)}))))


RUNS = st.lists(reports(), min_size=1, max_size=3)
OPTIONS = st.fixed_dictionaries({"fleet": st.booleans()})
SETTINGS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                          HealthCheck.data_too_large])


def streamed(module, runs, options) -> str:
    pieces = list(module.render.pieces(runs, options))
    assert len(pieces) > 1
    return "".join(pieces)


@pytest.mark.parametrize("module, reference", [(junit, reference_junit), (json_format, reference_json)],
                         ids=["junit", "json"])
@SETTINGS
@given(runs=RUNS, options=OPTIONS)
def test_the_streamed_text_is_the_whole_document_writers(module, reference, runs, options):
    expected = reference(runs, options)
    assert streamed(module, runs, options) == expected
    assert module.render(runs, options) == expected


@SETTINGS
@given(runs=st.lists(reports(), min_size=2, max_size=4), options=OPTIONS, ahead=st.lists(st.booleans(), min_size=4))
def test_suites_made_ahead_are_written_as_the_whole_document_writers_text(runs, options, ahead):
    """A fleet's suites made ahead where each report was made (``render.prepare``, in a worker process,
    sent back pickled) are the same text in the document, first suite or not, beside suites made here."""
    expected = reference_junit(runs, options)
    for report, made_ahead in zip(runs, ahead):
        if made_ahead:
            report.prepared[junit.__name__] = pickle.loads(pickle.dumps(junit.render.prepare(report)))
    assert "".join(junit.render.pieces(runs, options)) == expected


@settings(max_examples=2000, deadline=None)
@given(st.lists(TEXT, max_size=4))
def test_text_is_cleaned_as_it_always_was(lines):
    finding = Finding(status="pass", message=lines[0] if lines else "m", observed="\n".join(lines),
                      evidence=tuple(Evidence(line, line) for line in lines))
    assert [junit.clean(line) for line in lines] == [clean(line) for line in lines]
    assert junit.details(finding) == details(finding)


def test_a_value_json_cannot_take_as_it_is_is_written_as_the_standard_library_writes_it():
    """A plugin's action holding NaN, a tuple, a nested dict: that finding's text is json.dumps's, indented in place."""
    odd = Step(summary="s", phase="binding", action={"kind": "odd", "nan": float("nan"), "pair": ("a", 1),
                                                      "deep": {"k": [None, True, "\ud800"]}})
    report = _report(3)
    report.findings[1] = Finding(status="fail", message="m", remediation=(odd,), rule_id="VFIO-010", title="T")
    for options in ({}, {"fleet": True}):
        assert streamed(json_format, [report], options) == reference_json([report], options)
    assert "NaN" in json_format.render([report], {})


def test_no_report_at_all_is_an_empty_junit_document():
    assert junit.render([], {}) == reference_junit([], {})


def test_a_large_scan_is_the_same_text_streamed(tmp_path):
    """Many findings on several hosts, names that repeat (made unique), shared lists: the same bytes."""
    step = Step(summary="bind", phase="binding", commands=tuple(SHARED), action={"kind": "bind", "members": SHARED})
    many = [Finding(status=STATUSES[n % len(STATUSES)], message=f"finding {n} <&>", subject="host" if n % 7 else "01:00.0",
                    evidence=(Evidence("/sys/x", "v" * (n % 50)),), remediation=(step,) * (n % 3), severity="high",
                    rule_id="VFIO-013", rule="driver-binding", title="Bound",
                    waiver={"justification": "j", "expires": None} if STATUSES[n % len(STATUSES)] == "waived" else None)
            for n in range(3000)]
    runs = [Report(host={"hostname": f"h{i}", "source": "root"}, findings=many, started_at="2024-05-01T10:00:00+00:00",
                   duration_s=1.0 + i, tool={"name": "vfio-scan", "version": "0.1.0"}, fail_on="warn") for i in range(3)]
    for module, reference in ((junit, reference_junit), (json_format, reference_json)):
        for options in ({}, {"fleet": True}):
            assert module.render(runs[:1], options) == reference(runs[:1], options)
        assert module.render(runs, {}) == reference(runs, {})


# -- each finding's text is made when its turn comes ------------------------------------------------

def _report(count: int) -> Report:
    return Report(host={"hostname": "h", "source": "root"}, started_at="2024-05-01T10:00:00+00:00", duration_s=0.0,
                  findings=[Finding(status="fail", message=f"finding-{n}", rule_id="VFIO-010", rule="device-present",
                                    title="T", subject=f"0000:00:{n:02x}.0") for n in range(count)],
                  tool={"name": "vfio-scan", "version": "0"})


@pytest.mark.parametrize("module, made", [(json_format, (finding_json, "finding_text")), (junit, (junit, "details"))],
                         ids=["json", "junit"])
def test_the_writer_has_written_the_first_finding_before_it_makes_the_last(monkeypatch, module, made):
    """What sets the peak: each finding's text made only when it is written, and then let go."""
    owner, name = made
    calls = []
    original = getattr(owner, name)
    monkeypatch.setattr(owner, name, lambda f, *rest: calls.append(f.message) or original(f, *rest))
    out = ""
    for piece in module.render.pieces([_report(50)], {}):
        out += piece
        if "finding-0" in out:
            break
    assert calls and calls[-1] == "finding-0" and "finding-49" not in calls


def test_a_streamed_output_reaches_its_file_only_whole(tmp_path, monkeypatch):
    """Pieces go into the temporary file as they come; the report appears under its name only when done."""
    monkeypatch.setattr(atomicwrite, "BLOCK_CHARS", 10)
    target = tmp_path / "report.json"
    target.write_text("old report\n")
    seen = []

    def pieces():
        for n in range(5):
            yield f"piece {n}\n"
            temporary = [p for p in os.listdir(tmp_path) if p != "report.json"]
            seen.append((len(temporary), sum(os.path.getsize(tmp_path / p) for p in temporary),
                         target.read_text()))
    write_outputs("scan", [(Streamed("json", "builtin", pieces()), str(target))])
    assert target.read_text() == "".join(f"piece {n}\n" for n in range(5))
    assert seen[-1][0] == 1 and seen[-1][1] >= 30 and seen[-1][2] == "old report\n"
    assert os.listdir(tmp_path) == ["report.json"]


def test_a_format_that_fails_midway_leaves_the_old_file_and_says_so_in_one_line(tmp_path, capsys):
    target = tmp_path / "report.xml"
    target.write_text("old report\n")

    def pieces():
        yield "<?xml" + " " * 5_000_000  # more than a block: written to the temporary file already
        raise KeyError("boom")
    assert not write_outputs("scan", [(Streamed("junit", "builtin", pieces()), str(target)), ("table\n", "-")])
    assert target.read_text() == "old report\n" and os.listdir(tmp_path) == ["report.xml"]
    out, err = capsys.readouterr()
    assert out == "table\n"
    assert err == "vfio-scan scan: error: format 'junit' from plugin builtin failed: KeyError: 'boom'\n"


def test_a_streamed_output_on_stdout_is_the_text(capsys):
    runs = [_report(3)]
    assert write_outputs("scan", [(Streamed("junit", "builtin", junit.render.pieces(runs, {})), "-")])
    assert capsys.readouterr().out == reference_junit(runs, {})
