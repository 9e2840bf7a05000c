"""``vfio-scan collect`` and ``vfio-scan scan --snapshot``, through the real CLI.

The promise: a scan of a snapshot gives exactly the findings of a scan of what it was taken
from. Checked on ready, device-targeted and broken trees by comparing the JSON findings of
``scan --root T`` with those of ``scan --snapshot`` of ``collect --root T``. Then the input
errors: a bad snapshot alone is exit 2 with one line; among many it is that host's error (exit
3) and the others are reported.
"""

from __future__ import annotations

import json
import os

import pytest

from clihelpers import BUILTIN_IDS, run_cli, stderr_lines
from hosttree import workstation
from snapshottrees import TREES

WS_TARGETS = ("--device", "01:00.0", "--device", "00:1f.6", "--device", "02:00.0", "--vfs", "0000:02:00.0=2")
CASES = {  # tree -> device targets
    "ready": (),
    "workstation": WS_TARGETS,
    "kitchen-sink": WS_TARGETS,
    "broken-links": ("--device", "01:00.0"),
    "garbled": (),
    "no-dmar": ("--device", "00:02.0"),
    "no-cmdline": (),
}


@pytest.fixture(scope="module")
def trees(tmp_path_factory):
    """Each tree of CASES, its snapshot file (written by 'vfio-scan collect'), in one directory of snapshots."""
    base = tmp_path_factory.mktemp("trees")
    snaps = base / "snapshots"
    snaps.mkdir()
    made = {}
    for name in CASES:
        root = base / name
        TREES[name](root)
        proc = run_cli("collect", "--root", root, "-o", snaps / f"{name}.json")
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout == "" and f"wrote {snaps / name}.json" in proc.stderr
        made[name] = (root, snaps / f"{name}.json")
    return made, snaps


def findings(document):
    return [f for f in document["findings"]]


@pytest.mark.parametrize("name", sorted(CASES))
def test_scan_of_a_snapshot_equals_scan_of_its_tree(trees, name):
    made, _ = trees
    root, snap = made[name]
    direct = run_cli("scan", "--root", root, "--format", "json", *CASES[name])
    offline = run_cli("scan", "--snapshot", snap, "--format", "json", "--validate", *CASES[name])
    assert direct.returncode == offline.returncode, offline.stderr
    a, b = json.loads(direct.stdout), json.loads(offline.stdout)
    assert findings(b) == findings(a)
    assert b["targets"] == a["targets"] and b["summary"] == a["summary"]
    collected = json.loads(snap.read_text("utf-8"))["collected_at"]
    assert b["host"] == dict(a["host"], source="snapshot", collected_at=collected)


def test_many_snapshots_one_fleet_document_same_findings_per_host(trees):
    """A directory of snapshots: one fleet document, each host's findings as its own scan gives them."""
    made, snaps = trees
    proc = run_cli("scan", "--snapshot", snaps, "--format", "json", "--validate", *WS_TARGETS)
    doc = json.loads(proc.stdout)
    assert [h["host"]["label"] for h in doc["hosts"]] == sorted(CASES)
    for host in doc["hosts"]:
        root = made[host["host"]["label"]][0]
        alone = json.loads(run_cli("scan", "--root", root, "--format", "json", *WS_TARGETS).stdout)
        assert host["findings"] == alone["findings"], host["host"]["label"]
    assert doc["summary"]["hosts"] == len(CASES)
    assert proc.returncode == doc["summary"]["exit_code"]


def test_one_bad_snapshot_alone_is_a_usage_error(tmp_path):
    bad = tmp_path / "bad.json"
    for content, words in ((b"{not json", "not valid JSON"), (b'{"format": "other"}', "not a vfio-scan snapshot"),
                           (b'{"format": "vfio-scan-snapshot", "snapshot_version": "2.0"}', "snapshot_version 2.0"),
                           (b'{"format": "vfio-scan-snapshot", "snapshot_version": "1.0"}', "schemas/snapshot.schema.json"),
                           (b"\xff\xfe", "not UTF-8")):
        bad.write_bytes(content)
        proc = run_cli("scan", "--snapshot", bad)
        assert proc.returncode == 2, proc.stderr
        lines = stderr_lines(proc)
        assert len(lines) == 1 and lines[0].startswith(f"vfio-scan scan: error: --snapshot {bad}: ") and words in lines[0]
        assert proc.stdout == ""


def test_a_bad_snapshot_among_many_is_that_hosts_error_and_the_rest_are_scanned(trees, tmp_path):
    made, _ = trees
    bad = tmp_path / "gpu09.json"
    bad.write_text('{"format": "vfio-scan-snapshot", "snapshot_version": "1.0", "entries": []}')
    proc = run_cli("scan", "--snapshot", made["ready"][1], bad, made["workstation"][1], "--format", "json")
    assert proc.returncode == 3
    doc = json.loads(proc.stdout)
    labels = [h["host"]["label"] for h in doc["hosts"]]
    assert labels == ["ready", "gpu09", "workstation"]
    broken = doc["hosts"][1]
    assert broken["findings"] == [] and broken["summary"]["readiness"] == "NOT_READY"
    assert "schemas/snapshot.schema.json" in broken["notes"][0] and str(bad) in broken["notes"][0]
    assert doc["summary"]["host_errors"] == [{"host": "gpu09", "reason": broken["notes"][0]}]
    assert len(doc["hosts"][0]["findings"]) == len(BUILTIN_IDS)


def test_snapshot_input_errors(trees, tmp_path):
    made, _ = trees
    empty = tmp_path / "empty"
    empty.mkdir()
    for args, words in ((("--snapshot", tmp_path / "nope.json"), "no such file or directory"),
                        (("--snapshot", empty), "no *.json snapshot files"),
                        (("--snapshot", made["ready"][1], "--root", made["ready"][0]), "cannot be combined")):
        proc = run_cli("scan", *args)
        assert proc.returncode == 2 and words in proc.stderr and len(stderr_lines(proc)) == 1


def test_groups_and_qemu_args_read_one_snapshot(trees):
    made, _ = trees
    root, snap = made["workstation"]
    collected = json.loads(snap.read_text("utf-8"))["collected_at"]
    for command in (("groups", "--format", "json"), ("qemu-args", "--device", "00:1f.6")):
        a, b = run_cli(*command, "--root", root), run_cli(*command, "--snapshot", snap)
        as_snapshot = a.stdout.replace('"source": "root"', f'"source": "snapshot",\n    "collected_at": "{collected}"')
        assert (a.returncode, as_snapshot) == (b.returncode, b.stdout)
    proc = run_cli("qemu-args", "--device", "01:00.0", "--snapshot", snap, made["ready"][1])
    assert proc.returncode == 2 and "reads one host" in proc.stderr


def test_collect_to_stdout_and_its_options(tmp_path):
    root = tmp_path / "ws"
    workstation(root)
    proc = run_cli("collect", "--root", root)
    assert proc.returncode == 0 and json.loads(proc.stdout)["hostname"] == "testhost"
    script = run_cli("collect", "--print-script")
    assert script.returncode == 0 and script.stdout.startswith("#!/usr/bin/env python3")
    for args, words in ((("--root", tmp_path / "nope"), "no such directory"),
                        (("--root", root, "-o", tmp_path / "no" / "x.json"), "does not exist"),
                        (("--root", root, "--kernel-log", tmp_path / "nope.txt"), "no such file")):
        proc = run_cli("collect", *args)
        assert proc.returncode == 2 and words in proc.stderr


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads mode-000 files anyway")
def test_permission_denied_is_recorded_and_replayed(tmp_path):
    root = tmp_path / "ws"
    tree = workstation(root)
    tree.write("/proc/cmdline", "secret\n", mode=0o000)
    snap = tmp_path / "ws.json"
    run_cli("collect", "--root", root, "-o", snap)
    a = json.loads(run_cli("scan", "--root", root, "--format", "json").stdout)
    b = json.loads(run_cli("scan", "--snapshot", snap, "--format", "json").stdout)
    assert a["findings"] == b["findings"]
    assert "permission denied" in json.dumps(b["findings"])


def test_many_snapshots_in_worker_processes_give_the_report_of_one_process(trees, tmp_path):
    """Enough snapshots to go to worker processes: the same fleet document, hosts in input order,
    a broken snapshot still that host's error, as when one process scans them all."""
    made, snaps = trees
    many = tmp_path / "many"
    many.mkdir()
    names = sorted(CASES)
    for n in range(24):
        name = names[n % len(names)]
        (many / f"h{n:02d}.json").write_text(made[name][1].read_text())
    (many / "h07.json").write_text('{"format": "vfio-scan-snapshot", "snapshot_version": "1.0", "entries": []}')

    def fleet(processes):
        proc = run_cli("scan", "--snapshot", many, "--format", "json", *WS_TARGETS, VFIO_SCAN_PROCESSES=processes)
        doc = json.loads(proc.stdout)
        for host in doc["hosts"]:
            host.pop("started_at")
            host.pop("duration_s")
        return proc.returncode, doc
    code, alone = fleet("1")
    assert code == 3 and [h["host"]["label"] for h in alone["hosts"]] == [f"h{n:02d}" for n in range(24)]
    assert fleet("2") == (code, alone)


def test_a_saved_snapshot_s_escaped_file_name_is_the_host_s_name_again():
    from scanner.engine.snapshots import label_for

    taken = set()
    assert label_for("/snaps/web1%3A2222.json", taken) == "web1:2222"
    assert label_for("/snaps/web1_2222.json", taken) == "web1_2222"
    assert label_for("/snaps/other%3A2222.json", taken) == "other:2222"
    assert label_for("/snaps/web1%3A2222.json", taken) == "web1:2222 (2)"


def test_a_snapshot_scan_says_when_the_snapshot_was_collected(trees):
    """The findings describe the host as it was then: the report and the groups document carry the time."""
    tree, snapshot = trees[0]["ready"]
    collected = json.loads(snapshot.read_text("utf-8"))["collected_at"]
    proc = run_cli("scan", "--snapshot", snapshot, "--format", "json")
    assert json.loads(proc.stdout)["host"]["collected_at"] == collected
    groups = run_cli("groups", "--snapshot", snapshot, "--format", "json")
    assert json.loads(groups.stdout)["host"]["collected_at"] == collected
    assert "collected_at" not in json.loads(run_cli("scan", "--root", tree, "--format", "json").stdout)["host"]
