"""The ``vfio-scan`` command line, run for real in subprocesses: exit codes, usage errors, subcommands.

DESIGN exit codes: 0 ready, 1 not ready, 2 usage/input error (before any scanning), 3 incomplete.
A user never sees a traceback for bad input: one line naming what was wrong.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest

from clihelpers import (BUILTIN_IDS, HOST_IDS, READY_HOST_IDS, DEVICE_IDS, RAISING_PLUGIN, REPO, by_rule, load_schema, make_plugin, no_dmar_host,
                        no_iommu_request_host, run_cli, scan_json, stderr_lines, warn_only_host)

SUBCOMMANDS = ("scan", "rules", "explain", "plugins")


def assert_one_line_usage_error(proc, *needles):
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    lines = stderr_lines(proc)
    assert len(lines) == 1, f"expected exactly one line on stderr, got: {proc.stderr!r}"
    assert "Traceback" not in proc.stderr
    for needle in needles:
        assert needle in lines[0], f"{needle!r} not named in {lines[0]!r}"
    return lines[0]


# -- version and help --------------------------------------------------------------------------

def test_version():
    proc = run_cli("--version")
    assert proc.returncode == 0
    assert proc.stdout.strip() == "vfio-scan 0.1.0"


def test_version_matches_package_metadata():
    from importlib.metadata import version

    assert run_cli("--version").stdout.strip() == f"vfio-scan {version('vfio-scan')}"


def test_top_level_help_lists_every_subcommand_and_exit_codes():
    proc = run_cli("--help")
    assert proc.returncode == 0, proc.stderr
    for name in SUBCOMMANDS:
        assert name in proc.stdout
    assert "Exit codes" in proc.stdout


@pytest.mark.parametrize("command", SUBCOMMANDS)
def test_subcommand_help(command):
    proc = run_cli(command, "--help")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith(f"usage: vfio-scan {command}")
    assert proc.stderr == ""


def test_scan_help_documents_its_options():
    out = run_cli("scan", "--help").stdout
    for option in ("--root", "--format", "--output", "--json", "--junit", "--fail-on", "--rule", "--validate",
                   "--strict-plugins", "--verbose"):
        assert option in out


def test_no_subcommand_is_a_usage_error():
    proc = run_cli()
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert "usage: vfio-scan" in proc.stderr


# -- usage errors: exit 2, one line, no traceback -------------------------------------------

def test_unknown_top_level_option():
    assert_one_line_usage_error(run_cli("--frobnicate"), "--frobnicate")


def test_unknown_subcommand():
    assert_one_line_usage_error(run_cli("scna"), "scna")


@pytest.mark.parametrize("command", SUBCOMMANDS)
def test_unknown_subcommand_option(command):
    args = [command, "--no-such-option"] + (["VFIO-001"] if command == "explain" else [])
    assert_one_line_usage_error(run_cli(*args), "--no-such-option")


def test_scan_root_missing(tmp_path):
    line = assert_one_line_usage_error(run_cli("scan", "--root", "/nonexistent"), "--root", "/nonexistent")
    assert line.startswith("vfio-scan scan: error:")


def test_scan_root_is_a_file(tmp_path):
    f = tmp_path / "file"
    f.write_text("x")
    assert_one_line_usage_error(run_cli("scan", "--root", f), "--root", str(f))


def test_scan_unknown_format(intel_host):
    line = assert_one_line_usage_error(run_cli("scan", "--root", intel_host.root, "--format", "nope"), "--format", "nope")
    for known in ("table", "json", "junit"):  # tells the user what they could have said
        assert known in line


def test_scan_unknown_rule(intel_host):
    assert_one_line_usage_error(run_cli("scan", "--root", intel_host.root, "--rule", "VFIO-999"), "VFIO-999")


def test_scan_unknown_skip_rule(intel_host):
    assert_one_line_usage_error(run_cli("scan", "--root", intel_host.root, "--skip-rule", "no-such-rule"),
                                "no-such-rule")


def test_scan_bad_fail_on(intel_host):
    assert_one_line_usage_error(run_cli("scan", "--root", intel_host.root, "--fail-on", "sometimes"), "sometimes")


def test_scan_missing_kernel_log(intel_host):
    assert_one_line_usage_error(run_cli("scan", "--root", intel_host.root, "--kernel-log", "/nonexistent/dmesg"),
                                "--kernel-log")


@pytest.mark.parametrize("option", ["-o", "--json", "--junit"])
def test_unwritable_output_is_refused_before_scanning(option, tmp_path):
    # the output directory is checked first: even an unusable --root is not looked at yet
    proc = run_cli("scan", "--root", tmp_path / "not-there", option, "/nonexistent-dir/x.json")
    line = assert_one_line_usage_error(proc, "/nonexistent-dir")
    assert "--root" not in line
    assert proc.stdout == ""  # no report was produced


def test_output_into_missing_directory_on_valid_tree_writes_nothing(intel_host, tmp_path):
    proc = run_cli("scan", "--root", intel_host.root, "-o", tmp_path / "missing" / "x.json")
    assert_one_line_usage_error(proc, "-o")
    assert proc.stdout == ""
    assert not (tmp_path / "missing").exists()


def test_output_is_a_directory(intel_host, tmp_path):
    assert_one_line_usage_error(run_cli("scan", "--root", intel_host.root, "-o", tmp_path), "is a directory")


# -- exit codes of a scan ----------------------------------------------------------------------

def test_ready_host_exit_0(intel_host):
    proc = run_cli("scan", "--root", intel_host.root)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Readiness: READY" in proc.stdout
    assert proc.stderr == ""


def test_ready_amd_host_exit_0(amd_host):
    proc, doc = scan_json(amd_host.root)
    assert proc.returncode == 0
    assert doc["summary"]["readiness"] == "READY"
    assert doc["host"]["cpu_vendor"] == "amd"


def test_failing_rule_exit_1(tmp_path):
    proc, doc = scan_json(no_dmar_host(tmp_path / "h").root)
    assert proc.returncode == 1
    assert by_rule(doc)["VFIO-002"]["status"] == "fail"
    assert doc["summary"]["readiness"] == "NOT_READY"


def test_failing_rule_exit_1_in_table(tmp_path):
    proc = run_cli("scan", "--root", no_dmar_host(tmp_path / "h").root)
    assert proc.returncode == 1
    assert "NOT_READY" in proc.stdout
    assert "FAIL" in proc.stdout and "VFIO-002" in proc.stdout


def test_fail_on_warn(tmp_path):
    root = warn_only_host(tmp_path / "h").root
    proc, doc = scan_json(root)
    assert [f["status"] for f in doc["findings"] if f["status"] not in ("pass", "skip")] == ["warn"]
    assert proc.returncode == 0
    assert doc["summary"]["readiness"] == "READY_WITH_WARNINGS"
    proc, doc = scan_json(root, "--fail-on", "warn")
    assert proc.returncode == 1
    assert doc["summary"]["readiness"] == "NOT_READY"


def test_fail_on_severity(tmp_path):
    root = no_iommu_request_host(tmp_path / "h").root
    proc, doc = scan_json(root)
    failing = [f for f in doc["findings"] if f["status"] == "fail"]
    assert [(f["rule_id"], f["severity"]) for f in failing] == [("VFIO-004", "high")]
    assert proc.returncode == 1
    assert run_cli("scan", "--root", root, "--fail-on", "high").returncode == 1
    assert run_cli("scan", "--root", root, "--fail-on", "medium").returncode == 1
    assert run_cli("scan", "--root", root, "--fail-on", "critical").returncode == 0


def test_critical_fail_still_fails_under_fail_on_critical(tmp_path):
    assert run_cli("scan", "--root", no_dmar_host(tmp_path / "h").root, "--fail-on", "critical").returncode == 1


def test_rule_selection(tmp_path):
    root = no_dmar_host(tmp_path / "h").root
    proc, doc = scan_json(root, "--rule", "VFIO-001", "--rule", "kernel-config")
    assert proc.returncode == 0
    assert sorted(by_rule(doc)) == ["VFIO-001", "VFIO-003"]
    proc, doc = scan_json(root, "--skip-rule", "firmware-iommu")
    assert proc.returncode == 0
    assert "VFIO-002" not in by_rule(doc)


def test_rule_error_exit_3_and_other_findings_kept(intel_host, tmp_path):
    plugins = make_plugin(tmp_path / "plugins", RAISING_PLUGIN)
    proc, doc = scan_json(intel_host.root, pythonpath=plugins)
    assert proc.returncode == 3, proc.stderr
    assert "Traceback" not in proc.stderr
    findings = by_rule(doc)
    assert findings["ACME-100"]["status"] == "error"
    assert "acme firmware query exploded" in findings["ACME-100"]["message"]
    for rule_id in READY_HOST_IDS:
        assert findings[rule_id]["status"] == "pass"
    assert doc["summary"]["error"] == 1
    assert doc["summary"]["readiness"] == "NOT_READY"


def test_rule_error_wins_over_not_ready(tmp_path):
    root = no_dmar_host(tmp_path / "h").root
    plugins = make_plugin(tmp_path / "plugins", RAISING_PLUGIN)
    assert run_cli("scan", "--root", root, pythonpath=plugins).returncode == 3


def test_output_files(intel_host, tmp_path):
    out, js, ju = tmp_path / "out.txt", tmp_path / "r.json", tmp_path / "r.xml"
    proc = run_cli("scan", "--root", intel_host.root, "-o", out, "--json", js, "--junit", ju)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == ""
    assert "Readiness: READY" in out.read_text()
    assert json.loads(js.read_text())["summary"]["readiness"] == "READY"
    assert ju.read_text().startswith("<?xml")


def test_scan_never_writes_into_the_tree(intel_host):
    def snapshot(root):
        return sorted((str(p.relative_to(root)), p.lstat().st_mtime_ns) for p in Path(root).rglob("*"))

    before = snapshot(intel_host.root)
    run_cli("scan", "--root", intel_host.root, "--format", "junit")
    assert snapshot(intel_host.root) == before


# -- rules and explain -----------------------------------------------------------------------

def test_rules_lists_the_builtin_rules():
    proc = run_cli("rules")
    assert proc.returncode == 0, proc.stderr
    for rule_id, name in zip(HOST_IDS, ("cpu-virtualization", "firmware-iommu", "kernel-config", "kernel-cmdline",
                                           "iommu-active", "interrupt-remapping", "vfio-modules")):
        line = next((l for l in proc.stdout.splitlines() if l.startswith(rule_id)), None)
        assert line is not None, f"{rule_id} not listed"
        assert name in line


def test_rules_json():
    proc = run_cli("rules", "--format", "json")
    assert proc.returncode == 0
    rules = json.loads(proc.stdout)
    assert [r["id"] for r in rules] == BUILTIN_IDS
    assert all(r["plugin"].startswith("rules.") for r in rules)


def test_explain_by_id_prints_the_docs():
    proc = run_cli("explain", "VFIO-004")
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert out.startswith("VFIO-004 kernel-cmdline")
    # the rule's documentation: what, why, how, fix
    for part in ("What:", "Why:", "How:", "Fix:", "intel_iommu=on"):
        assert part in out


def test_explain_by_name():
    by_name = run_cli("explain", "kernel-cmdline")
    assert by_name.returncode == 0
    assert by_name.stdout == run_cli("explain", "VFIO-004").stdout


def test_explain_is_case_insensitive_for_ids():
    assert run_cli("explain", "vfio-005").stdout.startswith("VFIO-005 iommu-active")


def test_explain_unknown_rule():
    assert_one_line_usage_error(run_cli("explain", "NOPE"), "NOPE")


def test_explain_without_rule():
    proc = run_cli("explain")
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr


def test_plugins_lists_builtins():
    proc = run_cli("plugins", "--format", "json")
    assert proc.returncode == 0
    plugins = {p["name"]: p for p in json.loads(proc.stdout)}
    assert plugins["rules.kernel_cmdline"]["rules"] == ["VFIO-004"]
    assert plugins["rules.kernel_cmdline"]["source"] == "builtin"
    assert sorted(plugins["reports"]["formats"]) == ["html", "json", "junit", "nfd", "prometheus", "script", "table"]
    assert all(p["error"] is None for p in plugins.values())


# -- the honest scan of this machine -----------------------------------------------------------

def _this_machine_has_iommu() -> bool:
    groups = Path("/sys/kernel/iommu_groups")
    return groups.is_dir() and any(groups.iterdir())


def _check_live_scan(proc):
    assert "Traceback" not in proc.stderr, proc.stderr
    assert proc.returncode == 1, (proc.returncode, proc.stderr)
    doc = json.loads(proc.stdout)
    errors = list(jsonschema.Draft202012Validator(load_schema()).iter_errors(doc))
    assert not errors, [e.message for e in errors]
    assert doc["host"]["source"] == "live"
    findings = by_rule(doc)
    assert sorted(findings) == BUILTIN_IDS
    assert findings["VFIO-005"]["status"] == "fail"
    assert findings["VFIO-005"]["rule"] == "iommu-active"
    assert doc["summary"]["readiness"] == "NOT_READY"
    assert not any(f["status"] == "error" for f in doc["findings"])
    return doc


@pytest.fixture
def machine_without_iommu():
    if _this_machine_has_iommu():
        pytest.skip("these tests describe the development VM, which has no IOMMU; this machine has IOMMU groups")


def test_live_scan_as_current_user(machine_without_iommu):
    _check_live_scan(run_cli("scan", "--format", "json"))


def test_live_scan_as_nobody(machine_without_iommu):
    setpriv = shutil.which("setpriv")
    if not setpriv:
        pytest.skip("setpriv is not installed")
    if os.geteuid() != 0:
        pytest.skip("switching to user nobody needs root")
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": "/tmp", "PYTHONPATH": str(REPO),
           "PYTHONDONTWRITEBYTECODE": "1", "LANG": os.environ.get("LANG", "C.UTF-8")}
    proc = subprocess.run([setpriv, "--reuid=65534", "--regid=65534", "--clear-groups",
                           sys.executable, "-m", "scanner", "scan", "--format", "json"],
                          cwd="/tmp", env=env, capture_output=True, text=True, timeout=300)
    doc = _check_live_scan(proc)
    # unprivileged, some evidence is unreadable: that is a skip or a note, never a crash
    assert all(f["message"] for f in doc["findings"])


def test_explain_renders_for_the_terminal_not_raw_restructuredtext():
    """No ``literal`` or **bold** markers, paragraphs reflowed to $COLUMNS, literal blocks kept as written."""
    narrow = run_cli("explain", "VFIO-013", COLUMNS="70")
    assert narrow.returncode == 0
    text = narrow.stdout
    assert "``" not in text and "**" not in text
    assert "Fix, now (phase binding), for exactly that device:\n" in text  # "::" reads ":"
    assert "    echo vfio-pci > /sys/bus/pci/devices/ADDR/driver_override\n" in text  # the literal block, verbatim
    prose = [line for line in text.splitlines() if not line.startswith("    ")]
    assert max(map(len, prose[2:])) <= 70
    wide = run_cli("explain", "VFIO-013", COLUMNS="120").stdout
    assert max(len(line) for line in wide.splitlines() if not line.startswith("    ")) > 100  # reflowed, not cut
    assert "\x1b[" not in text  # not a terminal: no colour


def test_explain_colours_only_a_terminal_and_honours_no_color():
    """Under a pseudo-terminal the labels are bold and literals coloured; NO_COLOR turns that off."""
    from clihelpers import run_under_tty

    def under_tty(**env):
        code, text = run_under_tty("explain", "VFIO-013", **env)
        assert code == 0
        return text

    coloured = under_tty()
    assert "\x1b[1mWhat:\x1b[0m" in coloured and "\x1b[36mvfio-pci\x1b[0m" in coloured
    assert "\x1b[" not in under_tty(NO_COLOR="1")
