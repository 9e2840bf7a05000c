"""A host on which every rule skipped has no verdict: incomplete (exit 3), never READY.

A snapshot that records the two signs of a host and nothing else readable (``/proc`` listed, its
``cmdline`` "permission denied", no kernel log) made every rule skip with "not in the snapshot", and
the host came out READY with exit 0, in a fleet's JUnit too with no failure at all: one hand-made
file passed an audit. Nothing judged is not "nothing wrong".
"""

import json

from clihelpers import run_cli
from hosttree import workstation
from scanner import collector


def nothing_but_signs(path):
    document = json.loads(collector.dumps(collector.collect(str(workstation(path.parent / "ws").root))))
    document["entries"] = {"/proc": {"type": "dir", "names": ["cmdline"]},
                           "/proc/cmdline": {"type": "error", "reason": "permission denied"}}
    document["kernel_log"] = {"source": "dmesg", "reason": "permission denied"}
    path.write_text(json.dumps(document))
    return path


def test_a_snapshot_of_nothing_readable_has_no_verdict(tmp_path):
    snap = nothing_but_signs(tmp_path / "nothing.json")
    proc = run_cli("scan", "--snapshot", snap, "--format", "json")
    assert proc.returncode == 3, proc.stderr
    report = json.loads(proc.stdout)
    assert report["summary"]["readiness"] == "NOT_READY"
    assert any("no rule could judge this host" in note for note in report["notes"])


def test_in_a_directory_of_snapshots_it_is_the_one_without_a_verdict(tmp_path):
    folder = tmp_path / "fleet"
    folder.mkdir()
    nothing_but_signs(folder / "nothing.json")
    good = run_cli("collect", "--root", str(workstation(tmp_path / "good").root), "-o", folder / "good.json")
    assert good.returncode == 0, good.stderr
    proc = run_cli("scan", "--snapshot", folder, "--format", "json")
    assert proc.returncode == 3, proc.stderr
    verdicts = [(host["summary"]["readiness"], any("no rule could judge" in n for n in host.get("notes", [])))
                for host in json.loads(proc.stdout)["hosts"]]
    assert sorted(verdicts) == [("NOT_READY", True), ("READY", False)]


def test_a_host_that_could_be_judged_keeps_its_verdict(tmp_path):
    proc = run_cli("scan", "--root", str(workstation(tmp_path / "ws").root), "--format", "json")
    assert "no rule could judge this host" not in proc.stdout
    assert proc.returncode in (0, 1), proc.stderr
