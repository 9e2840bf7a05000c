"""A snapshot that records no host is refused, as ``--root`` refuses a tree of none.

``"entries": {}`` is a valid snapshot: every rule skipped, and the scan said READY, exit 0, about a
host it knew nothing of -- alone, in a fleet (the one "ready" host among its neighbours) and in a
JUnit file with no failure. The collector records ``/proc/cmdline`` and ``/sys/bus/pci/devices`` on
every host (as read, missing or denied); a snapshot with neither is now an input error alone, a host
that could not be scanned among many, and unreadable to ``diff``.
"""

import json

from clihelpers import run_cli, stderr_lines
from hosttree import gpu_on_vfio, workstation

NO_HOST = ("does not look like a host's snapshot: it has neither /proc/cmdline nor /sys/bus/pci/devices "
           "(a collector records both)")


def snapshots(tmp_path):
    tree = gpu_on_vfio(workstation(tmp_path / "host"))
    sound = tmp_path / "sound.json"
    assert run_cli("collect", "--root", tree.root, "-o", sound).returncode == 0
    empty = tmp_path / "empty.json"
    empty.write_text(json.dumps(dict(json.loads(sound.read_text()), entries={})))
    return sound, empty


def test_alone_it_is_an_input_error(tmp_path):
    _, empty = snapshots(tmp_path)
    proc = run_cli("scan", "--snapshot", empty, "--device", "01:00.0")
    assert proc.returncode == 2
    assert stderr_lines(proc) == [f"vfio-scan scan: error: --snapshot {empty}: {NO_HOST}"]
    assert proc.stdout == ""


def test_in_a_fleet_it_is_a_host_that_could_not_be_scanned(tmp_path):
    sound, empty = snapshots(tmp_path)
    fleet = tmp_path / "fleet"
    fleet.mkdir()
    for n in range(3):
        (fleet / f"node{n}.json").write_bytes((empty if n == 1 else sound).read_bytes())
    junit = tmp_path / "fleet.xml"
    proc = run_cli("scan", "--snapshot", fleet, "--device", "01:00.0", "--format", "json", "--junit", junit)
    assert proc.returncode == 3
    hosts = {h["host"]["label"]: h for h in json.loads(proc.stdout)["hosts"]}
    assert hosts["node1"]["findings"] == [] and NO_HOST in hosts["node1"]["notes"][0]
    assert all(hosts[n]["summary"]["readiness"] == "READY" for n in ("node0", "node2"))
    assert 'errors="1"' in junit.read_text().split("<testsuite ", 2)[2].split(">", 1)[0]


def test_diff_refuses_it_as_one_side_and_calls_it_unreadable_in_a_fleet(tmp_path):
    sound, empty = snapshots(tmp_path)
    proc = run_cli("diff", sound, empty, "--format", "json")
    assert proc.returncode == 2
    assert stderr_lines(proc) == [f"vfio-scan diff: error: {empty}: {NO_HOST}"]
    before, after = tmp_path / "before", tmp_path / "after"
    for side in (before, after):
        side.mkdir()
        (side / "node0.json").write_bytes(sound.read_bytes())
    (after / "node1.json").write_bytes(empty.read_bytes())
    (before / "node1.json").write_bytes(sound.read_bytes())
    proc = run_cli("diff", before, after, "--format", "json")
    assert proc.returncode == 3, proc.stderr
    assert NO_HOST in proc.stdout


def test_a_snapshot_with_one_sign_still_scans(tmp_path):
    sound, _ = snapshots(tmp_path)
    document = json.loads(sound.read_text())
    document["entries"] = {k: v for k, v in document["entries"].items() if not k.startswith("/proc/cmdline")}
    only_pci = tmp_path / "only-pci.json"
    only_pci.write_text(json.dumps(document))
    proc = run_cli("scan", "--snapshot", only_pci, "--format", "json")
    assert proc.returncode in (0, 1, 3), proc.stderr
    assert json.loads(proc.stdout)["findings"]


def test_a_fleet_host_whose_collector_reply_records_no_host_could_not_be_scanned(tmp_path):
    from test_fleet_hostile import Fake, fleet, notes_of

    sound, empty = snapshots(tmp_path)
    fake = Fake(tmp_path, empty)
    proc = fleet(fake, "web1", "--format", "json")
    assert proc.returncode == 3, proc.stderr
    (note,) = notes_of(proc)["web1"]
    assert note.endswith(f"the collector's reply from web1: {NO_HOST}")

