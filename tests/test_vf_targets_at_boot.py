"""VFIO-017 for VFs: what binds a VF at boot binds nothing unless something makes the VF again.

``sriov_numvfs`` written at run time is lost at reboot. A VF target kept on vfio-pci by driverctl
passed (READY), though after the reboot the VF did not exist; and VFs a PF gets at boot from
sysfsutils (``/etc/sysfs.d``, as Proxmox's documentation sets them up) were called lost, since only
udev rules were read.
"""

import pytest

from hosttree import workstation
from test_rules_next_boot import PF, scan

VF = "0000:02:10.0"


def vfs_on_vfio(tmp_path):
    tree = workstation(tmp_path / "h")
    for vf in tree.enable_vfs(PF, 2, 20, "1520", driver="vfio-pci"):
        tree.write(f"/etc/driverctl.d/pci-{vf}", "vfio-pci\n")  # driverctl set-override VF vfio-pci
    return tree


def test_a_vf_target_whose_vfs_nothing_makes_at_boot_fails(tmp_path):
    f = scan(vfs_on_vfio(tmp_path), "VFIO-017", devices=[VF])[VF]
    assert f.status == "fail"
    assert f.message.startswith(f"works now, lost at next boot: {VF} is a VF of {PF}, whose 2 VF(s) were made at run "
                                "time")
    (step,) = f.remediation
    assert any("sriov_numvfs" in c for c in step.commands)


@pytest.mark.parametrize("how", ["udev", "sysfsutils", "sysfsutils by device path"])
def test_a_vf_target_whose_vfs_are_made_at_boot_passes(tmp_path, how):
    tree = vfs_on_vfio(tmp_path)
    if how == "udev":
        tree.write("/etc/udev/rules.d/70-sriov.rules",
                   f'ACTION=="add", SUBSYSTEM=="pci", KERNEL=="{PF}", ATTR{{sriov_numvfs}}="2"\n')
    elif how == "sysfsutils":
        tree.write("/etc/sysfs.d/sriov.conf", f"# the I350's VFs\nbus/pci/devices/{PF}/sriov_numvfs = 2\n")
    else:
        device_path = str(tree.path(f"/sys/bus/pci/devices/{PF}").resolve().relative_to(tree.path("/sys")))
        tree.write("/etc/sysfs.conf", f"{device_path}/sriov_numvfs = 2\n")
    f = scan(tree, "VFIO-017", devices=[VF])[VF]
    assert f.status == "pass", f.message
    assert f.message.startswith("on vfio-pci now and at boot: driverctl override")


def test_vfs_asked_with_vfs_pass_when_sysfsutils_makes_them_at_boot(tmp_path):
    tree = workstation(tmp_path / "h")
    tree.enable_vfs(PF, 2, 20, "1520")
    tree.write("/etc/sysfs.d/sriov.conf", f"bus/pci/devices/{PF}/sriov_numvfs = 2\n")
    f = scan(tree, "VFIO-017", vfs=[f"{PF}=2"])[PF]
    assert f.status == "pass"
    assert f.message == "2 VFs now and at boot: sysfsutils /etc/sysfs.d/sriov.conf (bus/pci/devices/0000:02:00.0/sriov_numvfs = 2)"


def test_a_sysfsutils_line_for_another_device_or_of_zero_vfs_keeps_nothing(tmp_path):
    tree = vfs_on_vfio(tmp_path)
    tree.write("/etc/sysfs.d/sriov.conf", "bus/pci/devices/0000:03:00.0/sriov_numvfs = 2\n"
                                          f"bus/pci/devices/{PF}/sriov_numvfs = 0\n")
    assert scan(tree, "VFIO-017", devices=[VF])[VF].status == "fail"
