"""The table report is written one subject's section at a time, and reads as it did when it was made whole.

The reference is the table report as it was before it streamed: every line of one host's text
collected in a list, joined, stripped at the end (kept here verbatim). Held to it: generated
reports (host and device tables, waived and error rows, notes, policy lines, ``-v`` evidence and
fixes, colour, narrow terminals). And the text comes in pieces: the first is ready before the
later devices' tables are laid out.
"""

from __future__ import annotations

from unittest import mock

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import reports.table
from reports.table import (CHECK_WIDTH, HEADERS, LABEL, MIN_CHECK_WIDTH, NO_TARGETS, WIDTH, _command,
                           _header, _paint, _paint_rows, _policy, _result, _subjects, _wrap)
from reports.table_format import pieces, render
from reports.text_table import simple_table
from scanner.engine.model import Finding
from scanner.engine.report import Report
from scanner.base.terminal_text import for_terminal
from test_text_table import scan_reports


def reference_fixes(report, verbose, width=WIDTH, color=False) -> list:
    lines = []
    for f in report.findings:
        wanted = f.status in ("fail", "warn", "error") and (f.remediation or verbose)
        if not wanted and not (verbose and f.evidence):
            continue
        subject = "" if f.subject == "host" else f" {f.subject}"
        lines.append(_paint(LABEL[f.status], color) + for_terminal(f" {f.rule_id} {f.rule}{subject}"))
        if verbose:
            lines.append(_wrap(f.message, width, "    "))
            if f.observed or f.expected:
                lines.append(_wrap(f"observed: {f.observed or '-'} | expected: {f.expected or '-'}", width, "    "))
            for e in f.evidence:
                lines.append(_wrap(f"evidence {e.source}: {e.value}", width, "    "))
        if f.status in ("fail", "warn", "error"):
            for step in f.remediation:
                flags = [step.phase] + (["manual"] if step.manual else []) + (["reboot"] if step.requires_reboot else [])
                lines.append(_wrap(f"fix [{', '.join(flags)}] {step.summary}", width, "    "))
                for cmd in step.commands:
                    lines.extend(_command(cmd, width))
        if f.waiver:
            lines.append(_wrap(f"waived: {f.waiver.get('justification')} (expires {f.waiver.get('expires') or 'never'})",
                               width, "    "))
        lines.append("")
    return lines


def reference_device_title(report, subject: str) -> str:
    entry = next((d for d in report.devices if d.get("address") == subject), None)
    if entry is None:
        return for_terminal(subject)
    ids = f"{entry.get('vendor') or '????'}:{entry.get('device') or '????'}"
    if entry.get("vendor_name"):
        name = f"{entry['vendor_name']} {entry.get('device_name') or 'Device ' + (entry.get('device') or '????')}"
    else:
        name = entry.get("class_name") or ""
    parts = [subject, f"{ids} {name}".strip(), f"driver {entry.get('driver') or 'none'}"]
    return for_terminal(" · ".join(parts))


def reference_render_one(report, verbose, width=WIDTH, color=False) -> str:
    """The table of one host as it was made before it streamed: all of it in one list, then joined."""
    out = [_header(report, color), ""]
    out.extend(_policy(report, width))
    for note in report.notes:
        out.append(_wrap(f"ERROR {note}", width))
    check_w = CHECK_WIDTH if width >= WIDTH else max(MIN_CHECK_WIDTH, CHECK_WIDTH * width // WIDTH)
    for subject, findings in _subjects(report).items():
        untargeted = [f for f in findings if f.status == "skip" and f.message == NO_TARGETS] if subject == "host" else []
        if len(untargeted) > 1:
            findings = [f for f in findings if not (f.status == "skip" and f.message == NO_TARGETS)]
        rows = [(LABEL[f.status], for_terminal(f.rule_id), for_terminal(f.title), _result(f)) for f in findings]
        status_w = max([len("status") + 2] + [len(r[0]) for r in rows])
        rule_w = max([len("rule") + 2] + [len(r[1]) for r in rows])
        result_w = max(20, width - status_w - rule_w - check_w - 3 * 2)
        out.append("host" if subject == "host" else reference_device_title(report, subject))
        if rows:
            out.append(_paint_rows(simple_table(HEADERS, rows, [None, None, check_w, result_w]), color))
        if len(untargeted) > 1:
            out.append(_wrap(f"Device rules not run ({', '.join(f.rule_id for f in untargeted)}): no device "
                             "targets. Name the devices to pass through with --device or --class; "
                             "'vfio-scan groups' lists every device and its IOMMU group.", width))
        out.append("")
    fixes = reference_fixes(report, verbose, width, color)
    if fixes:
        out.append("Details and fixes" if verbose else "What to do")
        out.append("")
        out.extend(fixes)
    if any(f.status in ("fail", "warn") for f in report.findings):
        out.append("Apply the fixes above, reboot where marked, then run 'vfio-scan scan' again.")
    return "\n".join(out).rstrip() + "\n"


def untargeted_skips(count: int) -> list:
    return [Finding.skip(NO_TARGETS, rule_id=f"VFIO-0{10 + i}", rule="device-rule", title="A device rule")
            for i in range(count)]


maybe = st.none() | st.sampled_from(["10de", "2204", "", "\x1b[2J"])
device_entries = st.lists(st.fixed_dictionaries(
    {"address": st.sampled_from(["0000:01:00.0", "0000:02:00.0\x1b[2J", "0000:03:00.0"])},
    optional={"vendor": maybe, "device": maybe, "vendor_name": maybe, "device_name": maybe, "class_name": maybe,
              "driver": maybe}), max_size=4)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(report=scan_reports(), verbose=st.booleans(), color=st.booleans(),
       width=st.sampled_from([WIDTH, 80, 60, 132]), untargeted=st.sampled_from([0, 1, 3]), devices=device_entries)
def test_the_streamed_table_reads_as_the_whole_one_did(report, verbose, color, width, untargeted, devices):
    report.findings = list(report.findings) + untargeted_skips(untargeted)
    report.devices = devices  # the same address twice: the first entry names it
    expected = reference_render_one(report, verbose, width, color)
    options = {"verbose": verbose, "color": color, "width": width}
    assert "".join(pieces([report], options)) == expected
    assert render([report], options) == expected


def device_report(devices: int) -> Report:
    findings = [Finding.passed("fine", subject=f"0000:{n:02x}:00.0", rule_id=f"VFIO-0{r}", rule="a-rule", title="A rule")
                for n in range(devices) for r in (10, 11, 12)]
    return Report(host={"hostname": "h", "kernel": "6.1", "arch": "x86_64", "cpu_vendor": "amd", "source": "root"},
                  findings=findings, started_at="2024-01-01T00:00:00+00:00", duration_s=0.0)


def test_the_table_is_written_one_device_section_at_a_time():
    report = device_report(50)
    with mock.patch.object(reports.table, "simple_table", wraps=simple_table) as laid_out:
        stream = iter(pieces([report], {}))
        next(stream)  # the verdict
        taken = [next(stream) for _ in range(3)]  # ... and the first device sections
        assert laid_out.call_count <= 3
        rest = list(stream)
        assert laid_out.call_count == 50
    assert len(rest) > 40  # a piece per section, not the rest of the text in one
    assert "".join(taken).count("0000:0") == 3
