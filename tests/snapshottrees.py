"""Fixture trees for the snapshot tests: the shared ones, broken ones, and one with every layer a host has.

Each builder takes a root directory and returns the HostTree; ``TREES`` names them all so the
collector's coverage test and the snapshot equivalence tests walk the same list.
"""

from __future__ import annotations

import gzip
import os

from clihelpers import no_dmar_host, no_iommu_request_host, unreadable_cmdline_host, warn_only_host
from hosttree import DEBIAN_KCONFIG, RELEASE, ready_host, workstation

IGB, NVME = "0000:02:00.0", "0000:03:00.0"


def kitchen_sink(root):
    """A workstation with every layer Facts follows: SR-IOV VFs, a bridge over a bond, an IPv6
    default route, root on LUKS over LVM over an NVMe partition, module parameters, a gzipped
    kernel config only in /proc, pci.ids and a gzipped copy, modules-load.d, /etc/kernel/cmdline."""
    tree = workstation(root)
    tree.enable_vfs(IGB, 2, first_group=20, vf_device="1520", driver="vfio-pci")
    tree.write("/sys/module/vfio_pci/parameters/enable_sriov", "Y\n")
    tree.write("/sys/module/vfio_iommu_type1/parameters/allow_unsafe_interrupts", "N\n")
    tree.write("/sys/module/vfio/parameters/enable_unsafe_noiommu_mode", "N\n")
    tree.write("/sys/module/kvm_intel/parameters/nested", "Y\n")
    # the bridge vmbr0 over bond0 over eno1 and enp2s0 (Proxmox's layout)
    tree.link_to("/sys/class/net/enp2s0/device", tree.device_dir(IGB))
    for name, lowers in (("bond0", ("eno1", "enp2s0")), ("vmbr0", ("bond0",))):
        tree.mkdir(f"/sys/devices/virtual/net/{name}")
        tree.link_to(f"/sys/class/net/{name}", f"/sys/devices/virtual/net/{name}")
        for lower in lowers:
            tree.link_to(f"/sys/devices/virtual/net/{name}/lower_{lower}", f"/sys/class/net/{lower}")
    tree.write("/proc/net/route", "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\n"
                                  "vmbr0\t00000000\t0100A8C0\t0003\t0\t0\t0\t00000000\n")
    zero = "0" * 32
    tree.write("/proc/net/ipv6_route",
               f"{zero} 00 {zero} 00 fe800000000000000000000000000001 00000400 00000001 00000000 00450003   vmbr0\n")
    # / on dm-1 (LUKS) over dm-0 (LVM) over nvme0n1p3
    nvme = tree.device_dir(NVME)
    part = f"{nvme}/nvme/nvme0/nvme0n1/nvme0n1p3"
    tree.write(f"{part}/partition", "3\n")
    tree.link_to("/sys/class/block/nvme0n1p3", part)
    tree.link_to("/sys/class/block/nvme0n1", f"{nvme}/nvme/nvme0/nvme0n1")
    for n, name, below in ((0, "vg-root", part), (1, "luks-4f2a", "/sys/devices/virtual/block/dm-0")):
        dm = f"/sys/devices/virtual/block/dm-{n}"
        tree.write(f"{dm}/dm/name", name + "\n")
        tree.link_to(f"{dm}/slaves/{os.path.basename(below)}", below)
        tree.link_to(f"/sys/class/block/dm-{n}", dm)
        tree.link_to(f"/sys/dev/block/253:{n}", dm)
    tree.write("/proc/self/mountinfo", "27 1 0:33 /root / rw,relatime shared:1 - btrfs /dev/mapper/luks-4f2a rw\n")
    # the kernel config only as /proc/config.gz (binary: stored base64)
    tree.remove(f"/boot/config-{RELEASE}")
    text = "".join(f"CONFIG_{k}={v}\n" for k, v in DEBIAN_KCONFIG.items() if v != "n")
    tree.write("/proc/config.gz", gzip.compress(text.encode()))
    ids = "10de  NVIDIA Corporation\n\t2204  GA102 [GeForce RTX 3090]\n8086  Intel Corporation\n"
    tree.write("/usr/share/hwdata/pci.ids", ids)
    tree.write("/usr/share/misc/pci.ids.gz", gzip.compress(ids.encode()))
    tree.write("/etc/modules-load.d/vfio.conf", "vfio\nvfio-pci # for the GPU\n")
    tree.write("/etc/modules-load.d/README", "not a .conf\n")
    tree.write(os.fsdecode(b"/etc/modules-load.d/caf\xe9.conf"), "kvm\n")  # a name that is not UTF-8
    tree.write("/etc/modules", "loop\n")
    tree.write("/etc/kernel/cmdline", "root=/dev/mapper/luks-4f2a intel_iommu=on\n")
    tree.write("/etc/os-release", 'ID=debian\nVERSION_ID="12"\n')
    tree.write("/usr/sbin/driverctl", "#!/bin/sh\n", mode=0o755)
    tree.symlink("/sbin", "usr/sbin")  # merged /usr
    tree.link_to("/sys/bus/pci/drivers/igb/module", "/sys/module/igb")
    tree.mkdir("/sys/module/igb")
    return tree


def broken_links(root):
    """Links that go nowhere: a loop, a dangling target, one climbing above the root, one into a file."""
    tree = workstation(root)
    gpu = tree.device_dir("0000:01:00.0")
    tree.remove(f"{gpu}/driver")
    tree.symlink(f"{gpu}/driver", "driver")  # a loop
    tree.remove(f"{gpu}/iommu_group")
    tree.symlink(f"{gpu}/iommu_group", "../../../../kernel/iommu_groups/99")  # dangling
    xhci = tree.device_dir("0000:00:14.0")
    tree.remove(f"{xhci}/driver")
    tree.symlink(f"{xhci}/driver", "../../../../../../../../../../sys/bus/pci/drivers/xhci_hcd")  # above the root
    tree.symlink("/dev/kvm", "/proc/cmdline/kvm")  # through a regular file: missing
    tree.symlink("/sys/class/net/eno2", "/sys/class/net/eno2/../eno2")
    return tree


def garbled_files(root):
    """Files the scanner cannot use: binary, not UTF-8, over the cap, a FIFO, a directory."""
    tree = ready_host(root)
    tree.write("/proc/cmdline", b"BOOT_IMAGE=/vmlinuz\0intel_iommu=on\n")
    tree.write("/proc/cpuinfo", b"vendor_id\t: Genuine\xffIntel\n")
    tree.write("/proc/interrupts", "x" * ((1 << 20) + 10))  # read with the 16 MiB cap: fine
    tree.write("/proc/modules", "vfio 1 0 - Live 0x0\n" * 60000)  # over the 1 MiB cap
    tree.remove("/etc/default/grub")
    tree.mkdir("/etc/default/grub")  # a directory where a file belongs
    os.mkfifo(tree.path("/sys/hypervisor_type_fifo"))
    tree.mkdir("/sys/hypervisor")
    os.rename(tree.path("/sys/hypervisor_type_fifo"), tree.path("/sys/hypervisor/type"))
    tree.write("/sys/kernel/iommu_groups/1/name", b"\xfe\xff")
    tree.write("/var/log/dmesg", b"[0.0] DMAR: IOMMU enabled \xff\0 odd\n")
    return tree


def no_release(root):
    """No /proc/sys/kernel/osrelease: the release-dependent paths are never read."""
    tree = ready_host(root)
    tree.remove("/proc/sys/kernel/osrelease")
    tree.remove("/var/log/dmesg")
    return tree


def not_a_tree(root):
    """Almost nothing: a directory with a hostname."""
    os.makedirs(root, exist_ok=True)
    with open(os.path.join(root, "hostname-only"), "w") as handle:
        handle.write("x\n")

    class Bare:
        pass

    bare = Bare()
    bare.root = root
    return bare


TREES = {
    "ready": ready_host,
    "ready-amd": lambda root: ready_host(root, vendor="amd"),
    "workstation": workstation,
    "kitchen-sink": kitchen_sink,
    "broken-links": broken_links,
    "garbled": garbled_files,
    "no-release": no_release,
    "no-dmar": no_dmar_host,
    "no-iommu-request": no_iommu_request_host,
    "warn-only": warn_only_host,
    "no-cmdline": unreadable_cmdline_host,
    "empty": not_a_tree,
}
