"""A report grows with its targets and what blocks them, not with targets x group members.

Virtual functions of one PF that share its IOMMU group (a switch without ACS) make groups of
hundreds. Each target's VFIO-012 finding once named every member: 65,000 evidence items and a
quadratic report for one 256-member group.
"""

import json

from clihelpers import run_cli
from hosttree import ready_host


def shared_group_host(root, members: int):
    tree = ready_host(root)
    for n in range(members):
        bus, fn = divmod(n, 8)
        tree.pci_device(f"0000:{0x10 + bus // 32:02x}:{bus % 32:02x}.{fn}", "15b3", "101e", "020000",
                        driver="vfio-pci", group="40")
    tree.write("/dev/vfio/40", "")
    return tree


def report_bytes(tmp_path, members: int) -> int:
    tree = shared_group_host(tmp_path / f"h{members}", members)
    proc = run_cli("scan", "--root", tree.root, "--class", "0200", "--rule", "VFIO-012", "--format", "json")
    doc = json.loads(proc.stdout)
    findings = [f for f in doc["findings"] if f["rule_id"] == "VFIO-012"]
    assert len(findings) == members + 1  # every VF, and the e1000e of the ready host
    assert all(f["status"] == "pass" for f in findings)
    assert max(len(f["evidence"]) for f in findings) <= 12
    return len(proc.stdout)


def test_a_group_of_256_targets_costs_per_target_what_a_group_of_16_does(tmp_path):
    small, big = report_bytes(tmp_path, 16), report_bytes(tmp_path, 256)
    assert big / 256 < 1.5 * small / 16, (small, big)


def test_a_big_group_still_names_its_size_and_what_blocks_it(tmp_path):
    tree = shared_group_host(tmp_path / "h", 64)
    tree.bind("0000:10:03.5", "mlx5_core")
    proc = run_cli("scan", "--root", tree.root, "--device", "0000:10:00.0", "--rule", "VFIO-012", "--format", "json")
    (f,) = [f for f in json.loads(proc.stdout)["findings"] if f["rule_id"] == "VFIO-012"]
    assert f["status"] == "fail" and "0000:10:03.5" in f["message"]
    listing = f["evidence"][0]["value"]
    assert listing.endswith("... (64 in all)")
    assert any(e["source"].endswith("/0000:10:03.5") for e in f["evidence"])
    assert any(e["value"].startswith("others: ") for e in f["evidence"])
