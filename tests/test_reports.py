"""The three output formats: JSON (against its schema), JUnit (what CI dashboards read), the table.

Most tests run the real CLI on fixture trees; a few build reports in-process to reach corners a
tree cannot (several hosts in one JUnit document, empty messages, control characters).
"""

from __future__ import annotations

import copy
import json
import re
import shlex
import xml.etree.ElementTree as ET
from datetime import datetime

import jsonschema
import pytest

from clihelpers import (BUILTIN_IDS, HOST_IDS, ON_REQUEST_IDS, READY_HOST_IDS, ACME_RULE, RAISING_PLUGIN, by_rule, load_schema, make_plugin, no_dmar_host,
                        no_iommu_request_host, plugin_with_rule, run_cli, scan_json, stderr_lines,
                        unreadable_cmdline_host, warn_only_host)
from hosttree import ready_host
from reports import junit
from scanner.engine.runner import Scan
from scanner.host.tree import TreeHost
from scanner.engine.model import Evidence, Finding, Rule, Step
from scanner.output.formats import InvalidReport, validate_document
from scanner.engine.plugins import load_plugins
from scanner.engine.report import Report
from scanner.engine.scanning import scan_host

TREES = {
    "intel-ready": ready_host,
    "amd-ready": lambda root: ready_host(root, vendor="amd"),
    "no-dmar": no_dmar_host,
    "no-iommu-request": no_iommu_request_host,
    "warn-only": warn_only_host,
    "unreadable-cmdline": unreadable_cmdline_host,
}
EXPECTED_EXIT = {"intel-ready": 0, "amd-ready": 0, "no-dmar": 1, "no-iommu-request": 1, "warn-only": 0,
                 "unreadable-cmdline": 0}


@pytest.fixture(params=sorted(TREES))
def any_tree(request, tmp_path):
    return request.param, TREES[request.param](tmp_path / request.param).root


@pytest.fixture(scope="module")
def validator():
    schema = load_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def schema_errors(validator, doc):
    return [f"/{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(doc)]


def in_process_report(root, fail_on="fail", hostname=None) -> Report:
    tree_root = root
    if hostname:
        (tree_root / "proc/sys/kernel/hostname").write_text(hostname + "\n")
    rules = load_plugins(autoload=False).sorted_rules()
    return scan_host(TreeHost(str(tree_root)), rules, Scan(fail_on=fail_on))


# -- JSON --------------------------------------------------------------------------------------

def test_json_validates(any_tree, validator):
    name, root = any_tree
    proc, doc = scan_json(root)
    assert proc.returncode == EXPECTED_EXIT[name], proc.stderr
    assert schema_errors(validator, doc) == []
    assert doc["tool"] == {"name": "vfio-scan", "version": "0.1.0"}
    assert doc["host"]["source"] == "root"
    assert len(doc["findings"]) == len(BUILTIN_IDS)
    counts = {s: sum(1 for f in doc["findings"] if f["status"] == s) for s in ("pass", "fail", "warn", "skip", "error")}
    assert {s: doc["summary"][s] for s in counts} == counts


def test_json_validates_with_an_error_finding(intel_host, tmp_path, validator):
    proc, doc = scan_json(intel_host.root, pythonpath=make_plugin(tmp_path / "site", RAISING_PLUGIN))
    assert proc.returncode == 3
    assert schema_errors(validator, doc) == []


def test_json_failures_carry_evidence_and_remediation(tmp_path):
    proc, doc = scan_json(no_iommu_request_host(tmp_path / "h").root)
    f = by_rule(doc)["VFIO-004"]
    assert f["status"] == "fail" and f["observed"] and f["expected"]
    assert any(e["source"] == "/proc/cmdline" for e in f["evidence"])
    commands = [c for step in f["remediation"] for c in step["commands"]]
    assert "update-grub" in commands
    assert any(step["requires_reboot"] and step["phase"] == "boot" for step in f["remediation"])


def test_skip_carries_its_reason(tmp_path):
    proc, doc = scan_json(unreadable_cmdline_host(tmp_path / "h").root)
    f = by_rule(doc)["VFIO-004"]
    assert f["status"] == "skip"
    assert "/proc/cmdline" in f["message"]


def test_validate_option(any_tree, validator):
    name, root = any_tree
    proc = run_cli("scan", "--root", root, "--format", "json", "--validate")
    assert proc.returncode == EXPECTED_EXIT[name]
    assert proc.stderr == ""
    assert schema_errors(validator, json.loads(proc.stdout)) == []


def test_json_file_beside_table(intel_host, tmp_path, validator):
    out = tmp_path / "report.json"
    proc = run_cli("scan", "--root", intel_host.root, "--json", out, "--validate")
    assert proc.returncode == 0
    assert "Readiness: READY" in proc.stdout
    assert schema_errors(validator, json.loads(out.read_text())) == []


def test_a_finding_without_message_is_caught_at_the_boundary(intel_host, tmp_path):
    """A plugin finding with an empty message would break the contract: the engine turns it into an
    error naming the plugin (exit 3), and the report written under --validate is still valid."""
    site = make_plugin(tmp_path / "site", plugin_with_rule(ACME_RULE, 'yield Finding.passed("")'))
    out = tmp_path / "r.json"
    proc = run_cli("scan", "--root", intel_host.root, "--format", "json", "--validate", "-o", out, pythonpath=site)
    assert proc.returncode == 3
    assert "Traceback" not in proc.stderr
    doc = json.loads(out.read_text())
    acme = [f for f in doc["findings"] if f["rule_id"] == "ACME-100"]
    assert [f["status"] for f in acme] == ["error"]
    assert "without a message" in acme[0]["message"] and "acme" in acme[0]["message"]


@pytest.mark.parametrize("breakage", ["missing findings", "bad status", "naive timestamp", "extra key",
                                      "bad rule id", "negative count", "bad readiness", "bad phase"])
def test_broken_document_fails_validation(breakage, intel_host, tmp_path, validator):
    good = scan_json(no_iommu_request_host(tmp_path / "h").root)[1]
    assert schema_errors(validator, good) == []
    doc = copy.deepcopy(good)
    if breakage == "missing findings":
        del doc["findings"]
    elif breakage == "bad status":
        doc["findings"][0]["status"] = "maybe"
    elif breakage == "naive timestamp":
        doc["started_at"] = "2024-05-01 10:00:00"
    elif breakage == "extra key":
        doc["findings"][0]["colour"] = "red"
    elif breakage == "bad rule id":
        doc["findings"][0]["rule_id"] = "vfio-1"
    elif breakage == "negative count":
        doc["summary"]["fail"] = -1
    elif breakage == "bad readiness":
        doc["summary"]["readiness"] = "MOSTLY"
    elif breakage == "bad phase":
        by_rule(doc)["VFIO-004"]["remediation"][0]["phase"] = "someday"
    assert schema_errors(validator, doc)
    with pytest.raises(InvalidReport):
        validate_document(doc)
    validate_document(good)


# -- JUnit -------------------------------------------------------------------------------------

def junit_of(root, *args, **kw):
    proc = run_cli("scan", "--root", root, "--format", "junit", *args, **kw)
    assert proc.stdout.startswith("<?xml"), proc.stderr
    return proc, ET.fromstring(proc.stdout.encode("utf-8"))


def cases_by_rule(suite):
    return {case.get("name").split()[0]: case for case in suite.findall("testcase")}


ISO_WITH_T = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$")


def test_junit_document_shape(any_tree):
    name, root = any_tree
    proc, xml_root = junit_of(root)
    assert proc.returncode == EXPECTED_EXIT[name]
    text = proc.stdout
    assert re.match(r'<\?xml version="1\.0" encoding="UTF-8"\?>\n<testsuites[ >]', text)
    assert text.count("<?xml") == 1 and text.count("<testsuites") == 1
    assert xml_root.tag == "testsuites"
    suites = xml_root.findall("testsuite")
    assert len(suites) == 1
    suite = suites[0]
    assert suite.get("name") == "vfio-scan:testhost"
    assert suite.get("hostname") == "testhost"
    assert ISO_WITH_T.match(suite.get("timestamp")), suite.get("timestamp")
    datetime.fromisoformat(suite.get("timestamp"))
    float(suite.get("time"))
    doc = scan_json(root)[1]
    cases = suite.findall("testcase")
    assert len(cases) == len(doc["findings"]) == len(BUILTIN_IDS)  # passes included
    keys = [(c.get("classname"), c.get("name")) for c in cases]
    assert len(set(keys)) == len(keys)
    for case, finding in zip(cases, doc["findings"]):
        assert case.get("classname") == f"testhost.{finding['rule']}"
        assert case.get("name") == f"{finding['rule_id']} {finding['title']}"
    # the counts a dashboard shows agree with the report
    summary = doc["summary"]
    assert int(suite.get("tests")) == len(BUILTIN_IDS)
    assert int(suite.get("failures")) == summary["fail"] == len(suite.findall("testcase/failure"))
    assert int(suite.get("errors")) == summary["error"]
    assert int(suite.get("skipped")) == summary["skip"] == len(suite.findall("testcase/skipped"))
    assert int(xml_root.get("skipped")) == summary["skip"]


def test_junit_passes_are_plain_testcases(intel_host):
    proc, xml_root = junit_of(intel_host.root)
    assert proc.returncode == 0
    for case in xml_root.iter("testcase"):
        outcome = [child.tag for child in case if child.tag in ("failure", "error", "skipped")]
        if case.get("name").split()[0] in READY_HOST_IDS:
            assert outcome == []
        elif case.get("name").split()[0] in ON_REQUEST_IDS:  # judged when an option asks (--guest-memory)
            assert outcome == ["skipped"]
        else:  # device rules without --device are skipped, and say why
            assert outcome == ["skipped"] and "no device targets" in case.find("skipped").get("message")


def test_junit_failure_has_observed_expected_and_fix(tmp_path):
    proc, xml_root = junit_of(no_iommu_request_host(tmp_path / "h").root)
    assert proc.returncode == 1
    case = cases_by_rule(xml_root.find("testsuite"))["VFIO-004"]
    failures = case.findall("failure")
    assert len(failures) == 1
    failure = failures[0]
    assert failure.get("type") == "high"
    assert "not requested" in failure.get("message")
    body = failure.text
    assert "observed: intel_iommu not set" in body
    assert "expected: intel_iommu=on" in body
    assert "evidence: /proc/cmdline:" in body
    assert "$ update-grub" in body
    assert "/etc/default/grub" in body


def test_junit_critical_failure_type(tmp_path):
    _, xml_root = junit_of(no_dmar_host(tmp_path / "h").root)
    failure = cases_by_rule(xml_root.find("testsuite"))["VFIO-002"].find("failure")
    assert failure is not None and failure.get("type") == "critical"


def test_junit_skip(tmp_path):
    proc, xml_root = junit_of(unreadable_cmdline_host(tmp_path / "h").root)
    case = cases_by_rule(xml_root.find("testsuite"))["VFIO-004"]
    skipped = case.find("skipped")
    assert skipped is not None
    assert skipped.get("message") and "/proc/cmdline" in skipped.get("message")
    assert case.find("failure") is None


def test_junit_warn_passes_with_system_out(tmp_path):
    root = warn_only_host(tmp_path / "h").root
    proc, xml_root = junit_of(root)
    assert proc.returncode == 0
    case = cases_by_rule(xml_root.find("testsuite"))["VFIO-006"]
    assert case.find("failure") is None and case.find("error") is None and case.find("skipped") is None
    out = case.find("system-out")
    assert out is not None and out.text.startswith("WARNING")
    assert "interrupt remapping" in out.text


def test_junit_warn_fails_under_fail_on_warn(tmp_path):
    proc, xml_root = junit_of(warn_only_host(tmp_path / "h").root, "--fail-on", "warn")
    assert proc.returncode == 1
    suite = xml_root.find("testsuite")
    failures = suite.findall("testcase/failure")
    assert len(failures) == 1
    assert cases_by_rule(suite)["VFIO-006"].find("failure") is failures[0]
    assert "observed:" in failures[0].text
    assert suite.get("failures") == "1"


def test_junit_error(intel_host, tmp_path):
    proc, xml_root = junit_of(intel_host.root, pythonpath=make_plugin(tmp_path / "site", RAISING_PLUGIN))
    assert proc.returncode == 3
    suite = xml_root.find("testsuite")
    error = cases_by_rule(suite)["ACME-100"].find("error")
    assert error is not None and "exploded" in error.get("message")
    assert suite.get("errors") == "1"
    assert len(suite.findall("testcase")) == len(BUILTIN_IDS) + 1


def test_junit_dotted_hostname(tmp_path):
    tree = ready_host(tmp_path / "h")
    tree.write("/proc/sys/kernel/hostname", "gpu01.dc1.example.com\n")
    _, xml_root = junit_of(tree.root)
    suite = xml_root.find("testsuite")
    assert suite.get("name") == "vfio-scan:gpu01.dc1.example.com"
    assert suite.get("hostname") == "gpu01.dc1.example.com"
    for case in suite.findall("testcase"):
        host_part, _, rule = case.get("classname").rpartition(".")
        assert host_part == "gpu01_dc1_example_com"
        assert "." not in host_part and rule


def test_junit_file_beside_table(intel_host, tmp_path):
    out = tmp_path / "junit.xml"
    assert run_cli("scan", "--root", intel_host.root, "--junit", out).returncode == 0
    assert ET.parse(out).getroot().tag == "testsuites"


def test_junit_one_suite_per_host(tmp_path):
    reports = [in_process_report(ready_host(tmp_path / "a").root, hostname="alpha"),
               in_process_report(no_dmar_host(tmp_path / "b").root, hostname="beta.lab")]
    text = junit.render(reports, {})
    xml_root = ET.fromstring(text.encode())
    suites = xml_root.findall("testsuite")
    assert [s.get("name") for s in suites] == ["vfio-scan:alpha", "vfio-scan:beta.lab"]
    assert [s.get("hostname") for s in suites] == ["alpha", "beta.lab"]
    assert [len(s.findall("testcase")) for s in suites] == [len(BUILTIN_IDS)] * 2
    assert [len(s.findall("testcase/failure")) for s in suites] == [0, 1]
    assert xml_root.get("tests") == str(2 * len(BUILTIN_IDS)) and xml_root.get("failures") == "1"
    assert {c.get("classname").rpartition(".")[0] for c in suites[1].findall("testcase")} == {"beta_lab"}


def _report(*findings, fail_on="fail", hostname="h1") -> Report:
    rule = Rule(id="TEST-001", name="test-rule", title="A test rule", scope="host", severity="medium",
                check=lambda facts, scan: (), docs="TEST-001 docs")
    return Report(host={"hostname": hostname, "kernel": "6.1", "arch": "x86_64", "cpu_vendor": "intel",
                        "source": "root"},
                  findings=[f.bind(rule) for f in findings], started_at="2024-05-01T10:00:00+00:00",
                  duration_s=0.0, tool={"name": "vfio-scan", "version": "0.1.0"}, fail_on=fail_on)


def _only_case(text):
    cases = ET.fromstring(text.encode()).findall("testsuite/testcase")
    assert len(cases) == 1
    return cases[0]


def test_junit_empty_failure_is_still_a_failure():
    """junit-xml writes a failure with neither message nor output as a pass; the wrapper must not."""
    text = junit.render([_report(Finding.fail(""))], {})
    case = _only_case(text)
    failure = case.find("failure")
    assert failure is not None
    assert failure.get("message")  # something a dashboard can show
    assert ET.fromstring(text.encode()).find("testsuite").get("failures") == "1"


def test_junit_empty_error_is_still_an_error():
    case = _only_case(junit.render([_report(Finding.error(""))], {}))
    assert case.find("error") is not None and case.find("error").get("message")


def test_junit_empty_skip_keeps_a_message():
    case = _only_case(junit.render([_report(Finding.skip(""))], {}))
    assert case.find("skipped") is not None and case.find("skipped").get("message")


def test_junit_control_characters_and_colours_survive_visibly():
    finding = Finding.fail("\x1b[31mbad\x1b[0m value \x07 here", observed="a\x00b", expected="x\x1by",
                           evidence=[Evidence("/sys/x", "raw\x0cdata")],
                           remediation=[Step(summary="do it", phase="boot", commands=["echo ok"])])
    text = junit.render([_report(finding)], {})
    failure = _only_case(text).find("failure")  # parses: no illegal XML characters left
    assert failure.get("message") == "bad value \\x07 here"
    assert "observed: a\\x00b" in failure.text
    assert "raw\\x0cdata" in failure.text
    assert "\x1b" not in text and "[31m" not in text
    assert "$ echo ok" in failure.text


def test_junit_waived_is_skipped_with_justification():
    finding = Finding(status="waived", message="no IOMMU on this lab box",
                      waiver={"justification": "lab box, TICKET-1", "expires": "2099-01-01"}, original_status="fail")
    skipped = _only_case(junit.render([_report(finding)], {})).find("skipped")
    assert skipped is not None
    assert "TICKET-1" in skipped.get("message") and "2099-01-01" in skipped.get("message")


def test_junit_duplicate_names_are_made_unique():
    text = junit.render([_report(Finding.passed("one"), Finding.passed("two"))], {})
    cases = ET.fromstring(text.encode()).findall("testsuite/testcase")
    keys = [(c.get("classname"), c.get("name")) for c in cases]
    assert len(keys) == 2 and len(set(keys)) == 2


@pytest.mark.parametrize("raw, expected", [
    ("\x1b[1;31mFAIL\x1b[0m", "FAIL"),
    ("\x1b[38;5;196mred\x1b[m", "red"),
    ("plain text", "plain text"),
    ("tab\tand\nnewline", "tab\tand\nnewline"),
    ("", ""),
    (None, ""),
])
def test_clean_strips_colours(raw, expected):
    assert junit.clean(raw) == expected


@pytest.mark.parametrize("char", ["\x00", "\x07", "\x08", "\x0b", "\x0c", "\x1b", "\x1f", "\x7f"])
def test_clean_replaces_control_characters_visibly(char):
    out = junit.clean(f"before{char}after")
    assert char not in out
    assert out == f"before\\x{ord(char):02x}after"  # the reader still sees that something was there
    ET.fromstring(f"<a>{out}</a>")


def test_host_slug():
    assert junit.host_slug("gpu01.dc1") == "gpu01_dc1"
    assert junit.host_slug("") == "host"
    assert "." not in junit.host_slug("a.b.c.d")


# -- table -------------------------------------------------------------------------------------

def _long_lines(text, width=100):
    return [f"{len(line)}: {line}" for line in text.splitlines() if len(line) > width]


@pytest.mark.parametrize("verbose", [False, True], ids=["default", "verbose"])
def test_table_fits_100_columns(any_tree, verbose):
    name, root = any_tree
    proc = run_cli("scan", "--root", root, *(["-v"] if verbose else []))
    assert proc.returncode == EXPECTED_EXIT[name]
    assert proc.stdout.startswith("Readiness: ")  # the verdict first
    assert _host_line(proc.stdout).startswith("Host testhost")
    assert _long_lines(proc.stdout) == []


def test_table_of_this_machine_fits_100_columns():
    for args in ((), ("-v",)):
        proc = run_cli("scan", *args)
        assert "Traceback" not in proc.stderr
        assert _long_lines(proc.stdout) == []


def test_table_with_plugin_rule_fits_100_columns(intel_host, tmp_path):
    long_id = 'id="ACMECORPORATE-1000", name="acme-firmware", scope="host", severity="low", title="' + "t" * 60 \
              + '", docs=__doc__'
    site = make_plugin(tmp_path / "site", plugin_with_rule(long_id, 'yield Finding.fail("x " * 80, observed="y" * 150)'))
    proc = run_cli("scan", "--root", intel_host.root, pythonpath=site)
    assert proc.returncode == 1, proc.stderr
    assert "ACMECORPORATE-1000" in proc.stdout
    assert _long_lines(proc.stdout) == []


def _table_commands(text):
    """The fix commands shown in the table, continuation lines (`` \\``) joined back."""
    commands, current = [], None
    for line in text.splitlines():
        stripped = line.strip()
        if current is not None:
            current += " " + stripped
        elif stripped.startswith("$ "):
            current = stripped[2:]
        else:
            continue
        if current.endswith(" \\"):
            current = current[:-2]
        else:
            commands.append(current)
            current = None
    return commands


def test_table_shows_fix_commands(tmp_path):
    root = no_iommu_request_host(tmp_path / "h").root
    proc = run_cli("scan", "--root", root)
    assert proc.returncode == 1
    assert "What to do" in proc.stdout
    assert any(line.strip() == "$ update-grub" for line in proc.stdout.splitlines())
    shown = _table_commands(proc.stdout)
    expected = [c for f in scan_json(root)[1]["findings"] for s in f["remediation"] for c in s["commands"]]
    assert expected and len(shown) == len(expected)
    for table_cmd, json_cmd in zip(shown, expected):
        assert shlex.split(table_cmd) == shlex.split(json_cmd)  # wrapped, but the same command


def test_table_long_command_is_continued_not_cut(tmp_path):
    root = warn_only_host(tmp_path / "h").root
    proc = run_cli("scan", "--root", root)
    lines = proc.stdout.splitlines()
    start = next(i for i, l in enumerate(lines) if l.strip().startswith("$ grep -qxF -- 'options vfio_iommu_type1"))
    assert lines[start].endswith(" \\")
    continued = [lines[start].strip()[2:-2]]
    for line in lines[start + 1:]:
        continued.append(line.strip().rstrip("\\").strip())
        if not line.endswith(" \\"):
            break
    # the whole command is there, word for word, over several lines
    assert " ".join(continued) == ("grep -qxF -- 'options vfio_iommu_type1 allow_unsafe_interrupts=1' "
                                   "/etc/modprobe.d/vfio-unsafe-interrupts.conf 2>/dev/null || printf '%s\\n' "
                                   "'options vfio_iommu_type1 allow_unsafe_interrupts=1' >> "
                                   "/etc/modprobe.d/vfio-unsafe-interrupts.conf")


def test_table_ready_host_has_no_fixes(intel_host):
    out = run_cli("scan", "--root", intel_host.root).stdout
    assert "What to do" not in out
    assert not any(line.strip().startswith("$ ") for line in out.splitlines())
    assert out.count("PASS") == len(READY_HOST_IDS)


def test_table_verbose_shows_evidence(tmp_path):
    root = no_iommu_request_host(tmp_path / "h").root
    default = run_cli("scan", "--root", root).stdout
    verbose = run_cli("scan", "--root", root, "-v").stdout
    assert not any(line.strip().startswith("evidence") for line in default.splitlines())
    evidence = [line.strip() for line in verbose.splitlines() if line.strip().startswith("evidence")]
    assert any(line.startswith("evidence /proc/cmdline:") for line in evidence)
    assert any("/proc/cpuinfo" in line for line in evidence)  # passes show their evidence too
    assert "$ update-grub" in verbose


def test_table_skip_and_warn_are_labelled(tmp_path):
    skip = run_cli("scan", "--root", unreadable_cmdline_host(tmp_path / "s").root).stdout
    assert re.search(r"^SKIP\s+VFIO-004", skip, re.M)
    warn = run_cli("scan", "--root", warn_only_host(tmp_path / "w").root).stdout
    assert re.search(r"^WARN\s+VFIO-006", warn, re.M)
    assert "READY_WITH_WARNINGS" in warn


@pytest.mark.parametrize("command", [
    "sed -i -E 's|^GRUB_CMDLINE_LINUX_DEFAULT=\"|&intel_iommu=on iommu=pt |' /etc/default/grub && update-grub",
    "printf '%s\\n' vfio vfio_pci vfio_iommu_type1 > /etc/modules-load.d/vfio.conf && echo \"a   b\" && true",
    "echo " + " ".join(f"word{i}" for i in range(40)),
])
def test_table_command_wrapping_keeps_the_command(command):
    from reports.table import _command

    lines = _command(command, 80)
    assert len(lines) > 1
    assert all(len(line) <= 80 for line in lines)
    assert lines[0].startswith("      $ ") and all(line.endswith(" \\") for line in lines[:-1])
    assert shlex.split(" ".join(line.strip().rstrip("\\") for line in lines)[2:]) == shlex.split(command)


@pytest.mark.parametrize("command", ["echo one two three four five six seven # a comment that is long enough",
                                     "echo 'unbalanced quote and a long tail of words to go past the width"])
def test_table_command_not_wrapped_when_unsafe(command):
    from reports.table import _command

    assert _command(command, 40) == ["      $ " + command]


def _host_line(text: str) -> str:
    """The table's "Host ..." line: after the verdict (and the next-boot line, when there is one)."""
    return next(line for line in text.splitlines()[:3] if line.startswith("Host "))
