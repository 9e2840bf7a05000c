"""Synthetic host trees of 10 to 10,000 PCI functions, for the benchmarks.

Built with the test fixtures' own builder (``tests/hosttree.py``), so every tree follows the same
layout rules as real sysfs: ``/sys/bus/pci/devices/<addr>`` links into ``/sys/devices/pci*``,
relative ``driver`` / ``iommu_group`` / ``physfn`` / ``virtfnN`` links, groups linking back.

What a big server looks like, and so what a tree of N functions holds:

* a base of ten functions: the host bridge; the chipset's LPC, SMBus, SPI and SATA sharing one
  IOMMU group (no ACS between them); a root port with a GPU and its HDMI audio in one group; a
  root port with the NVMe the root filesystem is on, in groups of their own;
* from 100 functions on, a PCIe-to-PCI bridge with four conventional NICs behind it, all five in
  one group (a conventional bus cannot isolate its devices);
* then SR-IOV NICs, each behind its own root port on one of four root complexes (as on a
  four-die server): two physical functions per card, each with up to 255 virtual functions in
  groups of their own, the VFs spread over the host's VF drivers and vfio-pci.

The tree carries this machine's ``pci.ids`` (as a host with pciutils does). The function count is
exact: the last card's VFs are trimmed to reach it. Each device also has a
64-byte ``config`` file (what an unprivileged reader sees of the config space), so ``lspci``
can read the tree too (``lspci -A linux-sysfs -O sysfs.path=TREE/sys``).

Usage: ``python3 benchmarks/treegen.py DIR --functions N``.
"""

from __future__ import annotations

import argparse
import os
import struct
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import List

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from hosttree import DEBIAN_KCONFIG, HostTree  # noqa: E402  (the fixtures' builder)

GENERATOR_VERSION = "3"  # bump when the layout changes: cached trees are rebuilt
ROOT_COMPLEXES = ("00", "40", "80", "c0")  # four dies, as on an AMD EPYC server
FIRST_CARD_BUS = 0x10  # buses 01-0f of the first root complex hold the base devices
MAX_VFS = 255
CARD_PFS = 2
CARD_FUNCTIONS = 1 + CARD_PFS * (1 + MAX_VFS)  # root port + PFs + their VFs
VF_DRIVERS = ("iavf", "vfio-pci", None, "iavf")  # round robin: host driver, passthrough, unbound
PCI_IDS = ("/usr/share/misc/pci.ids", "/usr/share/hwdata/pci.ids")
TARGET_CLASSES = ("01", "02", "03", "04", "06", "0c")  # every class code the trees contain


@dataclass
class TreeInfo:
    """What was built: for the runner's table and for the smoke test's checks."""

    functions: int
    groups: int
    physical_functions: int = 0
    virtual_functions: int = 0
    group_sizes: List[int] = field(default_factory=list)


def config_space(vendor: str, device: str, pci_class: str, header_type: int = 0) -> bytes:
    """The first 64 bytes of a function's configuration space, as sysfs ``config`` gives them."""
    class_code = int(pci_class, 16)
    head = struct.pack("<HHHHB", int(vendor, 16), int(device, 16), 0x0406, 0x0010, 0x01)
    head += bytes(((class_code) & 0xFF, (class_code >> 8) & 0xFF, (class_code >> 16) & 0xFF))
    head += bytes((0x10, 0x00, header_type, 0x00))
    return head + bytes(64 - len(head))


class BenchTree(HostTree):
    """HostTree that also writes each function's ``config`` and counts what it built."""

    def __init__(self, root):
        super().__init__(root)
        self.count = 0
        self.virtual_functions = 0
        self.members: dict = {}

    def pci_device(self, addr, vendor, device, pci_class, driver=None, group=None, parent=None, root_bus="00",
                   **attrs):
        devdir = super().pci_device(addr, vendor, device, pci_class, driver=driver, group=group, parent=parent,
                                    root_bus=root_bus, **attrs)
        self.write(f"{devdir}/config", config_space(vendor, device, pci_class,
                                                    1 if pci_class.startswith("0604") else 0))
        self._counted(addr, group)
        return devdir

    def enable_vfs(self, pf, count, first_group, vf_device, driver=None):
        made = []
        for n, vf in enumerate(super().enable_vfs(pf, count, first_group, vf_device)):
            vf_driver = VF_DRIVERS[n % len(VF_DRIVERS)] if driver is None else driver
            if vf_driver:
                self.bind(vf, vf_driver)
            vendor = self.path(f"{self.device_dir(pf)}/vendor").read_text().strip()[2:]
            self.write(f"{self.device_dir(vf)}/config", config_space(vendor, vf_device, "020000"))
            self._counted(vf, str(first_group + n))
            self.virtual_functions += 1
            made.append(vf)
        return made

    def _counted(self, addr, group):
        self.count += 1
        if group is not None:
            self.members.setdefault(group, []).append(addr)


def _base(tree: BenchTree) -> None:
    """Ten functions: host bridge, chipset group of four, GPU group of three, NVMe (see module doc)."""
    tree.pci_device("0000:00:00.0", "1022", "1480", "060000", group="0")
    for func, (device, cls, driver) in enumerate((("790e", "060100", None), ("790b", "0c0500", "piix4_smbus"),
                                                  ("790f", "0c8000", None), ("7901", "010601", "ahci"))):
        tree.pci_device(f"0000:00:14.{func}", "1022", device, cls, driver=driver, group="1")
    tree.pci_device("0000:00:01.1", "1022", "1483", "060400", driver="pcieport", group="2")
    tree.pci_device("0000:01:00.0", "10de", "2204", "030000", driver="nvidia", group="2", parent="0000:00:01.1",
                    boot_vga="0", reset_method="bus", subsystem_vendor="0x1458", subsystem_device="0x403b")
    tree.pci_device("0000:01:00.1", "10de", "1aef", "040300", driver="snd_hda_intel", group="2",
                    parent="0000:00:01.1", reset_method="bus")
    tree.pci_device("0000:00:01.2", "1022", "1483", "060400", driver="pcieport", group="3")
    nvme = tree.pci_device("0000:02:00.0", "144d", "a808", "010802", driver="nvme", group="4",
                           parent="0000:00:01.2", reset_method="flr bus")
    tree.mkdir(f"{nvme}/nvme/nvme0/nvme0n1")
    tree.link_to("/sys/dev/block/259:0", f"{nvme}/nvme/nvme0/nvme0n1")
    tree.write("/proc/self/mountinfo", "22 1 259:0 / / rw,relatime shared:1 - ext4 /dev/nvme0n1p2 rw\n")


def _legacy_bridge(tree: BenchTree) -> None:
    """Six functions: a root port, a PCIe-to-PCI bridge and four e1000 behind it (one group of five)."""
    tree.pci_device("0000:00:03.1", "1022", "1483", "060400", driver="pcieport", group="5")
    tree.pci_device("0000:03:00.0", "1b36", "000e", "060400", group="6", parent="0000:00:03.1")
    for slot in range(1, 5):
        tree.pci_device(f"0000:04:{slot:02x}.0", "8086", "100e", "020000", driver="e1000", group="6",
                        parent="0000:03:00.0", reset_method="bus")


def _sriov_card(tree: BenchTree, card: int, vfs: List[int], next_group: int) -> int:
    """A dual-port SR-IOV NIC (Intel E810) behind its own root port; returns the next free group."""
    root_bus = ROOT_COMPLEXES[card % len(ROOT_COMPLEXES)]
    slot = card // len(ROOT_COMPLEXES)
    # the card's PFs, then a bus for each PF's VFs; the first complex's low buses are the base's
    bus = int(root_bus, 16) + FIRST_CARD_BUS + 3 * slot
    port = f"0000:{root_bus}:{0x07 + slot // 8:02x}.{slot % 8}"
    tree.pci_device(port, "1022", "1483", "060400", driver="pcieport", group=str(next_group), root_bus=root_bus)
    next_group += 1
    for pf_index, count in enumerate(vfs):
        pf = f"0000:{bus:02x}:00.{pf_index}"
        tree.pci_device(pf, "8086", "1593", "020000", driver="ice", group=str(next_group), parent=port,
                        reset_method="flr bus", sriov_totalvfs=str(MAX_VFS), sriov_numvfs="0",
                        sriov_drivers_autoprobe="1", sriov_offset=str(256 * (pf_index + 1) - pf_index),
                        sriov_stride="1", sriov_vf_device="1889")
        next_group += 1
        if count:
            tree.enable_vfs(pf, count, next_group, "1889")
            next_group += count
    return next_group


def kernel_log(tree: BenchTree) -> str:
    """A boot log with the IOMMU on and one 'Adding to iommu group' line per grouped function."""
    lines = ["[    0.000000] Linux version 6.1.0-56-amd64 (debian-kernel@lists.debian.org)",
             "[    0.000000] Command line: BOOT_IMAGE=/boot/vmlinuz-6.1.0-56-amd64 root=/dev/nvme0n1p2 ro quiet "
             "iommu=pt",
             "[    0.912345] pci 0000:00:00.2: AMD-Vi: IOMMU performance counters supported",
             "[    0.915000] pci 0000:00:00.2: AMD-Vi: Found IOMMU cap 0x40",
             "[    0.915100] AMD-Vi: Interrupt remapping enabled"]
    stamp = 1.0
    for group, members in sorted(tree.members.items(), key=lambda item: int(item[0])):
        for addr in members:
            stamp += 0.000013
            lines.append(f"[{stamp:12.6f}] pci {addr}: Adding to iommu group {group}")
    return "\n".join(lines) + "\n"


def build(root, functions: int, pci_ids: bool = True) -> TreeInfo:
    """Build a tree of exactly ``functions`` PCI functions under ``root`` (an empty directory).

    ``pci_ids``: copy this machine's ``pci.ids`` into the tree (where installed), as every host
    with pciutils has one: vfio-scan and ``lspci`` then both name the devices from it.
    """
    if functions < 10:
        raise ValueError("a tree has at least the ten base functions")
    tree = BenchTree(root)
    _host(tree)
    if pci_ids:
        for source in PCI_IDS:
            if os.path.isfile(source):
                tree.write(source, Path(source).read_bytes())
                break
    _base(tree)
    next_group = 5
    if functions >= 100:
        _legacy_bridge(tree)
        next_group = 7
    card = 0
    while tree.count < functions:
        left = functions - tree.count - 1 - CARD_PFS  # after this card's root port and PFs
        if left < 0:  # too few for a whole card: plain NVMe drives fill the rest
            _nvme(tree, tree.count, next_group)
            next_group += 1
            continue
        vfs = [min(MAX_VFS, left - min(MAX_VFS, left // 2)), min(MAX_VFS, left // 2)]
        next_group = _sriov_card(tree, card, vfs, next_group)
        card += 1
    tree.kernel_log(kernel_log(tree))
    sizes = sorted((len(m) for m in tree.members.values()), reverse=True)
    return TreeInfo(functions=tree.count, groups=len(tree.members), group_sizes=sizes,
                    physical_functions=CARD_PFS * card, virtual_functions=tree.virtual_functions)


def build_shared_group(root, members: int) -> TreeInfo:
    """The ten base functions and ``members`` VFs of one ConnectX PF in one IOMMU group (a switch without
    ACS puts them together), all on vfio-pci: a group every function of which is a target."""
    tree = BenchTree(root)
    _host(tree)
    _base(tree)
    tree.pci_device("0000:00:03.1", "1022", "1483", "060400", driver="pcieport", group="5")
    for n in range(members):
        bus, fn = divmod(n, 8)
        tree.pci_device(f"0000:{0x10 + bus // 32:02x}:{bus % 32:02x}.{fn}", "15b3", "101e", "020000",
                        driver="vfio-pci", group="6", parent="0000:00:03.1", reset_method="flr")
    tree.write("/dev/vfio/6", "")
    tree.kernel_log(kernel_log(tree))
    return TreeInfo(functions=tree.count, groups=len(tree.members), group_sizes=sorted(
        (len(m) for m in tree.members.values()), reverse=True), physical_functions=0, virtual_functions=members)


def _host(tree: BenchTree) -> None:
    """The host half, ready for passthrough (an AMD server booted with amd_iommu=on iommu=pt)."""
    tree.release()
    tree.cpu("amd")
    tree.cmdline("BOOT_IMAGE=/boot/vmlinuz-6.1.0-56-amd64 root=/dev/nvme0n1p2 ro quiet iommu=pt")
    tree.kconfig(DEBIAN_KCONFIG)
    tree.modules(loaded=["vfio", "vfio_iommu_type1", "vfio_pci", "vfio_pci_core", "kvm_amd", "kvm"],
                 installed=["vfio", "vfio_iommu_type1", "vfio_pci", "vfio_pci_core"])
    tree.acpi_tables("IVRS")
    tree.iommu_unit("ivhd0")
    tree.interrupts(remapped=True)
    tree.dev_kvm()
    tree.write("/dev/vfio/vfio", "")
    tree.grub(default="quiet iommu=pt")


def _nvme(tree: BenchTree, n: int, group: int) -> None:
    """A spare NVMe drive on the first root complex (fills a tree too small for another card)."""
    tree.pci_device(f"0000:00:{0x10 + n // 8:02x}.{n % 8}", "144d", "a808", "010802", driver="nvme",
                    group=str(group), reset_method="flr bus")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("directory", help="where to build the tree (created; must not exist)")
    parser.add_argument("--functions", type=int, default=100, help="PCI functions in the tree (>= 10)")
    args = parser.parse_args(argv)
    if os.path.exists(args.directory):
        parser.error(f"{args.directory}: already exists")
    info = build(args.directory, args.functions)
    print(f"{args.directory}: {info.functions} functions, {info.groups} IOMMU groups "
          f"(largest {info.group_sizes[0]}), {info.virtual_functions} VFs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
