"""JUnit XML for CI dashboards (GitLab, Jenkins, Azure DevOps, GitHub actions).

One document with a declaration and a ``<testsuites>`` root; one ``<testsuite>`` per host; one
``<testcase>`` per finding *including passes* (so pass rates mean something). The ``junit-xml``
package builds the cases but is not trusted blindly: it silently writes a failure that has
neither message nor output as a pass, deletes control characters without trace and leaves
ANSI colour codes half-stripped, drops ``time`` for 0, and omits the root's ``skipped`` total.
This module cleans text first (visibly), always gives message and output, and fixes the
document afterwards.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

from junit_xml import TestCase, TestSuite, to_xml_report_string

ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b[@-_]")
#: What XML cannot hold (controls, lone surrogates, U+FFFE/U+FFFF), and what junit-xml deletes
#: without trace on top of that (C1 controls but NEL, the U+FDD0 block, each plane's last two
#: code points): all of it is replaced here, visibly, so that junit-xml finds nothing to delete.
ILLEGAL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x84\x86-\x9f\ud800-\udfff\ufdd0-\ufddf\ufffe\uffff"
                     + "".join(f"{chr(plane << 16 | 0xfffe)}{chr(plane << 16 | 0xffff)}" for plane in range(1, 17))
                     + "]")


def _visible(match) -> str:
    code = ord(match.group())
    return "\\x%02x" % code if code < 0x100 else "\\u%04x" % code if code < 0x10000 else "\\U%08x" % code


def clean(text) -> str:
    """Strip colours; replace characters XML cannot hold with a visible ``\\xNN`` (never silently)."""
    return ILLEGAL.sub(_visible, ANSI.sub("", str(text or "")))


def host_slug(host: str) -> str:
    """Jenkins splits classname on dots: ``gpu01.dc1`` becomes ``gpu01_dc1``."""
    return re.sub(r"[^A-Za-z0-9_\-]", "_", host or "host") or "host"


def details(f) -> str:
    lines = [f.message, f"observed: {f.observed or '-'}", f"expected: {f.expected or '-'}"]
    lines += [f"evidence: {e.source}: {e.value}" for e in f.evidence]
    for step in f.remediation:
        tag = f"[{step.phase}{', manual' if step.manual else ''}{', reboot' if step.requires_reboot else ''}]"
        lines.append(f"fix {tag} {step.summary}")
        lines += [f"  $ {c}" for c in step.commands]
    return clean("\n".join(lines))


def run_name(report) -> str:
    """The host's name in this run: a fleet's label for it (unique: inventory name, snapshot file), else its hostname."""
    return report.host.get("label") or report.host.get("hostname") or "host"


def testcase(f, fail_on: str, slug: str) -> TestCase:
    """The test case of one finding; ``slug`` is its host's :func:`host_slug`, made once per suite."""
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


def suite(report, index: int) -> TestSuite:
    host = run_name(report)
    slug = host_slug(host)
    cases = [testcase(f, report.fail_on, slug) for f in report.findings]
    seen = {}
    for case in cases:  # GitLab keeps only the first of duplicate names: make them unique
        key = (case.classname, case.name)
        seen[key] = seen.get(key, 0) + 1
        if seen[key] > 1:
            case.name = f"{case.name} #{seen[key]}"
    props = {"vfio-scan.version": report.tool.get("version", ""), "kernel": report.host.get("kernel") or "",
             "arch": report.host.get("arch") or "", "cpu_vendor": report.host.get("cpu_vendor") or "",
             "readiness": report.readiness, "source": report.host.get("source") or ""}
    props = {name: clean(value) for name, value in props.items()}
    ts = TestSuite(name=clean(f"vfio-scan:{host}"), test_cases=cases,
                   hostname=clean(report.host.get("hostname") or host), id=index,
                   timestamp=report.started_at, properties=props)
    for note in report.notes:  # a host that could not be scanned is an error, never a silent gap
        err = TestCase(name="host scan", classname=f"{slug}.scan")
        err.add_error_info(message=clean(note), output=clean(note), error_type="error")
        ts.test_cases.append(err)
    return ts


def render(reports, options) -> str:
    suites = [suite(r, i) for i, r in enumerate(reports)]
    xml = to_xml_report_string(suites, prettyprint=False, encoding="utf-8")
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
