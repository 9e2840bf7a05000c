"""The benchmarks' generators and runner work (on the smallest sizes): no timing is asserted here.

Speed is measured by ``benchmarks/run.py`` alone; these tests only make sure that what it
measures is what it claims: trees of exactly N functions laid out as sysfs is, a fleet of
snapshots that scan, a floor that reads the collector's own list of paths, and a runner that
writes every section of RESULTS.md.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from clihelpers import REPO, run_cli

sys.path.insert(0, str(REPO / "benchmarks"))

import floor  # noqa: E402
import timing  # noqa: E402
import treegen  # noqa: E402
from scanner import collector  # noqa: E402


def groups_of(tree: Path) -> list:
    done = run_cli("groups", "--root", tree, "--format", "json")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)["groups"]


@pytest.mark.parametrize("functions", [10, 37, 100])
def test_a_tree_has_exactly_the_functions_asked_for_all_in_iommu_groups(tmp_path, functions):
    info = treegen.build(tmp_path / "tree", functions, pci_ids=False)
    listed = sorted((tmp_path / "tree/sys/bus/pci/devices").iterdir())
    assert info.functions == len(listed) == functions
    grouped = [d["address"] for g in groups_of(tmp_path / "tree") for d in g["devices"]]
    assert sorted(grouped) == [p.name for p in listed]


def test_a_tree_has_groups_of_mixed_sizes_and_sriov_vfs_linked_to_their_pf(tmp_path):
    info = treegen.build(tmp_path / "tree", 100, pci_ids=False)
    sizes = sorted(len(g["devices"]) for g in groups_of(tmp_path / "tree"))
    assert sizes[-1] == 5 and 4 in sizes and 3 in sizes and sizes[0] == 1  # bridge, chipset, GPU, VFs
    assert info.physical_functions == 2 and info.virtual_functions == 100 - 10 - 6 - 3
    devices = tmp_path / "tree/sys/bus/pci/devices"
    pf = devices / "0000:10:00.0"
    assert int((pf / "sriov_numvfs").read_text()) == len(list(pf.glob("virtfn*"))) > 0
    first_vf = (pf / "virtfn0").resolve()
    assert (first_vf / "physfn").resolve() == pf.resolve()
    assert (devices / first_vf.name).resolve() == first_vf


def test_a_scan_with_every_device_a_target_judges_every_device(tmp_path):
    treegen.build(tmp_path / "tree", 37, pci_ids=False)
    targets = [a for c in treegen.TARGET_CLASSES for a in ("--class", c)]
    done = run_cli("scan", "--root", tmp_path / "tree", "--format", "json", "--rule", "VFIO-010", *targets)
    assert done.returncode in (0, 1), done.stderr
    judged = {f["subject"] for f in json.loads(done.stdout)["findings"] if f["status"] == "pass"}
    assert len(judged) == 37


def test_the_floor_reads_exactly_the_paths_the_collector_captures():
    assert floor.PATTERNS == tuple((kind, pattern) for kind, pattern, _cap in collector.CAPTURE)


def test_the_floor_reads_more_with_device_targets(tmp_path):
    treegen.build(tmp_path / "tree", 10, pci_ids=False)

    def paths(*extra):
        done = subprocess.run([sys.executable, str(REPO / "benchmarks/floor.py"), str(tmp_path / "tree"), *extra],
                              capture_output=True, text=True, check=True)
        return int(done.stdout.split()[0])
    assert paths("--devices") > paths() + 10 * 5
    assert paths("--devices", "--stack") == paths("--devices")  # --stack only imports: the same reads


@pytest.mark.parametrize("mode", [[], ["--plain"]], ids=["confined", "plain"])
def test_the_groups_floor_reads_every_group_and_function_the_command_lists(tmp_path, mode):
    treegen.build(tmp_path / "tree", 37, pci_ids=False)
    listed = groups_of(tmp_path / "tree")
    done = subprocess.run([sys.executable, str(REPO / "benchmarks/groups_floor.py"), str(tmp_path / "tree"), *mode],
                          capture_output=True, text=True, check=True)
    grouped = sum(len(g["devices"]) for g in listed)
    assert done.stdout.strip() == f"{len(listed)} groups, {grouped} functions in them, 37 functions"


def test_the_confined_groups_floor_follows_links_inside_the_tree_as_vfio_scan_does(tmp_path):
    """A link's absolute target is taken from the tree's root, as vfio-scan's walk takes it: a tree copied
    whole from ``/`` holds such links, and the kernel would follow them to this machine's own /sys."""
    import groups_floor

    treegen.build(tmp_path / "tree", 10, pci_ids=False)
    link = sorted((tmp_path / "tree/sys/bus/pci/devices").iterdir())[0]
    target = link.resolve()
    link.unlink()
    link.symlink_to("/" + str(target.relative_to(tmp_path / "tree")))
    host = groups_floor.Confined(str(tmp_path / "tree"))
    assert host.read(f"/sys/bus/pci/devices/{link.name}/vendor") == (target / "vendor").read_bytes()


def test_the_runner_writes_every_section_on_the_smallest_sizes_and_leaves_the_tracked_files(tmp_path):
    tracked = {p: p.read_bytes() for p in (REPO / "benchmarks/RESULTS.md", REPO / "README.md")}
    done = subprocess.run([sys.executable, str(REPO / "benchmarks/run.py"), "--sizes", "10", "--runs", "1",
                           "--hosts", "8", "--loop-budget", "5", "--work", str(tmp_path / "work")],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert {p: p.read_bytes() for p in tracked} == tracked  # only --write touches them
    text = (tmp_path / "work" / "RESULTS.md").read_text()
    for heading in ("## Targets", "## Trees", "## IOMMU groups", "## One IOMMU group of many targets",
                    "## This machine", "## Fleet: 8 snapshots"):
        assert heading in text
    assert "| 10 | host rules |" in text and "| 10 | every device a target |" in text
    assert "| 10 | every device a target, `--format table` |" in text
    assert "`vfio-scan --version` within 1.5× of `python -c pass`" in text
    # beside the targets they miss by what comes before vfio-scan's first line, that floor is measured
    assert "(pip's wrapper alone: " in text and "| `python -c 'import re, sys'` |" in text
    assert "| `python -c 'import pluggy, argparse, json'` |" in text
    assert "10 functions, host rules: within 1.5× of the floor | " in text
    assert "(the floor importing pluggy, argparse and json first: " in text
    assert "a 256-member group, every member a target: report bytes per target" in text
    groups_head = [line for line in text.splitlines() if line.startswith("| host | devices |")]
    assert groups_head and "| floor, confined | floor, plain |" in groups_head[0]
    fleet_row = [line for line in text.splitlines() if line.startswith("| 8 |")]
    assert fleet_row and "| 8 | ok |" in fleet_row[0]  # 8 JUnit suites, one per host
    snapshots = sorted((tmp_path / "work").glob("fleet-*/snapshots/*.json"))
    assert [p.name for p in snapshots] == [f"node-{n:04d}.json" for n in range(1, 9)]


def test_the_readme_s_table_of_targets_is_replaced_between_its_markers_only():
    import run

    readme = f"intro\n{run.BEGIN}\n| old |\n{run.END}\noutro\n"
    new = run.with_targets(readme, ["| a | 1× | met |"])
    assert new == f"intro\n{run.BEGIN}\n| target | measured | |\n|---|---|---|\n| a | 1× | met |\n{run.END}\noutro\n"
    assert run.with_targets("no markers\n", ["| a | 1× | met |"]) == "no markers\n"
    assert run.BEGIN in (REPO / "README.md").read_text()


def test_contenders_of_a_ratio_are_run_in_turn_so_a_drifting_machine_moves_them_alike(tmp_path):
    """After one warm-up each, the runs alternate: a machine that slows down half-way slows both."""
    log = tmp_path / "order"
    def command(name, status):
        return [sys.executable, "-c", f"open({str(log)!r}, 'a').write({name!r}); raise SystemExit({status})"]

    a, b = timing.measure_together([command("A", 0), command("B", 2)], runs=3, oks=[(0,), (0,)])
    peak_runs = "AB" if timing.peak_memory([sys.executable, "-c", "pass"]) else ""  # under GNU time, if installed
    assert log.read_text() == "AB" + "AB" * 3 + peak_runs  # warm-ups, three rounds in turn, each peak-memory run
    assert len(a.wall) == len(b.wall) == 3
    assert (a.note, b.note) == ("", "exit status 2")  # a status outside its own accepted ones is reported
