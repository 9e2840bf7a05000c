"""Reading policy files: TOML and JSON, schema errors with their location, one line, exit 2."""

from __future__ import annotations

import json
import re

import pytest
from clihelpers import BUILTIN_IDS, make_plugin, plugin_with_rule, run_cli, stderr_lines
from policyhelpers import write_policy

from scanner.policy.file import PolicyError, load_policy, read
from scanner.policy.toml import TomlLocator

KNOWN = set(BUILTIN_IDS)


def error_of(path, known=KNOWN) -> str:
    with pytest.raises(PolicyError) as info:
        load_policy(str(path), known_rules=known)
    text = str(info.value)
    assert "\n" not in text and text.startswith(f"policy {path}: ")
    return text[len(f"policy {path}: "):]


GOOD = """
    version = 1
    description = "lab"
    fail_on = "warn"

    [[targets]]
    address = "01:00.0"

    [[targets]]
    match = { vendor = "10DE", device = "1aef" }
    driver = "vfio-pci"

    [[targets]]
    match = { class = "0x02", subsystem_vendor = "8086" }
    driver = "ixgbe"
    vfs = 8

    [rules]
    skip = ["VFIO-014"]

    [rules.severity]
    VFIO-006 = "critical"

    [[waivers]]
    rule = "VFIO-015"
    subject = "01:00.*"
    host = "gpu-*"
    justification = "  boots on the GPU until the BIOS update  "
    expires = 2027-06-30
    owner = "ws team"
"""


def test_a_good_toml_policy_builds(tmp_path):
    policy = load_policy(str(write_policy(tmp_path, GOOD)), known_rules=KNOWN)
    assert policy.fail_on == "warn" and policy.description == "lab"
    address, ids, nics = policy.targets
    assert (address.kind, address.value, address.driver) == ("address", "0000:01:00.0", None)
    assert ids.kind == "match" and dict(ids.fields) == {"vendor": "10de", "device": "1aef"}
    assert dict(nics.fields) == {"class": "02", "subsystem_vendor": "8086"} and (nics.driver, nics.vfs) == ("ixgbe", 8)
    assert policy.skip == ("VFIO-014",) and policy.only == () and policy.severity == {"VFIO-006": "critical"}
    (waiver,) = policy.waivers
    assert waiver.subject == "0000:01:00.*"  # a short address gets domain 0000, like --device
    assert waiver.justification == "boots on the GPU until the BIOS update"
    assert str(waiver.expires) == "2027-06-30" and waiver.host == "gpu-*" and waiver.owner == "ws team"
    assert waiver.source.endswith("waivers[0] (line 23)")


def test_the_same_policy_in_json_builds_the_same(tmp_path):
    toml_policy = load_policy(str(write_policy(tmp_path, GOOD)), known_rules=KNOWN)
    doc = {"version": 1, "description": "lab", "fail_on": "warn",
           "targets": [{"address": "01:00.0"}, {"match": {"vendor": "10DE", "device": "1aef"}, "driver": "vfio-pci"},
                       {"match": {"class": "0x02", "subsystem_vendor": "8086"}, "driver": "ixgbe", "vfs": 8}],
           "rules": {"skip": ["VFIO-014"], "severity": {"VFIO-006": "critical"}},
           "waivers": [{"rule": "VFIO-015", "subject": "01:00.*", "host": "gpu-*",
                        "justification": "  boots on the GPU until the BIOS update  ", "expires": "2027-06-30",
                        "owner": "ws team"}]}
    path = tmp_path / "policy.json"
    path.write_text(json.dumps(doc, indent=2))
    json_policy = load_policy(str(path), known_rules=KNOWN)
    strip = lambda p: (p.targets, p.only, p.skip, p.severity, p.fail_on, [w.to_dict() | {"source": ""} for w in p.waivers])  # noqa: E731
    assert strip(json_policy) == strip(toml_policy)
    assert json_policy.waivers[0].source.endswith("at /waivers/0")


@pytest.mark.parametrize("name, text, fmt", [
    ("policy", '{"fail_on": "warn"}', "json"),
    ("policy.conf", 'fail_on = "warn"\n', "toml"),
    ("POLICY.JSON", '{"fail_on": "warn"}', "json"),
])
def test_format_by_extension_or_content(tmp_path, name, text, fmt):
    path = tmp_path / name
    path.write_text(text)
    assert read(str(path)).fmt == fmt
    assert load_policy(str(path)).fail_on == "warn"


# -- TOML: the key path and its line ----------------------------------------------------------

@pytest.mark.parametrize("text, expected", [
    # an unknown key, with the key it was probably meant to be
    ("""
     [[waivers]]
     rule = "VFIO-015"
     justificaton = "typo"
     """, "waivers[0].justificaton (line 3): unknown key 'justificaton'; did you mean 'justification'? "
          "(and 1 more problem)"),
    # a required key missing: the table's header line
    ("""
     [[waivers]]
     rule = "VFIO-015"
     justification = "ok"

     [[waivers]]
     rule = "VFIO-006"
     """, "waivers[1] (line 5): missing required key 'justification'"),
    # a wrong type
    ("""
     [[targets]]
     address = "0000:3b:00.0"
     vfs = "8"
     """, "targets[0].vfs (line 3): '8' is not of type 'integer'"),
    # a value not in the list, with the closest one
    ('# strict\n\nfail_on = "critcal"\n', "fail_on (line 3): 'critcal' is not one of warn, fail, info, low, medium, "
                                          "high, critical; did you mean 'critical'?"),
    # a malformed address
    ("""
     [[targets]]
     address = "1:0.0"
     """, "targets[0].address (line 2): '1:0.0': expected a PCI address: 0000:01:00.0 or 01:00.0"),
    # address and match together
    ("""
     [[targets]]
     address = "01:00.0"
     match = { vendor = "10de" }
     """, "targets[0] (line 1): a target takes exactly one of 'address' or 'match'"),
    # neither
    ("""
     [[targets]]
     driver = "vfio-pci"
     """, "targets[0] (line 1): a target takes exactly one of 'address' or 'match'"),
    # inside an inline table
    ("""
     [[targets]]
     match = { vendor = "10de", device = "22O4" }
     """, "targets[0].match.device (line 2): '22O4': expected 4 hex digits (10de)"),
    # an empty match
    ("""
     [[targets]]
     match = {}
     """, "targets[0].match (line 2): an empty match selects nothing: give vendor, device, class, "
          "subsystem_vendor or subsystem_device"),
    # a key of a table that is not a rule id
    ("""
     [rules.severity]
     VFIO-006 = "high"
     VFIO6 = "low"
     """, "rules.severity.VFIO6 (line 3): 'VFIO6': not a rule id (VFIO-013; see 'vfio-scan rules')"),
    # an element of a multi-line array
    ("""
     [rules]
     skip = [
         "VFIO-014",
         "vfio-015",
     ]
     """, "rules.skip[1] (line 4): 'vfio-015': not a rule id (VFIO-013; see 'vfio-scan rules')"),
    # a date-time where a date belongs
    ("""
     [[waivers]]
     rule = "VFIO-015"
     justification = "ok"
     expires = 2027-06-30T12:00:00Z
     """, "waivers[0].expires (line 4): '2027-06-30T12:00:00+00:00': expected a date YYYY-MM-DD "
          "(the last day the waiver applies)"),
    # a blank justification
    ("""
     [[waivers]]
     rule = "VFIO-015"
     justification = "   "
     """, "waivers[0].justification (line 3): '   ': a waiver needs a justification: why the gap is accepted, "
          "and by whom"),
    # a version that does not exist
    ("version = 2\n", "version (line 1): 1 was expected"),
])
def test_toml_schema_errors_name_the_key_path_and_line(tmp_path, text, expected):
    assert error_of(write_policy(tmp_path, text)) == expected


def test_several_problems_report_the_first_in_the_file_and_count_the_rest(tmp_path):
    path = write_policy(tmp_path, """
        fail_on = "sometimes"

        [[waivers]]
        rule = "VFIO-015"

        [[targets]]
        address = "zz"
    """)
    assert error_of(path) == ("fail_on (line 1): 'sometimes' is not one of warn, fail, info, low, medium, high, "
                              "critical (and 2 more problems)")


def test_quoted_keys_and_dotted_keys_are_located(tmp_path):
    path = write_policy(tmp_path, """
        # a comment with [brackets] and "quotes"
        description = \"\"\"
        [[waivers]] inside a string is not a table \\
        \"\"\"
        rules.severity."VFIO-006" = "high"
        rules.severity.'VFIO-007' = "severe"
    """)
    assert error_of(path) == ("rules.severity.VFIO-007 (line 6): 'severe' is not one of info, low, medium, high, "
                              "critical")


def test_locator_follows_arrays_of_tables_and_nested_tables():
    text = ('[[targets]]\naddress = "01:00.0"\n\n[[targets]]\n  match = { vendor = "8086", device = "10fb" }\n'
            '  vfs = 8\n[rules]\nonly = [\n  "VFIO-001", # first\n  \'VFIO-002\']\n[[targets]]\naddress = "02:00.0"\n')
    lines = TomlLocator(text).lines
    assert lines[("targets", 0)] == 1 and lines[("targets", 0, "address")] == 2
    assert lines[("targets", 1)] == 4 and lines[("targets", 1, "match", "vendor")] == 5
    assert lines[("targets", 1, "match", "device")] == 5 and lines[("targets", 1, "vfs")] == 6
    assert lines[("rules", "only", 0)] == 9 and lines[("rules", "only", 1)] == 10
    assert lines[("targets", 2, "address")] == 12
    assert TomlLocator(text).line_of(("targets", 1, "match", "class")) == 5  # not written: its parent's line


@pytest.mark.parametrize("text, expected", [
    ('fail_on = "warn"\nfail_on = "fail"\n', r"line 2, column \d+: invalid TOML: cannot overwrite a value$"),
    ('[[waivers]\nrule = "x"\n', r"line 1, column \d+: invalid TOML: expected ']]' at the end of an array declaration$"),
    ('description = "unterminated\n', r"line 1, column \d+: invalid TOML: illegal character"),
    ('version = [', r"(end of document|line 1, column \d+): invalid TOML: invalid value$"),  # by tomli version
])
def test_toml_syntax_errors_give_line_and_column(tmp_path, text, expected):
    assert re.match(expected, error_of(write_policy(tmp_path, text)))


# -- semantic checks after the schema -----------------------------------------------------------

def test_a_date_that_does_not_exist(tmp_path):
    path = write_policy(tmp_path, """
        [[waivers]]
        rule = "VFIO-015"
        justification = "ok"
        expires = "2027-02-30"
    """)
    assert error_of(path) == "waivers[0].expires (line 4): '2027-02-30' is not a calendar date"


def test_unknown_rule_ids_are_errors_with_a_suggestion(tmp_path):
    path = write_policy(tmp_path, """
        [rules]
        only = ["VFIO-001"]

        [[waivers]]
        rule = "VFIO-117"
        justification = "ok"
    """)
    assert error_of(path) == ("waivers[0].rule (line 5): no such rule 'VFIO-117'; did you mean 'VFIO-017'? "
                              "(see 'vfio-scan rules')")
    # a third-party rule id is fine when that plugin is loaded
    assert load_policy(str(path), known_rules=KNOWN | {"VFIO-117"}).waivers[0].rule == "VFIO-117"


def test_unknown_rule_in_severity_table(tmp_path):
    path = write_policy(tmp_path, '[rules.severity]\nACME-100 = "low"\n')
    assert error_of(path) == "rules.severity.ACME-100 (line 2): no such rule 'ACME-100' (see 'vfio-scan rules')"


def test_a_rule_both_only_and_skipped(tmp_path):
    path = write_policy(tmp_path, '[rules]\nonly = ["VFIO-001", "VFIO-004"]\nskip = ["VFIO-004"]\n')
    assert error_of(path) == "rules.skip[0] (line 3): VFIO-004 is in both 'only' and 'skip'"


# -- JSON: line/column for syntax, a JSON pointer for the schema -------------------------------------

def test_json_syntax_error_line_and_column(tmp_path):
    path = tmp_path / "p.json"
    # a value left out: every Python's json names it alike (a trailing comma is worded anew from 3.13 on)
    path.write_text('{\n  "fail_on": "warn",\n  "targets": [\n    {"address": }\n  ]\n}\n')
    assert error_of(path) == "line 4, column 17: invalid JSON: Expecting value"


@pytest.mark.parametrize("doc, expected", [
    ({"waivers": [{"rule": "VFIO-015", "justification": "x", "expires": "30.06.2027"}]},
     "at /waivers/0/expires: '30.06.2027': expected a date YYYY-MM-DD (the last day the waiver applies)"),
    ({"waivers": [{"rule": "VFIO-015"}]}, "at /waivers/0: missing required key 'justification'"),
    ({"targets": [{"address": "01:00.0", "drivr": "vfio-pci"}]},
     "at /targets/0/drivr: unknown key 'drivr'; did you mean 'driver'?"),
    ({"rules": {"severity": {"VFIO-006": "urgent"}}},
     "at /rules/severity/VFIO-006: 'urgent' is not one of info, low, medium, high, critical"),
    ({"waivers": [{"rule": "VFIO-099", "justification": "x"}]},
     "at /waivers/0/rule: no such rule 'VFIO-099'; did you mean 'VFIO-019'? (see 'vfio-scan rules')"),
    ([], "at the top level: [] is not of type 'object'"),
])
def test_json_schema_errors_give_a_json_pointer(tmp_path, doc, expected):
    path = tmp_path / "p.json"
    path.write_text(json.dumps(doc, indent=2))
    assert error_of(path) == expected


def test_json_duplicate_keys_are_refused(tmp_path):
    path = tmp_path / "p.json"
    path.write_text('{\n  "fail_on": "warn",\n  "targets": [],\n  "fail_on": "fail"\n}\n')
    assert error_of(path) == "line 4: duplicate key 'fail_on' in one object (JSON would silently keep only the last)"
    path.write_text('{"waivers": [\n  {"rule": "VFIO-015", "justification": "a"},\n'
                    '  {"rule": "VFIO-014", "justification": "b",\n   "rule": "VFIO-013"}\n]}\n')
    assert error_of(path) == "line 4: duplicate key 'rule' in one object (JSON would silently keep only the last)"


# -- the file itself ----------------------------------------------------------------------------

def test_missing_directory_and_binary_files(tmp_path):
    assert error_of(tmp_path / "nope.toml") == "no such file"
    assert error_of(tmp_path) == "is a directory"
    binary = tmp_path / "bin.toml"
    binary.write_bytes(b'description = "ok"\n\xff\xfe\n')
    assert error_of(binary) == "line 2: not UTF-8 text (byte 0xff)"


# -- the command line: exit 2, one line, before any scanning ---------------------------------------

MARKER_PLUGIN = '''
    """ACME-100 acme-marker: records that a scan ran (a test plugin)."""
    import os
    from scanner import hookimpl
    from scanner.engine.model import Finding, Rule


    @hookimpl
    def vfio_scan_register_rules(register):
        register(Rule(id="ACME-100", name="acme-marker", scope="host", severity="low",
                      title="ACME marker", check=check, docs=__doc__))


    def check(facts, scan):
        open(os.environ["ACME_MARKER"], "w").close()
        yield Finding.passed("scanned")
'''


@pytest.mark.parametrize("command", ["scan", "qemu-args"])
def test_invalid_policy_is_exit_2_one_line_before_any_scanning(tmp_path, intel_host, command):
    plugins = make_plugin(tmp_path / "plugins", MARKER_PLUGIN)
    marker = tmp_path / "scanned"
    bad = write_policy(tmp_path, '[[targets]]\naddress = "01:00.0"\n\n[[waivers]]\nrule = "ACME-100"\n')
    proc = run_cli(command, "--root", intel_host.root, "--policy", bad, pythonpath=plugins, ACME_MARKER=str(marker))
    assert proc.returncode == 2 and proc.stdout == ""
    assert stderr_lines(proc) == [f"vfio-scan {command}: error: policy {bad}: waivers[0] (line 4): "
                                  "missing required key 'justification'"]
    assert not marker.exists(), "a rule ran although the policy was invalid"
    good = write_policy(tmp_path, '[[targets]]\naddress = "00:02.0"\n')
    proc = run_cli(command, "--root", intel_host.root, "--policy", good, pythonpath=plugins, ACME_MARKER=str(marker))
    assert proc.returncode in (0, 1) and marker.exists()


@pytest.mark.parametrize("content, expected", [
    ("version = [\n]]", "line 2, column 2: invalid TOML"),
    ("{\"version\": }", "line 1, column 13: invalid JSON: Expecting value"),
])
def test_syntax_errors_on_the_command_line(tmp_path, intel_host, content, expected):
    path = tmp_path / "p.policy"
    path.write_text(content)
    proc = run_cli("scan", "--root", intel_host.root, "--policy", path)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    (line,) = stderr_lines(proc)
    assert line.startswith(f"vfio-scan scan: error: policy {path}: {expected}")


def test_a_missing_policy_file_on_the_command_line(tmp_path, intel_host):
    proc = run_cli("scan", "--root", intel_host.root, "--policy", tmp_path / "none.toml")
    assert proc.returncode == 2
    assert stderr_lines(proc) == [f"vfio-scan scan: error: policy {tmp_path / 'none.toml'}: no such file"]


def test_unknown_plugin_rule_in_a_policy_is_known_once_the_plugin_is_installed(tmp_path, intel_host):
    policy = write_policy(tmp_path, '[rules.severity]\nACME-100 = "critical"\n')
    proc = run_cli("scan", "--root", intel_host.root, "--policy", policy)
    assert proc.returncode == 2 and "no such rule 'ACME-100'" in proc.stderr
    plugins = make_plugin(tmp_path / "plugins", plugin_with_rule(
        'id="ACME-100", name="acme-firmware", scope="host", severity="low", title="ACME", docs=__doc__',
        'yield Finding.fail("old firmware")'))
    proc = run_cli("scan", "--root", intel_host.root, "--policy", policy, "--format", "json", pythonpath=plugins)
    acme = [f for f in json.loads(proc.stdout)["findings"] if f["rule_id"] == "ACME-100"]
    assert proc.returncode == 1 and acme[0]["severity"] == "critical"
