"""Merged output for many hosts: the hosts x rules matrix, the per-rule summary, the JSON fleet document
(validated against schemas/fleet.schema.json), one JUnit suite per host, and a policy applied to every host."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

import pytest

from clihelpers import run_cli
from hosttree import ready_host, workstation
from reports.matrix import render_fleet, shorten
from scanner import collector
from scanner.engine.model import Finding
from scanner.base.schemas import schema_validator
from scanner.engine.report import Report
from snapshottrees import TREES

WS = ("--device", "01:00.0")


@pytest.fixture(scope="module")
def snaps(tmp_path_factory):
    """Snapshots of four hosts with their own hostnames: two ready, a workstation, one without DMAR."""
    base = tmp_path_factory.mktemp("fleet")
    out = base / "snaps"
    out.mkdir()
    for name, build in (("gpu01", ready_host), ("gpu02", workstation), ("gpu03", TREES["no-dmar"]),
                        ("gpu04.rack7.dc1.example.com", ready_host)):
        tree = build(base / name)
        tree.write("/proc/sys/kernel/hostname", name.split(".")[0] + "\n")
        (out / f"{name}.json").write_text(collector.dumps(collector.collect(str(base / name))))
    (out / "gpu05.json").write_text("{}")
    return out


def test_matrix_table_fits_100_columns_and_counts_per_rule(snaps):
    proc = run_cli("scan", "--snapshot", snaps, *WS)
    assert proc.returncode == 3  # gpu05 could not be scanned
    lines = proc.stdout.splitlines()
    assert max(len(line) for line in lines) <= 100
    assert lines[0] == "Fleet: 5 hosts: 0 ready, 0 ready with warnings, 5 not ready (1 could not be scanned)"
    columns = [name for line in lines if line.startswith("host ") for name in line.split()[2:]]
    # every rule a column, in id order; what does not fit in 100 columns goes on in a second block
    assert columns == ["001", "002", "003", "004", "005", "006", "007", "010", "011", "012", "013",
                       "014", "015", "016", "017", "018", "019", "020", "021", "022", "023"]
    rows = {}
    for line in lines:
        if line.startswith("gpu"):
            rows.setdefault(line.split()[0], line.split()[1:])  # the first block's row
    assert rows["gpu03"][:3] == ["NOT", "READY", "ok"] and rows["gpu03"][3] == "FAIL"  # VFIO-002
    assert rows["gpu05"][0] == "UNSCANNED" and set(rows["gpu05"][1:]) == {"-"}
    assert any(key.startswith("gpu04.") and key.endswith(".com") and "…" in key for key in rows)  # shortened in the middle
    text = proc.stdout
    assert "1/5 hosts fail VFIO-002 firmware-iommu: gpu03" in text
    assert "3/5 hosts fail VFIO-010 device-present: gpu01, gpu03, gpu04.rack7.dc1.example.com" in text
    assert "Could not be scanned\n  gpu05: snapshot " in text


def test_verbose_matrix_appends_each_hosts_table(snaps):
    proc = run_cli("scan", "--snapshot", snaps, *WS, "-v")
    assert "[gpu02]" in proc.stdout and "Details and fixes" in proc.stdout
    assert max(len(line) for line in proc.stdout.splitlines()) <= 100


def test_fleet_json_document_is_schema_valid(snaps):
    proc = run_cli("scan", "--snapshot", snaps, *WS, "--format", "json", "--validate")
    doc = json.loads(proc.stdout)
    assert list(schema_validator("fleet").iter_errors(doc)) == []
    summary = doc["summary"]
    assert summary["hosts"] == 5 and summary["incomplete"] == 1 and summary["exit_code"] == 3
    vfio2 = next(r for r in summary["rules"] if r["rule_id"] == "VFIO-002")
    assert vfio2["hosts"] == {"pass": 3, "fail": 1, "warn": 0, "skip": 0, "error": 0, "waived": 0, "not_run": 1}
    assert vfio2["failing_hosts"] == ["gpu03"]
    assert [h["host"]["label"] for h in doc["hosts"]][:2] == ["gpu01", "gpu02"]
    assert doc["hosts"][1]["host"]["hostname"] == "gpu02"


def test_junit_one_suite_per_host(snaps, tmp_path):
    xml = tmp_path / "fleet.xml"
    run_cli("scan", "--snapshot", snaps, *WS, "--junit", xml, "--format", "json")
    root = ET.parse(xml).getroot()
    suites = root.findall("testsuite")
    assert [s.get("name") for s in suites] == ["vfio-scan:gpu01", "vfio-scan:gpu02", "vfio-scan:gpu03",
                                               "vfio-scan:gpu04.rack7.dc1.example.com", "vfio-scan:gpu05"]
    assert suites[3].get("hostname") == "gpu04"
    assert suites[4].find("testcase/error") is not None
    assert {c.get("classname").split(".")[0] for c in suites[1].findall("testcase")} == {"gpu02"}


def test_policy_applies_to_every_host_with_host_globs(snaps, tmp_path):
    policy = tmp_path / "policy.toml"
    policy.write_text('[[waivers]]\nrule = "VFIO-002"\nhost = "gpu0[3]"\njustification = "lab box, no VT-d"\n'
                      '[[waivers]]\nrule = "VFIO-010"\njustification = "targets differ per host"\n')
    proc = run_cli("scan", "--snapshot", snaps, *WS, "--policy", policy, "--format", "json")
    doc = json.loads(proc.stdout)
    statuses = {h["host"]["label"]: {f["rule_id"]: f["status"] for f in h["findings"]} for h in doc["hosts"]}
    assert statuses["gpu03"]["VFIO-002"] == "waived" and statuses["gpu01"]["VFIO-002"] == "pass"
    assert statuses["gpu01"]["VFIO-010"] == "waived" and statuses["gpu03"]["VFIO-010"] == "waived"
    assert all(h.get("policy") for h in doc["hosts"] if h["findings"])


def test_one_host_with_fleet_flag_is_still_a_fleet_document():
    from reports.json import document

    report = Report(host={"hostname": "a", "kernel": None, "arch": None, "cpu_vendor": None, "source": "snapshot",
                          "label": "a"}, findings=[], started_at="2024-01-01T00:00:00+00:00", duration_s=0.0,
                    tool={"name": "vfio-scan", "version": "0"})
    assert "hosts" in document([report], fleet=True) and "hosts" not in document([report])


def _report(label, statuses):
    findings = [Finding(status=s, message="m", rule_id=rid, rule=f"rule-{rid.lower()}", title="t")
                for rid, s in statuses.items()]
    return Report(host={"hostname": label, "source": "snapshot", "label": label}, findings=findings,
                  started_at="2024-01-01T00:00:00+00:00", duration_s=0.0, tool={"name": "vfio-scan", "version": "0"})


@pytest.mark.parametrize("width", [80, 100, 160])
def test_the_rules_legend_is_laid_out_at_the_table_width(width):
    """Each column's rule is named in a legend under the matrix, wrapped at the table's width (not a column's)."""
    rules = {f"VFIO-{n:03d}": "pass" for n in range(1, 24)}
    lines = render_fleet([_report("a", rules), _report("b", rules)], {"width": width}).splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("Rules: "))
    end = next(i for i, line in enumerate(lines) if line.startswith("Cells: "))
    legend = lines[start:end]
    assert lines[start].startswith("Rules: 001 rule-vfio-001  002 rule-vfio-002")
    assert all(len(line) <= width for line in legend)
    assert max(len(line) for line in legend) > width - 25  # filled to the width, not wrapped at a column's
    assert " ".join(legend).split().count("023") == 1


def test_many_rules_continue_in_another_block_at_100_columns():
    rules = {f"VFIO-{n:03d}": "pass" for n in range(1, 16)}
    rules.update({f"ACME-{n:03d}": "fail" for n in range(100, 112)})
    text = render_fleet([_report("a-very-long-host-name-that-needs-shortening.example.com", rules),
                         _report("b", dict(rules, **{"VFIO-004": "error"}))], {})
    lines = text.splitlines()
    assert max(len(line) for line in lines) <= 100
    headers = [line for line in lines if line.startswith("host ")]
    assert len(headers) >= 2  # 27 rules do not fit in one row
    assert "ACME-100" in " ".join(headers) and "VFIO-015" in " ".join(headers)  # no shared prefix: full ids
    assert "1/2 hosts error on VFIO-004" in text and "2/2 hosts fail ACME-100" in text


def test_shorten_keeps_both_ends():
    short = shorten("gpu-node-0042.rack7.dc1.example.com", 20)
    assert len(short) == 20 and short.startswith("gpu-node-0") and short.endswith("…ample.com")
    assert len(shorten("x" * 50, 26)) == 26 and shorten("short", 26) == "short"


def test_fleet_schema_refs_resolve_offline_with_old_jsonschema_too(snaps, monkeypatch):
    """``$ref: report.schema.json`` comes from the wheel, with 'referencing' (jsonschema 4.18+) or without."""
    import sys
    import warnings

    doc = json.loads(run_cli("scan", "--snapshot", snaps, *WS, "--format", "json").stdout)
    monkeypatch.setitem(sys.modules, "referencing", None)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        validator = schema_validator("fleet")
        assert list(validator.iter_errors(doc)) == []
        doc["hosts"][0]["summary"]["readiness"] = "MAYBE"
        assert list(validator.iter_errors(doc))
