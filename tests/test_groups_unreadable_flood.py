"""``groups`` names unreadable IOMMU groups on stderr one by one up to a limit, then sums up the rest.

A hostile snapshot listed half a million groups with no devices recorded: half a million stderr lines
(800 MB for six million), one per group.
"""

import json

from clihelpers import run_cli, stderr_lines
from hosttree import workstation
from scanner.commands.groups import SAID_GROUPS


def test_past_the_limit_one_line_sums_up_the_rest(tmp_path):
    tree = workstation(tmp_path / "ws")
    for number in range(100, 100 + SAID_GROUPS + 15):
        tree.mkdir(f"/sys/kernel/iommu_groups/{number}")  # no devices directory
    proc = run_cli("groups", "--root", tree.root)
    assert proc.returncode == 3
    lines = stderr_lines(proc)
    assert len(lines) == SAID_GROUPS + 1
    assert lines[0] == "vfio-scan groups: error: cannot list /sys/kernel/iommu_groups/100/devices: missing"
    assert lines[-1] == ("vfio-scan groups: error: and 15 more IOMMU groups whose devices cannot be listed "
                         "(the JSON output names every group)")
    document = json.loads(run_cli("groups", "--root", tree.root, "--format", "json").stdout)
    unreadable = [g for g in document["groups"] if g["verdict"].startswith("devices unreadable")]
    assert len(unreadable) == SAID_GROUPS + 15


def test_a_few_are_each_named(tmp_path):
    tree = workstation(tmp_path / "ws")
    for number in (100, 101):
        tree.mkdir(f"/sys/kernel/iommu_groups/{number}")
    lines = stderr_lines(run_cli("groups", "--root", tree.root))
    assert [line.split(": ", 2)[2] for line in lines] == [
        "cannot list /sys/kernel/iommu_groups/100/devices: missing",
        "cannot list /sys/kernel/iommu_groups/101/devices: missing"]
