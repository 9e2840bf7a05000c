"""Faulty plugins at scan time: whatever a rule raises or returns, the scan goes on.

tests/test_plugins.py covers plugins that fail to load, a check that raises and one that yields a
dict (through real entry points). Here: every other way a rule's output can be malformed —
including frozen findings and steps altered with ``object.__setattr__``, which used to crash
``Finding.bind`` or, later, the renderers — is caught at the engine's boundary as an ``error``
finding naming the plugin, the other rules are unaffected, the exit code is 3, and every output
format still renders the report.
"""

from __future__ import annotations

import types

import pytest

from clihelpers import READY_HOST_IDS, by_rule, make_plugin, plugin_with_rule, run_cli, scan_json
from hardening import scan
from hosttree import ready_host, workstation
from scanner import hookimpl
from scanner.engine.runner import _malformed
from scanner.engine.model import Evidence, Finding, Rule, Step
from scanner.output.formats import validate_document
from scanner.engine.plugins import load_plugins

PLUGIN = "faulty_vfio_plugin"


def _altered(finding, **fields):
    for name, value in fields.items():
        object.__setattr__(finding, name, value)
    return finding


def _step(**fields):
    step = Step(summary="do it", phase="modules", commands=["modprobe vfio"])
    for name, value in fields.items():
        object.__setattr__(step, name, value)
    return step


def _raise(exc):
    raise exc


#: What a check returns -> words the error message must contain.
MALFORMED = {
    "dict": (lambda: [{"status": "pass"}], "dict, not a Finding"),
    "none": (lambda: [None], "NoneType, not a Finding"),
    "string": (lambda: "pass", "returned a str, not a list of findings"),
    "a-finding-not-a-list": (lambda: Finding.passed("ok"), "returned a Finding, not a list of findings"),
    "several-bad": (lambda: [None, {"a": 1}, 3], "NoneType, not a Finding (and 2 more malformed item(s))"),
    "not-iterable": (lambda: 42, "TypeError"),
    "raises": (lambda: _raise(RuntimeError("boom")), "RuntimeError: boom"),
    "raises-midway": (lambda: (x for x in [Finding.passed("ok"), 1 / 0]), "ZeroDivisionError"),
    "exits": (lambda: _raise(SystemExit(2)), "SystemExit: 2"),
    "recursion": (lambda: _raise(RecursionError("maximum recursion depth exceeded")), "RecursionError"),
    "empty-message": (lambda: [Finding.passed("   ")], "without a message"),
    "message-not-text": (lambda: [_altered(Finding.passed("ok"), message=7)], "without a message"),
    "subject-with-space": (lambda: [Finding.passed("ok", subject="not an address")], "unusable subject"),
    "subject-with-newline": (lambda: [Finding.passed("ok", subject="0000:01:00.0\nrm")], "unusable subject"),
    "subject-empty": (lambda: [Finding.passed("ok", subject="")], "unusable subject"),
    "subject-not-text": (lambda: [_altered(Finding.passed("ok"), subject=("host",))], "unusable subject"),
    "bad-status": (lambda: [_altered(Finding.passed("ok"), status="maybe")], "unknown status 'maybe'"),
    "waived-by-a-rule": (lambda: [_altered(Finding.fail("bad"), status="waived")], "waived finding"),
    "bad-severity": (lambda: [_altered(Finding.fail("bad"), severity="urgent")], "unknown severity 'urgent'"),
    "observed-not-text": (lambda: [Finding.fail("bad", observed=5)], "observed or expected is not text"),
    "evidence-not-evidence": (lambda: [Finding.fail("bad", evidence=[("/proc/cmdline", "quiet")])],
                              "evidence is not all"),
    "evidence-value-not-text": (lambda: [Finding.fail("bad", evidence=[Evidence("/proc/cmdline", None)])],
                                "evidence is not all"),
    "remediation-not-steps": (lambda: [Finding.fail("bad", remediation=["modprobe vfio"])],
                              "remediation step that is a str, not a Step"),
    "remediation-not-a-list": (lambda: [_altered(Finding.fail("bad"), remediation="modprobe vfio")],
                               "remediation is not a list"),
    "step-unknown-phase": (lambda: [Finding.fail("bad", remediation=[_step(phase="reboot")])],
                           "unknown phase 'reboot'"),
    "step-commands-not-text": (lambda: [Finding.fail("bad", remediation=[_step(commands=(["rm", "-rf"],))])],
                               "commands are not all strings"),
    "step-no-summary": (lambda: [Finding.fail("bad", remediation=[_step(summary="")])], "without a summary"),
    "step-flag-not-bool": (lambda: [Finding.fail("bad", remediation=[_step(manual="yes")])], "not true or false"),
    "step-action-not-mapping": (lambda: [Finding.fail("bad", remediation=[_step(action=["kind", "modprobe"])])],
                                "action is not a mapping"),
    "step-action-without-kind": (lambda: [Finding.fail("bad", remediation=[_step(action={"modules": ["vfio"]})])],
                                 "action is not a mapping"),
}


def faulty_plugin(make, scope="host"):
    """An inline plugin whose one rule ``FLT-100`` returns ``make()``."""
    module = types.ModuleType(PLUGIN)

    def check(facts, scan):
        return make()

    @hookimpl
    def vfio_scan_register_rules(register):
        register(Rule(id="FLT-100", name="faulty-rule", scope=scope, severity="low", title="A faulty rule",
                      check=check, docs="FLT-100 faulty-rule: a rule that misbehaves, for the tests."))

    module.vfio_scan_register_rules = vfio_scan_register_rules
    return module


def _scan_with(tree, make, scope="host", **targets):
    registry = load_plugins(extra=[faulty_plugin(make, scope)], autoload=False)
    assert not registry.failures
    _, report = scan(tree.root, rules=registry.sorted_rules(), devices=targets.get("devices", ()), vfs=())
    return registry, report


def _renders_everywhere(registry, report):
    validate_document(report.to_dict())
    for name, spec in registry.formats.items():
        text = spec.load()([report], {"verbose": True, "validate": True, "fail_on": "fail"})
        assert isinstance(text, str) and text, name


@pytest.fixture(scope="module")
def ready(tmp_path_factory):
    return ready_host(tmp_path_factory.mktemp("ready") / "h")


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_output_is_an_error_naming_the_plugin(ready, case):
    make, words = MALFORMED[case]
    registry, report = _scan_with(ready, make)
    mine = [f for f in report.findings if f.rule_id == "FLT-100"]
    assert [f.status for f in mine] == ["error"], [(f.status, f.message) for f in mine]
    assert f"from plugin {PLUGIN}" in mine[0].message and words in mine[0].message, mine[0].message
    assert mine[0].subject == "host"  # never the malformed subject
    # the other rules are unaffected: the ready host's host rules all pass
    assert {f.rule_id: f.status for f in report.findings if f.rule_id in READY_HOST_IDS} == {r: "pass" for r in READY_HOST_IDS}
    assert report.exit_code == 3 and report.readiness == "NOT_READY"
    _renders_everywhere(registry, report)


def test_every_case_is_malformed_for_the_boundary_itself():
    """Each returned item of each case is refused by ``_malformed`` (the cases that raise aside)."""
    for case, (make, _) in MALFORMED.items():
        try:
            items = list(make())
        except (Exception, SystemExit):
            continue
        if isinstance(make(), (str, Finding)):
            continue  # refused as a whole, before looking at items
        assert items and all(_malformed(item) for item in items), case


def test_a_good_finding_passes_the_boundary():
    good = Finding.fail("bad", subject="0000:01:00.0", observed="x", expected="y",
                        evidence=[Evidence("/proc/cmdline", "quiet")],
                        remediation=[Step(summary="load it", phase="modules", commands=["modprobe vfio"],
                                          action={"kind": "modprobe", "modules": ["vfio"]})])
    assert _malformed(good) == ""


def test_a_faulty_device_rule_errors_per_scan_and_device_rules_go_on(tmp_path):
    tree = workstation(tmp_path / "ws")
    registry, report = _scan_with(tree, MALFORMED["bad-status"][0], scope="device", devices=["01:00.0"])
    (mine,) = [f for f in report.findings if f.rule_id == "FLT-100"]
    assert mine.status == "error"
    statuses = {f.rule_id: f.status for f in report.findings if f.subject == "0000:01:00.0"}
    assert statuses == {"VFIO-010": "pass", "VFIO-011": "skip", "VFIO-012": "fail", "VFIO-013": "fail",
                        "VFIO-014": "pass", "VFIO-015": "pass", "VFIO-017": "skip", "VFIO-018": "skip",
                        "VFIO-020": "pass", "VFIO-021": "pass", "VFIO-022": "pass"}
    assert report.exit_code == 3
    _renders_everywhere(registry, report)


def test_one_faulty_rule_among_good_ones_of_the_same_plugin(ready):
    """Two rules in one plugin: the faulty one errors, the good one's finding is kept."""
    module = types.ModuleType("mixed_vfio_plugin")

    @hookimpl
    def vfio_scan_register_rules(register):
        register(Rule(id="MIX-100", name="good-rule", scope="host", severity="low", title="good",
                      check=lambda facts, scan: [Finding.warn("a warning")], docs="MIX-100 good-rule docs."))
        register(Rule(id="MIX-101", name="bad-rule", scope="host", severity="low", title="bad",
                      check=lambda facts, scan: [_altered(Finding.passed("ok"), status="great")],
                      docs="MIX-101 bad-rule docs."))

    module.vfio_scan_register_rules = vfio_scan_register_rules
    registry = load_plugins(extra=[module], autoload=False)
    _, report = scan(ready.root, rules=registry.sorted_rules(), devices=(), vfs=())
    found = {f.rule_id: f for f in report.findings}
    assert found["MIX-100"].status == "warn" and found["MIX-100"].message == "a warning"
    assert found["MIX-101"].status == "error" and "mixed_vfio_plugin" in found["MIX-101"].message


# -- through a real entry point and the real CLI ----------------------------------------------------

ALTERED_STATUS = plugin_with_rule(
    'id="ACME-100", name="acme-firmware", scope="host", severity="low", title="ACME firmware is recent", '
    'docs=__doc__',
    'f = Finding.passed("ok")\n        object.__setattr__(f, "status", "sortof")\n        yield f')
BAD_STEP = plugin_with_rule(
    'id="ACME-100", name="acme-firmware", scope="host", severity="low", title="ACME firmware is recent", '
    'docs=__doc__',
    'yield Finding.fail("old firmware", remediation=["acme-flash --now"])')
EXITING = plugin_with_rule(
    'id="ACME-100", name="acme-firmware", scope="host", severity="low", title="ACME firmware is recent", '
    'docs=__doc__',
    'import sys\n        sys.exit("acme: giving up")\n        yield')


@pytest.mark.parametrize("source, words", [
    (ALTERED_STATUS, "unknown status 'sortof'"),
    (BAD_STEP, "remediation step that is a str"),
    (EXITING, "SystemExit: acme: giving up"),
])
def test_malformed_plugin_through_the_cli(ready, tmp_path, source, words):
    site = make_plugin(tmp_path / "site", source)
    proc, doc = scan_json(ready.root, "--validate", pythonpath=site)
    assert proc.returncode == 3, proc.stderr
    assert "Traceback" not in proc.stderr and proc.stderr == ""
    acme = by_rule(doc)["ACME-100"]
    assert acme["status"] == "error" and "plugin acme" in acme["message"] and words in acme["message"]
    assert all(by_rule(doc)[r]["status"] == "pass" for r in READY_HOST_IDS)
    for fmt in ("table", "junit", "script"):
        other = run_cli("scan", "--root", ready.root, "--format", fmt, pythonpath=site)
        assert other.returncode == 3 and "Traceback" not in other.stderr, (fmt, other.stderr)
