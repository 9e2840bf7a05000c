"""A device the host runs on is refused when the script is written and again when it runs.

The script is written from a scan and maybe run days later: a NIC may carry the default route by
then (through a bridge, over IPv6), a disk may hold ``/boot``, a card may have been swapped. Each
case writes the script first, changes the tree the way the host would have changed, runs the
script, and checks that the device was left alone, the block says ``REFUSED`` with the reason,
and the exit status is 1. The same logic refuses at write time (scanner/remediation/binding.py
``host_critical``); tests/test_host_critical.py checks that both name the same devices.
"""

from hosttree import workstation
from scriptrun import Shims, run_script, scan, script_for

NIC, AHCI, GPU, PF = "0000:06:01.0", "0000:00:17.0", "0000:01:00.0", "0000:02:00.0"


def override(tree, address):
    return tree.path(tree.device_dir(address) + "/driver_override").read_text()


def refused_at_run_time(tree, tmp_path, script, address, why):
    proc = run_script(script, tree.root, Shims(tmp_path))
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert why in proc.stderr, proc.stderr
    assert f"Refused at run time: VFIO-013 {address}" in proc.stderr
    assert override(tree, address) == "(null)\n"
    return proc


def test_route_through_a_bridge_that_appeared_after_the_scan(tmp_path):
    tree = workstation(tmp_path / "ws")
    script = script_for(tree.root, devices=["06:01.0"])
    tree.net_interface("enp6s1", device=NIC)
    tree.net_interface("vmbr0", lowers=["enp6s1"])
    tree.default_route("vmbr0")
    refused_at_run_time(tree, tmp_path, script, NIC, f"REFUSED: not binding {NIC}")


def test_an_ipv6_only_default_route(tmp_path):
    tree = workstation(tmp_path / "ws")
    script = script_for(tree.root, devices=["06:01.0"])
    tree.net_interface("enp6s1", device=NIC)
    tree.default_route(None, ipv6="enp6s1")
    refused_at_run_time(tree, tmp_path, script, NIC, "default route")


def _disk_under_ahci(tree):
    ahci = tree.device_dir(AHCI)
    sda = tree.block_device("sda", "8:0", f"{ahci}/ata1/host0/target0:0:0/0:0:0:0/block")
    tree.block_device("sda1", "8:1", sda, partition=1)
    tree.block_device("sda2", "8:2", sda, partition=2)


def test_boot_on_a_disk_behind_the_controller(tmp_path):
    tree = workstation(tmp_path / "ws")
    _disk_under_ahci(tree)
    script = script_for(tree.root, devices=["00:17.0"])
    tree.mountinfo(("259:0", "/", "ext4", "/dev/nvme0n1p2"), ("8:1", "/boot", "ext4", "/dev/sda1"))
    refused_at_run_time(tree, tmp_path, script, AHCI, "/boot")


def test_root_on_lvm_over_the_controller_s_disk(tmp_path):
    tree = workstation(tmp_path / "ws")
    _disk_under_ahci(tree)
    script = script_for(tree.root, devices=["00:17.0"])
    tree.block_device("dm-0", "253:0", "/sys/devices/virtual/block", dm_name="vg-root", slaves=["sda2"])
    tree.mountinfo(("253:0", "/", "ext4", "/dev/mapper/vg-root"))
    refused_at_run_time(tree, tmp_path, script, AHCI, "holds")


def test_swap_on_the_controller_s_disk(tmp_path):
    tree = workstation(tmp_path / "ws")
    _disk_under_ahci(tree)
    script = script_for(tree.root, devices=["00:17.0"])
    tree.swaps(("/dev/sda2", "partition"))
    refused_at_run_time(tree, tmp_path, script, AHCI, "swap")


def test_another_card_at_the_address(tmp_path):
    tree = workstation(tmp_path / "ws")
    script = script_for(tree.root, devices=["01:00.0"])
    tree.write(tree.device_dir(GPU) + "/device", "0x2206\n")  # the RTX 3090 was swapped for a 3080
    refused_at_run_time(tree, tmp_path, script, GPU, f"REFUSED: {GPU} holds 10de:2206 now, not 10de:2204")


def test_the_vf_count_of_a_pf_whose_vf_carries_the_route(tmp_path):
    tree = workstation(tmp_path / "ws")
    vfs = tree.enable_vfs(PF, 2, 30, "1520", driver="igbvf")
    script = script_for(tree.root, vfs=[f"{PF}=4"])
    tree.net_interface("enp2s16", device=vfs[0])
    tree.default_route("enp2s16")
    proc = run_script(script, tree.root, Shims(tmp_path))
    assert proc.returncode == 1
    assert f"REFUSED: not removing the VFs of {PF}: its VF {vfs[0]} carries the host's default route" in proc.stderr
    assert tree.path(tree.device_dir(PF) + "/sriov_numvfs").read_text() == "2\n"
    # and at write time, once the scan sees it: no command offered, the reason named
    finding = next(f for f in scan(tree.root, vfs=[f"{PF}=4"]).findings if f.rule_id == "VFIO-011")
    assert finding.status == "fail" and "the host needs this PF's VFs" in finding.message
    assert not any(s.commands for s in finding.remediation if s.phase == "sriov")
    assert "set_vfs" not in script_for(tree.root, vfs=[f"{PF}=4"]).split("set -euo pipefail")[1].split(
        "# ===== SR-IOV")[-1]


def test_the_pf_of_a_vf_carrying_the_route_is_refused_at_write_time(tmp_path):
    tree = workstation(tmp_path / "ws")
    vfs = tree.enable_vfs(PF, 2, 30, "1520", driver="igbvf")
    tree.net_interface("enp2s16", device=vfs[1])
    tree.default_route("enp2s16")
    script = script_for(tree.root, devices=["02:00.0"])
    block = script.split(f"# BEGIN VFIO-013 {PF}")[1].split("# END")[0]
    assert "REFUSED" in block and f"its VF {vfs[1]}" in block and "bind_vfio" not in block


def test_nothing_changed_nothing_refused(tmp_path):
    tree = workstation(tmp_path / "ws")
    proc = run_script(script_for(tree.root, devices=["06:01.0", "01:00.0"]), tree.root, Shims(tmp_path))
    assert proc.returncode == 0, proc.stderr
    assert "Refused at run time" not in proc.stderr
    assert override(tree, NIC) == "vfio-pci\n" and override(tree, GPU) == "vfio-pci\n"
