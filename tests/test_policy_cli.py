"""``--policy`` on the command line: targets, drivers, rule selection, severities, fail_on, waivers,
and how each output shows them. Exit codes as DESIGN says: 0 ready, 1 not ready, 2 bad input, 3 incomplete."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

import jsonschema
import pytest
from clihelpers import RAISING_PLUGIN, by_rule, load_schema, make_plugin, no_dmar_host, run_cli, scan_json, \
    stderr_lines, warn_only_host
from hosttree import workstation
from policyhelpers import GPU, GPU_AUDIO, gpu_workstation, write_policy

WAIVE_BOOT_VGA = """
    fail_on = "warn"

    [[targets]]
    address = "01:00.0"

    [[targets]]
    address = "01:00.1"

    [[waivers]]
    rule = "VFIO-015"
    subject = "0000:01:00.*"
    justification = "firmware boots on the RTX until BIOS update WS-42"
    expires = 2030-06-30

    [[waivers]]
    rule = "VFIO-006"
    justification = "left over from the old board"
"""


@pytest.fixture
def ws(tmp_path):
    return gpu_workstation(tmp_path / "ws")


@pytest.fixture
def waiver_policy(tmp_path):
    return write_policy(tmp_path, WAIVE_BOOT_VGA)


def valid(doc):
    jsonschema.Draft202012Validator(load_schema()).validate(doc)
    return doc


def test_a_waived_warning_does_not_fail_the_run(ws, waiver_policy):
    proc, doc = scan_json(ws.root, "--policy", waiver_policy, "--as-of", "2030-06-30", "--validate")
    valid(doc)
    assert proc.returncode == 0 and doc["summary"]["readiness"] == "READY" and doc["summary"]["waived"] == 1
    assert doc["targets"] == [GPU, GPU_AUDIO] and doc["summary"]["fail_on"] == "warn"
    (vga,) = [f for f in doc["findings"] if f["rule_id"] == "VFIO-015" and f["subject"] == GPU]
    assert vga["status"] == "waived" and vga["original_status"] == "warn" and vga["remediation"]
    assert vga["waiver"]["justification"] == "firmware boots on the RTX until BIOS update WS-42"
    assert vga["waiver"]["expires"] == "2030-06-30" and vga["waiver"]["source"].endswith("waivers[0] (line 9)")
    policy = doc["policy"]
    assert policy["file"] == str(waiver_policy) and policy["date"] == "2030-06-30" and policy["waivers"] == 2
    assert policy["expired_waivers"] == []
    (unused,) = policy["unused_waivers"]
    assert unused["rule"] == "VFIO-006" and unused["reason"] == "no failing or warning VFIO-006 finding on this host"


def test_after_its_last_day_the_waiver_is_expired_and_the_warning_fails_the_run(ws, waiver_policy):
    proc, doc = scan_json(ws.root, "--policy", waiver_policy, "--as-of", "2030-07-01")
    valid(doc)
    assert proc.returncode == 1 and doc["summary"]["readiness"] == "NOT_READY" and doc["summary"]["waived"] == 0
    assert by_rule({"findings": [f for f in doc["findings"] if f["subject"] == GPU]})["VFIO-015"]["status"] == "warn"
    (expired,) = doc["policy"]["expired_waivers"]
    assert expired["expires"] == "2030-06-30" and expired["would_cover"] == [f"VFIO-015 {GPU}"]


def test_the_table_shows_waived_expired_and_unused(ws, waiver_policy, tmp_path):
    now = run_cli("scan", "--root", ws.root, "--policy", waiver_policy, "--as-of", "2030-01-01").stdout
    flat = " ".join(now.split())  # long lines wrap at 100 columns
    assert "Readiness: READY (28 pass, 3 skip, 1 waived)" in flat
    assert (f"Policy {waiver_policy} (waivers judged on 2030-01-01): 1 finding waived, 0 expired waivers, "
            "1 unused waiver") in flat
    row = next(line for line in now.splitlines() if line.startswith("WAIVED"))
    assert "VFIO-015" in row and "(warn waived, until 2030-06-30: firmware boots" in row
    assert (f"UNUSED waiver VFIO-006 [{waiver_policy}: waivers[1] (line 15)]: no failing or warning VFIO-006 "
            "finding on this host; remove it if the gap is closed") in flat
    later = " ".join(run_cli("scan", "--root", ws.root, "--policy", waiver_policy, "--as-of", "2031-01-01")
                     .stdout.split())
    assert "WAIVED" not in later and "Readiness: NOT_READY" in later
    assert (f"EXPIRED waiver VFIO-015 0000:01:00.* [{waiver_policy}: waivers[0] (line 9)]: last day 2030-06-30; "
            f"counts again: VFIO-015 {GPU}") in later


def test_junit_shows_a_waived_finding_as_skipped_with_its_justification(ws, waiver_policy):
    proc = run_cli("scan", "--root", ws.root, "--policy", waiver_policy, "--as-of", "2030-01-01", "--format", "junit")
    assert proc.returncode == 0
    root = ET.fromstring(proc.stdout.encode())
    case = next(c for c in root.iter("testcase") if c.get("name") == f"VFIO-015 Device is not the firmware boot display {GPU}")
    skipped = case.find("skipped")
    assert skipped is not None and case.find("failure") is None
    assert skipped.get("message") == "waived: firmware boots on the RTX until BIOS update WS-42 (expires 2030-06-30)"
    expired = run_cli("scan", "--root", ws.root, "--policy", waiver_policy, "--as-of", "2031-01-01", "--format", "junit")
    case = next(c for c in ET.fromstring(expired.stdout.encode()).iter("testcase") if c.get("name") == case.get("name"))
    assert case.find("failure") is not None and case.find("skipped") is None  # fail_on warn: a failure again


def test_waivers_apply_only_on_matching_hosts(ws, tmp_path):
    policy = write_policy(tmp_path, """
        fail_on = "warn"
        [[targets]]
        address = "01:00.0"
        [[waivers]]
        rule = "VFIO-015"
        host = "ws-*"
        justification = "workstations boot on the GPU"
    """)
    proc, doc = scan_json(ws.root, "--policy", policy)
    assert proc.returncode == 1 and doc["summary"]["waived"] == 0 and doc["policy"]["unused_waivers"] == []
    ws.write("/proc/sys/kernel/hostname", "WS-07.lab.example\n")
    proc, doc = scan_json(ws.root, "--policy", policy)
    assert proc.returncode == 0 and doc["summary"]["waived"] == 1


def test_errors_are_never_waived_exit_3(tmp_path, intel_host):
    plugins = make_plugin(tmp_path / "plugins", RAISING_PLUGIN)
    policy = write_policy(tmp_path, '[[waivers]]\nrule = "ACME-100"\njustification = "flaky"\n')
    proc, doc = scan_json(intel_host.root, "--policy", policy, pythonpath=plugins)
    assert proc.returncode == 3 and by_rule(doc)["ACME-100"]["status"] == "error"
    assert doc["policy"]["unused_waivers"][0]["reason"] == "no failing or warning ACME-100 finding on this host"


# -- rule selection, severities and fail_on: the policy, then the command line --------------------------

def test_fail_on_from_the_policy_and_the_command_line_wins(tmp_path):
    root = warn_only_host(tmp_path / "h").root  # VFIO-006 warns
    strict = write_policy(tmp_path, 'fail_on = "warn"\n')
    assert scan_json(root)[0].returncode == 0
    proc, doc = scan_json(root, "--policy", strict)
    assert proc.returncode == 1 and doc["summary"]["fail_on"] == "warn"
    proc, doc = scan_json(root, "--policy", strict, "--fail-on", "fail")
    assert proc.returncode == 0 and doc["summary"]["fail_on"] == "fail"


def test_severity_from_the_policy_and_from_the_command_line(tmp_path):
    root = no_dmar_host(tmp_path / "h").root  # VFIO-002 fails, severity critical
    lowered = write_policy(tmp_path, 'fail_on = "critical"\n[rules.severity]\nVFIO-002 = "high"\n')
    proc, doc = scan_json(root, "--policy", lowered)
    assert proc.returncode == 0 and by_rule(doc)["VFIO-002"]["severity"] == "high"
    assert doc["summary"]["readiness"] == "READY_WITH_WARNINGS"
    proc, doc = scan_json(root, "--policy", lowered, "--severity", "VFIO-002=critical")
    assert proc.returncode == 1 and by_rule(doc)["VFIO-002"]["severity"] == "critical"
    proc, doc = scan_json(root, "--fail-on", "high", "--severity", "firmware-iommu=medium")  # by name, no policy
    assert proc.returncode == 0 and by_rule(doc)["VFIO-002"]["severity"] == "medium" and "policy" not in doc


def test_junit_failure_type_follows_the_policy_severity(tmp_path):
    root = no_dmar_host(tmp_path / "h").root
    policy = write_policy(tmp_path, '[rules.severity]\nVFIO-002 = "low"\n')
    proc = run_cli("scan", "--root", root, "--policy", policy, "--format", "junit")
    failure = ET.fromstring(proc.stdout.encode()).find(".//failure")
    assert proc.returncode == 1 and failure.get("type") == "low"


def test_rules_skipped_by_the_policy_can_be_run_from_the_command_line(tmp_path):
    root = no_dmar_host(tmp_path / "h").root
    policy = write_policy(tmp_path, '[rules]\nskip = ["VFIO-002", "VFIO-014"]\n')
    proc, doc = scan_json(root, "--policy", policy)
    assert proc.returncode == 0 and "VFIO-002" not in by_rule(doc)
    proc, doc = scan_json(root, "--policy", policy, "--rule", "VFIO-002", "--rule", "VFIO-001")
    assert proc.returncode == 1 and sorted(by_rule(doc)) == ["VFIO-001", "VFIO-002"]
    proc, doc = scan_json(root, "--policy", policy, "--skip-rule", "cpu-virtualization")
    assert "VFIO-001" not in by_rule(doc) and "VFIO-002" not in by_rule(doc) and "VFIO-004" in by_rule(doc)


def test_only_rules_from_the_policy(tmp_path, intel_host):
    policy = write_policy(tmp_path, '[rules]\nonly = ["VFIO-004", "VFIO-006"]\n')
    proc, doc = scan_json(intel_host.root, "--policy", policy)
    assert sorted(by_rule(doc)) == ["VFIO-004", "VFIO-006"] and proc.returncode == 0


@pytest.mark.parametrize("args, message", [
    (["--severity", "VFIO-006"], "--severity VFIO-006: expected RULE=LEVEL, e.g. VFIO-006=critical"),
    (["--severity", "VFIO-099=high"], "--severity VFIO-099=high: no such rule 'VFIO-099' (see 'vfio-scan rules')"),
    (["--severity", "VFIO-006=urgent"], "--severity VFIO-006=urgent: LEVEL is one of info, low, medium, high, critical"),
    (["--as-of", "1 July 2030"], "--as-of 1 July 2030: expected a date YYYY-MM-DD"),
    (["--as-of", "2030-02-30"], "--as-of 2030-02-30: expected a date YYYY-MM-DD"),
])
def test_bad_policy_options_are_exit_2(intel_host, args, message):
    proc = run_cli("scan", "--root", intel_host.root, *args)
    assert proc.returncode == 2 and proc.stdout == ""
    assert stderr_lines(proc) == [f"vfio-scan scan: error: {message}"]


# -- targets and their drivers -------------------------------------------------------------------------

def test_command_line_targets_add_to_the_policy(tmp_path, ws):
    policy = write_policy(tmp_path, '[[targets]]\naddress = "01:00.0"\n')
    proc, doc = scan_json(ws.root, "--policy", policy, "--device", "01:00.1", "--rule", "device-present")
    assert doc["targets"] == [GPU, GPU_AUDIO] and proc.returncode == 0


def test_a_policy_target_that_matches_nothing_fails_vfio_010(tmp_path, ws):
    policy = write_policy(tmp_path, '[[targets]]\nmatch = { vendor = "1af4", device = "1041" }\n')
    proc, doc = scan_json(ws.root, "--policy", policy, "--rule", "VFIO-010")
    (f,) = doc["findings"]
    assert proc.returncode == 1 and f["status"] == "fail" and f["subject"] == "vendor=1af4,device=1041"
    assert f["message"].startswith("no PCI device matches (vendor=1af4,device=1041)")


@pytest.mark.parametrize("driver, status, message", [
    ("igb", "pass", "bound to igb, as the policy expects"),
    ("ixgbe", "fail", "not on ixgbe, the driver the policy expects: bound to igb"),
])
def test_vfio_013_judges_against_the_policy_driver(tmp_path, driver, status, message):
    tree = workstation(tmp_path / "ws")
    policy = write_policy(tmp_path, f'[[targets]]\nmatch = {{ vendor = "8086", device = "1521" }}\ndriver = "{driver}"\n')
    proc, doc = scan_json(tree.root, "--policy", policy, "--rule", "VFIO-013", "--rule", "VFIO-012")
    binding = by_rule(doc)["VFIO-013"]
    assert binding["subject"] == "0000:02:00.0" and binding["status"] == status and binding["message"] == message
    assert by_rule(doc)["VFIO-012"]["status"] == "skip"  # stays on the host: its group is not VFIO's business
    assert proc.returncode == (0 if status == "pass" else 1)
    if status == "fail":
        (step,) = binding["remediation"]
        assert step["commands"] == ["echo ixgbe > /sys/bus/pci/devices/0000:02:00.0/driver_override",
                                    "echo 0000:02:00.0 > /sys/bus/pci/devices/0000:02:00.0/driver/unbind",
                                    "echo 0000:02:00.0 > /sys/bus/pci/drivers_probe"]


def test_the_default_driver_is_vfio_pci(tmp_path):
    tree = workstation(tmp_path / "ws")  # the GPU is on nvidia
    policy = write_policy(tmp_path, '[[targets]]\naddress = "01:00.0"\n')
    proc, doc = scan_json(tree.root, "--policy", policy, "--rule", "VFIO-013")
    assert proc.returncode == 1 and doc["findings"][0]["message"].startswith("not on vfio-pci: bound to nvidia")


@pytest.mark.parametrize("spelled", ["vfio_pci", "vfio-pci"])
def test_the_module_name_vfio_pci_means_the_driver_vfio_pci(tmp_path, spelled):
    tree = workstation(tmp_path / "ws")
    tree.bind("0000:02:00.0", "vfio-pci")
    policy = write_policy(tmp_path, f'[[targets]]\naddress = "02:00.0"\ndriver = "{spelled}"\n')
    proc, doc = scan_json(tree.root, "--policy", policy, "--rule", "VFIO-013")
    (binding,) = doc["findings"]
    assert binding["status"] == "pass", binding["message"]
    assert not any("vfio_pci > " in c for s in binding["remediation"] for c in s["commands"])


# -- qemu-args -----------------------------------------------------------------------------------------

def test_qemu_args_takes_its_devices_from_the_policy(tmp_path, ws):
    policy = write_policy(tmp_path, """
        [[targets]]
        match = { vendor = "10de", device = "2204" }
        [[targets]]
        address = "02:00.0"
        driver = "igb"          # stays on the host: not handed to QEMU
        [[waivers]]
        rule = "VFIO-015"
        justification = "boots on the RTX"
    """)
    proc = run_cli("qemu-args", "--root", ws.root, "--policy", policy)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == (f"-device pcie-root-port,id=vfio-rp1,chassis=101,bus=pcie.0 "
                           f"-device vfio-pci,host={GPU},bus=vfio-rp1,addr=00.0,multifunction=on "
                           f"-device vfio-pci,host={GPU_AUDIO},bus=vfio-rp1,addr=00.1\n")
    assert "VFIO-015" not in proc.stderr  # waived: no caution


def test_qemu_args_without_any_target_is_a_usage_error(tmp_path, ws):
    policy = write_policy(tmp_path, 'fail_on = "warn"\n')
    proc = run_cli("qemu-args", "--root", ws.root, "--policy", policy)
    assert proc.returncode == 2 and "or give a --policy with targets" in proc.stderr


def test_the_report_schema_still_accepts_reports_without_a_policy(intel_host):
    proc, doc = scan_json(intel_host.root)
    assert "policy" not in valid(doc)
    bad = json.loads(json.dumps(doc))
    bad["findings"][0]["status"] = "waived"  # waived without its waiver breaks the contract
    with pytest.raises(jsonschema.ValidationError):
        valid(bad)
