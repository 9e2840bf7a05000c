"""An IOMMU group member that is no PCI function still holds the group when a driver has it.

SoCs and APUs put platform devices in a GPU's IOMMU group (an I2C controller, AMDI0010:00). Since
5.19 the kernel asks every bus's driver for a group's DMA ownership (commit 512881eacfa7, "bus:
platform,amba,fsl-mc,PCI: Add device DMA ownership management"): such a member on its driver keeps
VFIO from the group as a PCI member does, and QEMU says "group 1 is not viable". It was shown as
"(no driver)" and the group as viable: READY.
"""

import json

from clihelpers import run_cli
from hosttree import gpu_on_vfio, workstation
from test_rules_next_boot import GPU, scan

MEMBER = "AMDI0010:00"


def with_platform_member(tmp_path, bound: bool = True):
    tree = gpu_on_vfio(workstation(tmp_path / "h"))
    device = f"/sys/devices/platform/{MEMBER}"
    tree.mkdir(device)
    tree.mkdir("/sys/bus/platform/drivers/i2c_designware")
    if bound:
        tree.link_to(f"{device}/driver", "/sys/bus/platform/drivers/i2c_designware")
    tree.link_to(f"{device}/iommu_group", "/sys/kernel/iommu_groups/1")
    tree.link_to(f"/sys/kernel/iommu_groups/1/devices/{MEMBER}", device)
    return tree


def test_a_bound_platform_member_makes_the_group_not_viable(tmp_path):
    f = scan(with_platform_member(tmp_path), "VFIO-012", devices=[GPU])[GPU]
    assert f.status == "fail"
    assert f"{MEMBER} (no PCI function, driver i2c_designware)" in f.message
    assert not any(s.action and s.action.get("kind") == "bind-vfio" and s.action.get("address") == MEMBER
                   for s in f.remediation)  # vfio-pci cannot take it: only the move is offered
    assert any(s.action and s.action.get("kind") == "move-slot" for s in f.remediation)


def test_an_unbound_platform_member_leaves_the_group_viable(tmp_path):
    assert scan(with_platform_member(tmp_path, bound=False), "VFIO-012", devices=[GPU])[GPU].status == "pass"


def test_groups_says_the_group_is_in_use(tmp_path):
    proc = run_cli("groups", "--root", with_platform_member(tmp_path).root, "--format", "json")
    group = next(g for g in json.loads(proc.stdout)["groups"] if g["group"] == 1)
    assert group["verdict"].endswith("in use by host drivers")


def test_a_snapshot_tells_it_as_the_tree_does(tmp_path):
    tree = with_platform_member(tmp_path)
    snapshot = tmp_path / "snap.json"
    assert run_cli("collect", "--root", tree.root, "-o", snapshot).returncode == 0
    proc = run_cli("scan", "--snapshot", snapshot, "--device", GPU, "--format", "json", "--rule", "VFIO-012")
    (finding,) = [f for f in json.loads(proc.stdout)["findings"] if f["rule_id"] == "VFIO-012"]
    assert finding["status"] == "fail" and "driver i2c_designware" in finding["message"]


def test_an_old_snapshot_without_the_link_cannot_tell_and_skips(tmp_path):
    tree = with_platform_member(tmp_path)
    snapshot = tmp_path / "snap.json"
    assert run_cli("collect", "--root", tree.root, "-o", snapshot).returncode == 0
    document = json.loads(snapshot.read_text())
    document["entries"] = {k: v for k, v in document["entries"].items()
                           if not k.startswith(f"/sys/devices/platform/{MEMBER}/driver")}
    snapshot.write_text(json.dumps(document))
    proc = run_cli("scan", "--snapshot", snapshot, "--device", GPU, "--format", "json", "--rule", "VFIO-012")
    (finding,) = [f for f in json.loads(proc.stdout)["findings"] if f["rule_id"] == "VFIO-012"]
    assert finding["status"] == "skip" and MEMBER in finding["message"]
