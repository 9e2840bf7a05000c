"""``vfio-scan diff OLD NEW``: the drift an upgrade causes, found between two captures of the same hosts.

Each case builds the workstation tree (tests/hosttree.py), captures it with the real ``collect``,
changes the tree the way an upgrade or a reboot does, captures it again, and runs the real CLI.
"""

from __future__ import annotations

import json
import shutil

import pytest

from clihelpers import run_cli
from hosttree import gpu_on_vfio, workstation


def regroup(tree, addr: str, old: str, new: str) -> None:
    """Move a device from IOMMU group ``old`` to ``new``, links both ways, as the kernel shows it."""
    devdir = tree.device_dir(addr)
    tree.remove(f"/sys/kernel/iommu_groups/{old}/devices/{addr}")
    tree.remove(f"{devdir}/iommu_group")
    tree.link_to(f"{devdir}/iommu_group", f"/sys/kernel/iommu_groups/{new}")
    tree.link_to(f"/sys/kernel/iommu_groups/{new}/devices/{addr}", devdir)


def collect(tree_root, path) -> str:
    proc = run_cli("collect", "--root", tree_root, "-o", path)
    assert proc.returncode == 0, proc.stderr
    return str(path)


def diff(*args):
    return run_cli("diff", *map(str, args))


def diff_json(*args):
    proc = diff(*args, "--format", "json")
    assert proc.stdout, proc.stderr
    return proc, json.loads(proc.stdout)


@pytest.fixture
def host(tmp_path):
    tree = gpu_on_vfio(workstation(tmp_path / "host"))
    return tree, tmp_path


def test_unchanged_host_exits_0_and_says_so(host):
    tree, tmp = host
    before = collect(tree.root, tmp / "before.json")
    after = collect(tree.root, tmp / "after.json")
    proc = diff(before, after)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[0].startswith("UNCHANGED")


def test_gpu_moved_into_the_nvme_group_is_a_regression(host):
    """The upgrade that put a passed-through GPU into the boot NVMe's group: exit 1, one line naming both."""
    tree, tmp = host
    before = collect(tree.root, tmp / "before.json")
    regroup(tree, "0000:01:00.0", "1", "9")
    regroup(tree, "0000:01:00.1", "1", "9")
    after = collect(tree.root, tmp / "after.json")
    proc, doc = diff_json(before, after)
    assert proc.returncode == 1, proc.stderr
    groups = [c for c in doc["hosts"][0]["changes"] if c["kind"] == "group"]
    assert len(groups) == 1 and groups[0]["regression"] and groups[0]["subject"] == "group 9"
    assert "0000:01:00.0, 0000:01:00.1 were group 1" in groups[0]["message"]
    assert "0000:03:00.0 was group 9" in groups[0]["message"]
    table = diff(before, after)
    assert table.returncode == 1
    assert table.stdout.startswith("REGRESSED")
    assert "REGRESSION  group" in table.stdout


def test_device_that_left_vfio_for_its_host_driver_is_a_regression_and_kernel_change_is_shown(host):
    tree, tmp = host
    before = collect(tree.root, tmp / "before.json")
    tree.bind("0000:01:00.0", "nvidia")
    tree.release("6.1.0-99-amd64")
    after = collect(tree.root, tmp / "after.json")
    proc, doc = diff_json(before, after)
    assert proc.returncode == 1
    changes = {(c["kind"], c["subject"]): c for c in doc["hosts"][0]["changes"]}
    driver = changes[("driver", "0000:01:00.0")]
    assert (driver["old"], driver["new"], driver["regression"]) == ("vfio-pci", "nvidia", True)
    kernel = changes[("kernel", "host")]
    assert kernel["new"] == "6.1.0-99-amd64" and not kernel["regression"]


def test_device_that_vanished_is_a_regression_and_one_that_appeared_is_not(host):
    tree, tmp = host
    before = collect(tree.root, tmp / "before.json")
    tree.remove("/sys/bus/pci/devices/0000:06:02.0")
    tree.remove("/sys/kernel/iommu_groups/11/devices/0000:06:02.0")
    after = collect(tree.root, tmp / "after.json")
    proc, doc = diff_json(before, after)
    assert proc.returncode == 1
    gone = [c for c in doc["hosts"][0]["changes"] if c["kind"] == "device"]
    assert [(c["subject"], c["regression"]) for c in gone] == [("0000:06:02.0", True)]
    proc, doc = diff_json(after, before)  # the other way round: it appeared, in 06:01.0's group
    came = [c for c in doc["hosts"][0]["changes"] if c["kind"] == "device"]
    assert [(c["subject"], c["new"], c["regression"]) for c in came] == [("0000:06:02.0", "8086:100e", False)]
    shared = [c for c in doc["hosts"][0]["changes"] if c["kind"] == "group"]
    assert [(c["subject"], c["regression"]) for c in shared] == [("group 11", True)]  # 06:01.0 is no longer alone
    assert proc.returncode == 1


def test_readiness_regression_from_findings_with_targets(host):
    """The snapshots are scanned with the diff's targets: the GPU back on nvidia fails VFIO-013."""
    tree, tmp = host
    before = collect(tree.root, tmp / "before.json")
    tree.bind("0000:01:00.1", "snd_hda_intel")
    after = collect(tree.root, tmp / "after.json")
    proc, doc = diff_json(before, after, "--device", "0000:01:00.0")
    assert proc.returncode == 1
    kinds = {c["kind"]: c for c in doc["hosts"][0]["changes"]}
    assert kinds["readiness"]["old"] == "READY" and kinds["readiness"]["new"] == "NOT_READY"
    assert any(c["kind"] == "finding" and c["regression"] and c["subject"].startswith("VFIO-012 0000:01:00.0")
               for c in doc["hosts"][0]["changes"])


def test_json_reports_compare_readiness_and_findings(host):
    tree, tmp = host
    scan = ("scan", "--root", tree.root, "--device", "0000:01:00.0", "--format", "json", "-o")
    first = run_cli(*scan, tmp / "r1.json")
    assert first.returncode == 0, first.stderr
    tree.modules(loaded=["kvm_intel", "kvm"], builtin=[], installed=["vfio", "vfio_iommu_type1", "vfio_pci"])
    second = run_cli(*scan, tmp / "r2.json")
    assert second.returncode == 1
    proc, doc = diff_json(tmp / "r1.json", tmp / "r2.json")
    assert proc.returncode == 1
    assert doc["hosts"][0]["compared"] == ["report", "report"]
    regressions = [c for c in doc["hosts"][0]["changes"] if c["regression"]]
    assert any(c["kind"] == "finding" and c["subject"] == "VFIO-007 host" for c in regressions), regressions
    assert regressions[0]["kind"] == "readiness" and regressions[0]["new"] == "NOT_READY"


def test_fleet_directories_pair_by_file_name_and_a_broken_one_is_reported_not_fatal(host):
    tree, tmp = host
    old_dir, new_dir = tmp / "old", tmp / "new"
    old_dir.mkdir()
    new_dir.mkdir()
    for name in ("web1", "web2", "gone"):
        collect(tree.root, old_dir / f"{name}.json")
    collect(tree.root, new_dir / "web1.json")
    (new_dir / "web2.json").write_text('{"format": "vfio-scan-snapshot", "snapshot_version": "1.0"', "utf-8")
    collect(tree.root, new_dir / "added.json")
    proc, doc = diff_json(old_dir, new_dir)
    assert proc.returncode == 3, proc.stderr  # web2 could not be read: incomplete
    status = {h["host"]: h["status"] for h in doc["hosts"]}
    assert status == {"web1": "unchanged", "web2": "unreadable", "gone": "gone", "added": "new"}
    assert "not valid JSON" in next(h for h in doc["hosts"] if h["host"] == "web2")["reason"]
    (new_dir / "web2.json").unlink()
    shutil.copy(old_dir / "web2.json", new_dir / "web2.json")
    proc, doc = diff_json(old_dir, new_dir)
    assert proc.returncode == 1  # "gone" is no longer shown ready
    assert doc["summary"]["gone"] == 1 and doc["summary"]["unreadable"] == 0


def test_many_vfs_lost_at_reboot_are_one_line(host):
    tree, tmp = host
    tree.write(f"{tree.device_dir('0000:02:00.0')}/sriov_numvfs", "7\n")
    tree.enable_vfs("0000:02:00.0", 7, first_group=20, vf_device="1520", driver="igbvf")
    before = collect(tree.root, tmp / "before.json")
    fresh = workstation(tmp / "rebooted")
    gpu_on_vfio(fresh)
    after = collect(fresh.root, tmp / "after.json")
    proc, doc = diff_json(before, after)
    assert proc.returncode == 1
    gone = [c for c in doc["hosts"][0]["changes"] if c["kind"] == "device"]
    assert len(gone) == 1 and gone[0]["subject"] == "7 devices" and gone[0]["regression"]
    assert "and 3 more" in gone[0]["message"]


@pytest.mark.parametrize("content, words", [
    ("", "not valid JSON"),
    ("[]", "not a vfio-scan snapshot, JSON report"),
    ('{"findings": 3}', "does not match schemas/report.schema.json"),
    ("[" * 100000, "too deeply nested"),
])
def test_a_bad_input_file_is_one_line_and_exit_2(tmp_path, content, words):
    bad = tmp_path / "bad.json"
    bad.write_text(content, "utf-8")
    good = tmp_path / "good.json"
    collect(workstation(tmp_path / "host").root, good)
    proc = diff(good, bad)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and words in lines[0] and str(bad) in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr


def test_missing_input_is_a_usage_error(tmp_path):
    proc = diff(tmp_path / "nope.json", tmp_path / "nope2.json")
    assert proc.returncode == 2 and "no such file or directory" in proc.stderr


def test_hostile_names_are_escaped_in_the_table(host):
    tree, tmp = host
    before = collect(tree.root, tmp / "before.json")
    tree.bind("0000:00:14.0", "evil\x1b[2J\nFAKE")
    after = collect(tree.root, tmp / "after.json")
    proc = diff(before, after)
    assert "\x1b" not in proc.stdout
    assert not any(line.startswith("FAKE") for line in proc.stdout.splitlines())
    proc, doc = diff_json(before, after)
    driver = next(c for c in doc["hosts"][0]["changes"] if c["kind"] == "driver")
    assert driver["new"] == "evil\x1b[2J\nFAKE"  # JSON keeps it exact


def test_diff_document_matches_its_schema(host):
    import jsonschema

    from clihelpers import REPO

    tree, tmp = host
    before = collect(tree.root, tmp / "before.json")
    regroup(tree, "0000:01:00.0", "1", "9")
    after = collect(tree.root, tmp / "after.json")
    _, doc = diff_json(before, after)
    schema = json.loads((REPO / "schemas" / "diff.schema.json").read_text("utf-8"))
    jsonschema.Draft202012Validator(schema).validate(doc)


def test_fleet_reports_pair_hosts_by_label_and_groups_documents_compare_groups(host):
    tree, tmp = host
    for side in ("old", "new"):
        (tmp / side).mkdir()
        for name in ("gpu1", "gpu2"):
            collect(tree.root, tmp / side / f"{name}.json")
        if side == "old":
            groups = run_cli("groups", "--root", tree.root, "--format", "json")
            (tmp / "groups-old.json").write_text(groups.stdout, "utf-8")
            regroup(tree, "0000:01:00.0", "1", "9")
            groups = run_cli("groups", "--root", tree.root, "--format", "json")
            (tmp / "groups-new.json").write_text(groups.stdout, "utf-8")
    (tmp / "new" / "gpu1.json").write_bytes((tmp / "old" / "gpu1.json").read_bytes())
    for side in ("old", "new"):
        scan = run_cli("scan", "--snapshot", tmp / side, "--device", "0000:01:00.0", "--format", "json",
                       "-o", tmp / f"fleet-{side}.json")
        assert scan.stdout == "" and scan.returncode in (0, 1), scan.stderr
    proc, doc = diff_json(tmp / "fleet-old.json", tmp / "fleet-new.json")
    assert proc.returncode == 1
    assert {h["host"]: h["status"] for h in doc["hosts"]} == {"gpu1": "unchanged", "gpu2": "regressed"}
    proc, doc = diff_json(tmp / "groups-old.json", tmp / "groups-new.json")
    assert proc.returncode == 1
    assert doc["hosts"][0]["compared"] == ["groups", "groups"]
    assert [c["subject"] for c in doc["hosts"][0]["changes"] if c["regression"]] == ["group 9"]
