"""What the host itself runs on: the default route's NIC and the root filesystem's disk.

VFIO-012/013 (and the script export) refuse to bind these, so they must be found through the
layers real hosts put in between: a Linux bridge or bond (every Proxmox host routes through
vmbr0), VLANs, IPv6-only routes, LVM/LUKS/RAID (``slaves/``), btrfs (an anonymous ``0:NN``
device in mountinfo), NVMe multipath heads and partitions.
"""

from hosttree import workstation
from scanner.facts import Facts
from scanner.host.tree import TreeHost

IGB, ONBOARD_NIC, NVME = "0000:02:00.0", "0000:00:1f.6", "0000:03:00.0"
ROUTE_HEADER = "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\n"


def facts(tree):
    return Facts(TreeHost(str(tree.root)))


def virtual_net(tree, name, lowers=()):
    tree.mkdir(f"/sys/devices/virtual/net/{name}")
    tree.link_to(f"/sys/class/net/{name}", f"/sys/devices/virtual/net/{name}")
    for lower in lowers:
        tree.link_to(f"/sys/devices/virtual/net/{name}/lower_{lower}", f"/sys/class/net/{lower}")


def test_workstation_as_built(tmp_path):
    f = facts(workstation(tmp_path / "ws"))
    assert f.default_route_devices == {ONBOARD_NIC: "eno1"}
    assert f.root_fs_devices == {NVME: "259:0 (/dev/nvme0n1p2)"}


def test_route_through_a_vlan_on_a_bond(tmp_path):
    tree = workstation(tmp_path / "ws")
    tree.link_to("/sys/class/net/enp2s0/device", tree.device_dir(IGB))
    virtual_net(tree, "bond0", lowers=["eno1", "enp2s0"])
    virtual_net(tree, "bond0.100", lowers=["bond0"])
    tree.write("/proc/net/route", ROUTE_HEADER + "bond0.100\t00000000\t0100A8C0\t0003\t0\t0\t0\t00000000\n")
    assert facts(tree).default_route_devices == {ONBOARD_NIC: "eno1 (under bond0.100)",
                                                 IGB: "enp2s0 (under bond0.100)"}


def test_ipv6_only_default_route(tmp_path):
    tree = workstation(tmp_path / "ws")
    tree.write("/proc/net/route", ROUTE_HEADER)
    tree.link_to("/sys/class/net/enp2s0/device", tree.device_dir(IGB))
    zero = "0" * 32
    tree.write("/proc/net/ipv6_route",
               f"{zero} 00 {zero} 00 fe800000000000000000000000000001 00000400 00000001 00000000 00450003   enp2s0\n"
               f"{zero} 00 {zero} 00 {zero} ffffffff 00000001 00000000 00200200       lo\n"
               f"fe800000000000000000000000000000 40 {zero} 00 {zero} 00000100 00000001 00000000 00000001   eno1\n")
    assert facts(tree).default_route_devices == {IGB: "enp2s0"}


def test_no_route_at_all(tmp_path):
    tree = workstation(tmp_path / "ws")
    tree.remove("/proc/net/route")
    assert facts(tree).default_route_devices == {}


def test_root_on_lvm(tmp_path):
    tree = workstation(tmp_path / "ws")
    nvme = tree.device_dir(NVME)
    tree.mkdir(f"{nvme}/nvme/nvme0/nvme0n1/nvme0n1p3")
    tree.mkdir("/sys/devices/virtual/block/dm-0/slaves")
    tree.link_to("/sys/devices/virtual/block/dm-0/slaves/nvme0n1p3", f"{nvme}/nvme/nvme0/nvme0n1/nvme0n1p3")
    tree.link_to("/sys/dev/block/253:0", "/sys/devices/virtual/block/dm-0")
    tree.write("/proc/self/mountinfo", "22 1 253:0 / / rw,relatime shared:1 - ext4 /dev/mapper/vg-root rw\n")
    assert facts(tree).root_fs_devices == {NVME: "253:0 (/dev/mapper/vg-root)"}


def test_btrfs_root_on_luks(tmp_path):
    """btrfs shows 0:NN in mountinfo: the mount source (/dev/mapper/NAME -> dm-N) leads to the disk."""
    tree = workstation(tmp_path / "ws")
    nvme = tree.device_dir(NVME)
    tree.mkdir(f"{nvme}/nvme/nvme0/nvme0n1/nvme0n1p3")
    tree.write("/sys/devices/virtual/block/dm-1/dm/name", "luks-4f2a\n")
    tree.link_to("/sys/devices/virtual/block/dm-1/slaves/nvme0n1p3", f"{nvme}/nvme/nvme0/nvme0n1/nvme0n1p3")
    tree.link_to("/sys/class/block/dm-1", "/sys/devices/virtual/block/dm-1")
    tree.mkdir("/sys/devices/virtual/block/dm-0/dm")
    tree.write("/sys/devices/virtual/block/dm-0/dm/name", "swap\n")
    tree.link_to("/sys/class/block/dm-0", "/sys/devices/virtual/block/dm-0")
    tree.write("/proc/self/mountinfo", "27 1 0:33 /root / rw,relatime shared:1 - btrfs /dev/mapper/luks-4f2a rw\n")
    assert facts(tree).root_fs_devices == {NVME: "0:33 (/dev/mapper/luks-4f2a)"}


def test_partition_of_an_nvme_multipath_head(tmp_path):
    tree = workstation(tmp_path / "ws")
    nvme = tree.device_dir(NVME)
    head = "/sys/devices/virtual/nvme-subsystem/nvme-subsys0/nvme0n1"
    tree.write(f"{head}/nvme0n1p1/partition", "1\n")
    tree.mkdir(f"{nvme}/nvme/nvme0/nvme0c0n1")
    tree.link_to(f"{head}/multipath/nvme0c0n1", f"{nvme}/nvme/nvme0/nvme0c0n1")
    tree.link_to("/sys/dev/block/259:1", f"{head}/nvme0n1p1")
    tree.write("/proc/self/mountinfo", "22 1 259:1 / / rw - xfs /dev/nvme0n1p1 rw\n")
    assert facts(tree).root_fs_devices == {NVME: "259:1 (/dev/nvme0n1p1)"}


def test_driver_module(tmp_path):
    tree = workstation(tmp_path / "ws")
    tree.link_to("/sys/bus/pci/drivers/xhci_hcd/module", "/sys/module/xhci_pci")
    tree.mkdir("/sys/module/xhci_pci")
    f = facts(tree)
    assert f.driver_module("xhci_hcd") == "xhci_pci"
    assert f.driver_module("pcieport") is None  # built in: no module link
    assert f.driver_module("../../etc") is None
