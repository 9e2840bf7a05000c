"""The host's own devices: the scan (``host_critical``) and the script's run-time guard agree, tree by tree.

Every tree is a workstation (tests/hosttree.py) given one layout a real host has: a route on a
plain NIC, a bridge, a bond, a VLAN on a bond, IPv6 only, a VF; ``/`` on LVM, on MD RAID1, on
btrfs, on an NVMe multipath head; ``/boot``, ``/var``, a VM image store, swap partitions and swap
files on other disks. For
each, the set of PCI functions the scan refuses to take away must be exactly the set the bash
guard (scanner/remediation/script_guard.py) refuses at run time, and exactly the set written here by hand.
Then the depth limits, which both sides share, and hostile trees: links that try to leave the
tree, names that try to run code, loops.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from typing import Dict

import pytest

from hosttree import workstation
from scanner.remediation.script_guard import HOST_GUARD
from scanner.remediation.script_paths import INROOT
from scanner import collector
from scanner.remediation.binding import critical_evidence, host_critical
from scanner.facts import Facts
from scanner.host.snapshot import SnapshotHost, parse_snapshot
from scanner.host.tree import TreeHost
from systools import require_tool

ONBOARD_NIC, IGB, NVME, AHCI, NVME2 = "0000:00:1f.6", "0000:02:00.0", "0000:03:00.0", "0000:00:17.0", "0000:04:00.0"
VF0, VF1 = "0000:02:10.0", "0000:02:10.4"  # the I350's first VFs (offset 128, stride 4)
VIRTUAL = "/sys/devices/virtual/block"

GUARD_RUNNER = """
set -euo pipefail
say() { printf '%s\\n' "$*"; }
""" + INROOT + HOST_GUARD + """
for address in "$@"; do
    if why=$(critical_reason "$address"); then printf '%s\\t%s\\n' "$address" "$why"; fi
done
"""


# -- the trees -----------------------------------------------------------------------------------
def bare(root):
    """The workstation with nothing the host runs on: no default route, ``/`` on an overlay, no swap;
    a second NVMe (behind its own root port) and NICs laid out as the kernel does."""
    tree = workstation(root)
    tree.pci_device("0000:00:1b.0", "8086", "a340", "060400", driver="pcieport", group="12")
    tree.pci_device(NVME2, "144d", "a808", "010802", driver="nvme", group="13", parent="0000:00:1b.0")
    shutil.rmtree(tree.path("/sys/class/net/eno1"))
    tree.net_interface("eno1", ONBOARD_NIC)
    tree.net_interface("enp2s0", IGB)
    tree.default_route(None)
    tree.remove("/sys/dev/block/259:0")
    tree.mountinfo(("0:24", "/", "overlay", "overlay"))
    tree.swaps()
    return tree


def nvme_disk(tree, pci=NVME, controller="nvme0", first_minor=0, partitions=3):
    """``nvme0n1`` with partitions ``nvme0n1p1``... under the NVMe controller at ``pci``."""
    disk = tree.block_device(f"{controller}n1", f"259:{first_minor}", f"{tree.device_dir(pci)}/nvme/{controller}")
    for n in range(1, partitions + 1):
        tree.block_device(f"{controller}n1p{n}", f"259:{first_minor + n}", disk, partition=n)
    return disk


def sata_disk(tree, name="sda", first_minor=0, partitions=3):
    """``sda`` and its partitions behind the AHCI controller, as the SCSI layer nests them."""
    host = f"{tree.device_dir(AHCI)}/ata1/host0/target0:0:0/0:0:0:0/block"
    disk = tree.block_device(name, f"8:{first_minor}", host)
    for n in range(1, partitions + 1):
        tree.block_device(f"{name}{n}", f"8:{first_minor + n}", disk, partition=n)
    return disk


def route_on_plain_nic(tree):
    tree.default_route("eno1")
    return {ONBOARD_NIC}


def route_on_bridge(tree):
    tree.net_interface("vmbr0", lowers=["enp2s0"])
    tree.default_route("vmbr0")
    return {IGB}


def route_on_bond(tree):
    tree.net_interface("bond0", lowers=["eno1", "enp2s0"])
    tree.default_route("bond0")
    return {ONBOARD_NIC, IGB}


def route_on_vlan_on_bond(tree):
    tree.net_interface("bond0", lowers=["eno1", "enp2s0"])
    tree.net_interface("bond0.100", lowers=["bond0"])
    tree.default_route("bond0.100")
    return {ONBOARD_NIC, IGB}


def ipv6_only_route(tree):
    """``::/0`` on enp2s0; a reject route on eno1 (flags 0x200) and the one on lo do not count."""
    zero = "0" * 32
    tree.default_route(None, ipv6="enp2s0")
    with open(tree.path("/proc/net/ipv6_route"), "a") as table:
        table.write(f"{zero} 00 {zero} 00 {zero} ffffffff 00000001 00000000 00200200       lo\n"
                    f"{zero} 00 {zero} 00 {zero} 00000400 00000001 00000000 00000201     eno1\n")
    return {IGB}


def route_on_a_vf(tree):
    """The host's own network on VF 1 of the I350: the VF, and its PF, whose VFs go with it."""
    tree.enable_vfs(IGB, 2, first_group=20, vf_device="1520", driver="igbvf")
    tree.net_interface("enp2s0f0v1", VF1)
    tree.default_route("enp2s0f0v1")
    return {VF1, IGB}


def root_on_lvm(tree):
    nvme_disk(tree)
    tree.block_device("dm-0", "253:0", VIRTUAL, dm_name="vg-root", slaves=["nvme0n1p3"])
    tree.mountinfo(("253:0", "/", "ext4", "/dev/mapper/vg-root"))
    return {NVME}


def root_on_md_raid1(tree):
    nvme_disk(tree)
    nvme_disk(tree, NVME2, "nvme1", first_minor=4)
    tree.block_device("md0", "9:0", VIRTUAL, slaves=["nvme0n1p2", "nvme1n1p2"])
    tree.mountinfo(("9:0", "/", "ext4", "/dev/md0"))
    return {NVME, NVME2}


def btrfs_root(tree):
    """btrfs shows an anonymous 0:NN device: the mount source names the partition."""
    nvme_disk(tree)
    tree.mountinfo(("0:33", "/", "btrfs", "/dev/nvme0n1p2"))
    return {NVME}


def root_on_nvme_multipath_head(tree):
    """Kernels 6.1 to 6.12 (seen under QEMU): the head's ``device`` is its subsystem, which links its
    controllers; no ``multipath/`` directory, empty ``slaves/``."""
    subsystem = "/sys/devices/virtual/nvme-subsystem/nvme-subsys0"
    tree.link_to(f"{subsystem}/nvme0", f"{tree.device_dir(NVME)}/nvme/nvme0")
    head = tree.block_device("nvme0n1", "259:1", subsystem)
    tree.link_to(f"{head}/device", subsystem)
    tree.mkdir(f"{head}/slaves")
    tree.block_device("nvme0n1p2", "259:3", head, partition=2)
    tree.mountinfo(("259:3", "/", "xfs", "/dev/nvme0n1p2"))
    return {NVME}


def boot_on_sata(tree):
    nvme_disk(tree)
    sata_disk(tree)
    tree.mountinfo(("259:2", "/", "ext4", "/dev/nvme0n1p2"), ("8:1", "/boot", "ext4", "/dev/sda1"),
                   ("0:40", "/srv", "nfs4", "nas:/srv"))
    return {NVME, AHCI}


def efi_and_usr_elsewhere(tree):
    """``/`` on an overlay, yet ``/usr`` and ``/boot/efi`` on disks: both still critical."""
    nvme_disk(tree)
    sata_disk(tree)
    tree.mountinfo(("0:24", "/", "overlay", "overlay"), ("259:2", "/usr", "ext4", "/dev/nvme0n1p2"),
                   ("8:1", "/boot/efi", "vfat", "/dev/sda1"), ("8:2", "/home", "ext4", "/dev/sda2"))
    return {NVME, AHCI}


def swap_partition_on_another_disk(tree):
    nvme_disk(tree)
    sata_disk(tree)
    tree.mountinfo(("259:2", "/", "ext4", "/dev/nvme0n1p2"))
    tree.swaps(("/dev/sda3", "partition"))
    return {NVME, AHCI}


def swap_file_on_var(tree):
    """A swap file on /var (the second NVMe); /var/lib/docker and /va, on the SATA disk, do not hold
    it (yet the SATA disk is the host's too: those filesystems are mounted)."""
    nvme_disk(tree)
    nvme_disk(tree, NVME2, "nvme1", first_minor=4)
    sata_disk(tree)
    tree.mountinfo(("259:2", "/", "ext4", "/dev/nvme0n1p2"), ("259:5", "/var", "xfs", "/dev/nvme1n1p1"),
                   ("8:1", "/var/lib/docker", "ext4", "/dev/sda1"), ("8:2", "/va", "ext4", "/dev/sda2"))
    tree.swaps(("/var/swapfile", "file"))
    return {NVME, NVME2, AHCI}


def var_and_vm_images_on_their_own_disks(tree):
    """Nothing at /, /usr or /boot on them, yet unbinding either takes mounted filesystems from the
    running host: /var on the second NVMe, the VM image store on the SATA disk."""
    nvme_disk(tree, NVME2, "nvme1", first_minor=4)
    sata_disk(tree)
    tree.mountinfo(("0:24", "/", "overlay", "overlay"), ("259:5", "/var", "xfs", "/dev/nvme1n1p1"),
                   ("8:1", "/var/lib/libvirt/images", "ext4", "/dev/sda1"), ("0:25", "/run", "tmpfs", "tmpfs"),
                   ("0:40", "/srv", "nfs4", "nas:/srv"))
    return {NVME2, AHCI}


def bind_mounts_of_one_filesystem(tree):
    """A filesystem mounted at many points (bind mounts, as container hosts make by the hundred) is one use."""
    sata_disk(tree)
    tree.mountinfo(("0:24", "/", "overlay", "overlay"),
                   *[("8:1", f"/var/lib/kubelet/pods/p{n}/volumes", "ext4", "/dev/sda1") for n in range(50)])
    return {AHCI}


def swap_file_in_a_spaced_path(tree):
    """mountinfo and /proc/swaps both write a space as ``\\040`` (seen under QEMU)."""
    sata_disk(tree)
    tree.mountinfo(("0:24", "/", "overlay", "overlay"), ("8:1", "/mnt/my\\040disk", "ext4", "/dev/sda1"))
    tree.swaps(("/mnt/my\\040disk/swap\\040file", "file"))
    return {AHCI}


def swap_on_luks_by_mapper_name(tree):
    """A swap partition named by its /dev/mapper name (``dm/name``), over the second NVMe."""
    nvme_disk(tree, NVME2, "nvme1", first_minor=4)
    tree.block_device("dm-1", "253:1", VIRTUAL, dm_name="cryptswap", slaves=["nvme1n1p3"])
    tree.block_device("dm-2", "253:2", VIRTUAL, dm_name="other")
    tree.swaps(("/dev/mapper/cryptswap", "partition"))
    return {NVME2}


def nothing_critical(tree):
    return set()


CASES = [route_on_plain_nic, route_on_bridge, route_on_bond, route_on_vlan_on_bond, ipv6_only_route, route_on_a_vf,
         root_on_lvm, root_on_md_raid1, btrfs_root, root_on_nvme_multipath_head, boot_on_sata, efi_and_usr_elsewhere,
         swap_partition_on_another_disk, swap_file_on_var, swap_file_in_a_spaced_path, swap_on_luks_by_mapper_name,
         var_and_vm_images_on_their_own_disks, bind_mounts_of_one_filesystem, nothing_critical]


# -- both sides ----------------------------------------------------------------------------------
def addresses_of(tree):
    return sorted(os.listdir(tree.path("/sys/bus/pci/devices")))


def python_critical(host, addresses) -> Dict[str, str]:
    facts = Facts(host)
    return {a: why for a, why in ((a, host_critical(facts, a)) for a in addresses) if why}


def bash_critical(tree, addresses, tmp_path, timeout=60) -> Dict[str, str]:
    """``critical_reason`` for each address, each call in a subshell of its own, as the script's blocks are."""
    state = tmp_path / "state"
    shutil.rmtree(state, ignore_errors=True)
    state.mkdir()
    env = dict(os.environ, ROOT=str(tree.root), STATE=str(state))
    done = subprocess.run(["bash", "-c", GUARD_RUNNER, "guard", *addresses], env=env, cwd=state, timeout=timeout,
                          capture_output=True, text=True, errors="replace")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    found = dict(line.split("\t", 1) for line in lines)
    assert len(found) == len(lines)  # one line per address, never more
    return found


def agree(tree, tmp_path, also=()) -> set:
    """The critical set both sides find (asserting they are the same); also from the tree's snapshot.
    ``also``: addresses to ask about that the tree does not list."""
    addresses = addresses_of(tree) + list(also)
    python = python_critical(TreeHost(str(tree.root)), addresses)
    bash = bash_critical(tree, addresses, tmp_path)
    assert set(bash) == set(python), f"bash says {bash}, python says {python}"
    snapshot = parse_snapshot(collector.dumps(collector.collect(str(tree.root))), "snapshot")
    assert python_critical(SnapshotHost(snapshot), addresses) == python
    return set(python)


@pytest.mark.parametrize("case", CASES, ids=[c.__name__ for c in CASES])
def test_scan_and_guard_name_the_same_functions(case, tmp_path):
    tree = bare(tmp_path / "tree")
    expected = case(tree)
    assert agree(tree, tmp_path) == expected


# -- the reasons ---------------------------------------------------------------------------------
def test_a_vf_carrying_the_route_names_itself_in_its_pfs_reason(tmp_path):
    tree = bare(tmp_path / "tree")
    route_on_a_vf(tree)
    facts = Facts(TreeHost(str(tree.root)))
    assert host_critical(facts, VF1).startswith("it carries the host's default route (enp2s0f0v1)")
    why = host_critical(facts, IGB)
    assert why.startswith(f"its VF {VF1} carries the host's default route (enp2s0f0v1)") and "sriov_numvfs" in why
    assert host_critical(facts, VF0) is None
    sources = [e.source for e in critical_evidence(facts, IGB)]
    assert sources == [f"/sys/bus/pci/devices/{VF1}/physfn", "/proc/net/route, /proc/net/ipv6_route"]
    bash = bash_critical(tree, [IGB, VF1], tmp_path)
    assert bash[IGB] == f"its VF {VF1} carries the host's default route (enp2s0f0v1)"


def test_disk_reasons_say_what_the_host_keeps_there(tmp_path):
    tree = bare(tmp_path / "tree")
    nvme_disk(tree)
    sata_disk(tree)
    tree.mountinfo(("259:2", "/", "ext4", "/dev/nvme0n1p2"), ("259:1", "/boot", "ext4", "/dev/nvme0n1p1"))
    tree.swaps(("/dev/sda3", "partition"))
    facts = Facts(TreeHost(str(tree.root)))
    assert facts.host_disk_devices == {NVME: "/ on 259:2 (/dev/nvme0n1p2), /boot on 259:1 (/dev/nvme0n1p1)",
                                       AHCI: "swap on /dev/sda3"}
    assert facts.root_fs_devices == {NVME: "259:2 (/dev/nvme0n1p2)"}
    assert host_critical(facts, NVME).startswith("it holds the host's root filesystem (/ on 259:2")
    assert host_critical(facts, AHCI).startswith("it holds storage the running host uses (swap on /dev/sda3)")
    assert [e.source for e in critical_evidence(facts, AHCI)] == ["/proc/self/mountinfo, /proc/swaps"]
    bash = bash_critical(tree, [NVME, AHCI], tmp_path)
    assert bash == {NVME: "it holds the host's / filesystem (on 259:2 /dev/nvme0n1p2); "
                          "it holds the host's /boot filesystem (on 259:1 /dev/nvme0n1p1)",
                    AHCI: "it holds the host's swap (/dev/sda3)"}


def test_a_disk_of_a_mounted_var_is_named_with_its_mount_once_however_often_it_is_bound(tmp_path):
    tree = bare(tmp_path / "tree")
    sata_disk(tree)
    tree.mountinfo(("0:24", "/", "overlay", "overlay"), ("8:1", "/var", "ext4", "/dev/sda1"),
                   *[("8:1", f"/var/lib/kubelet/pods/p{n}", "ext4", "/dev/sda1") for n in range(20)])
    facts = Facts(TreeHost(str(tree.root)))
    assert host_critical(facts, AHCI) == ("it holds storage the running host uses (/var on 8:1 (/dev/sda1)): "
                                          "binding it to vfio-pci takes the disk away from the running host")
    assert bash_critical(tree, [AHCI], tmp_path) == {AHCI: "it holds the host's /var filesystem (on 8:1 /dev/sda1)"}


def test_guard_computes_once_per_run(tmp_path):
    """The first call writes the set to $STATE; later calls, in other subshells, only read it."""
    tree = bare(tmp_path / "tree")
    route_on_plain_nic(tree)
    assert bash_critical(tree, [ONBOARD_NIC, IGB], tmp_path) == {
        ONBOARD_NIC: "it carries the host's default route (eno1)"}
    state = tmp_path / "state"
    assert (state / "host-critical.done").exists()
    (state / "host-critical").write_text(f"{IGB} pretend\n")  # a later call trusts what the run found
    script = "set -euo pipefail\nsay() { printf '%s\\n' \"$*\"; }\n" + INROOT + HOST_GUARD + \
        f"critical_reason {IGB}; if critical_reason {ONBOARD_NIC}; then exit 3; fi; critical_reason not-an-address || echo no"
    done = subprocess.run(["bash", "-c", script], env=dict(os.environ, ROOT=str(tree.root), STATE=str(state)),
                          capture_output=True, text=True)
    assert (done.returncode, done.stdout) == (0, "pretend\nno\n"), done.stderr


def test_a_guard_that_cannot_keep_its_answer_refuses(tmp_path):
    tree = bare(tmp_path / "tree")
    script = "set -euo pipefail\nsay() { printf '%s\\n' \"$*\"; }\n" + INROOT + HOST_GUARD + \
        f"critical_reason {IGB}"
    done = subprocess.run(["bash", "-c", script], capture_output=True, text=True,
                          env=dict(os.environ, ROOT=str(tree.root), STATE=str(tmp_path / "no-such-dir")))
    assert done.returncode == 0 and done.stdout.startswith(f"cannot tell whether the host needs {IGB}")


# -- hostile trees -------------------------------------------------------------------------------
def test_absolute_and_climbing_links_stay_in_the_tree(tmp_path):
    """``device -> /sys/devices/...`` is the tree's, and ``..`` stops at its top: a PCI function
    that exists only outside the tree (0000:00:1e.0, beside the tree's own directory) is never found."""
    tree = bare(tmp_path / "tree")
    outside = tmp_path / "sys" / "devices" / "pci0000:00" / "0000:00:1e.0"
    outside.mkdir(parents=True)
    tree.mkdir("/sys/devices/virtual/net/eth0")
    tree.symlink("/sys/devices/virtual/net/eth0/device", f"/sys/devices/pci0000:00/{ONBOARD_NIC}")
    tree.link_to("/sys/class/net/eth0", "/sys/devices/virtual/net/eth0")
    tree.mkdir("/sys/devices/virtual/net/eth1")
    tree.symlink("/sys/devices/virtual/net/eth1/device", "../../../../../../sys/devices/pci0000:00/0000:00:1e.0")
    tree.link_to("/sys/class/net/eth1", "/sys/devices/virtual/net/eth1")
    tree.symlink("/sys/dev/block/8:0", str(outside))
    tree.write("/proc/net/route", "Iface\tDestination\n" + "eth0\t00000000\neth1\t00000000\n")
    tree.mountinfo(("8:0", "/", "ext4", "/dev/sda"))
    assert agree(tree, tmp_path, also=["0000:00:1e.0"]) == {ONBOARD_NIC}


def test_names_that_look_like_code_are_only_names(tmp_path):
    """Interface names from the route table and from lower_* links are never run, and a newline
    in one neither splits the answer nor hides the NIC."""
    tree = bare(tmp_path / "tree")
    tree.net_interface("$(>pwned)", IGB)
    tree.net_interface("`>pwned2`", ONBOARD_NIC)
    tree.net_interface("a\nb", NVME2)  # not a NIC, but what the link says
    tree.net_interface("$(touch pwned5)", lowers=["a\nb"])
    tree.net_interface("br0", lowers=["`>pwned2`", "$(touch pwned5)"])
    tree.write("/proc/net/route", "Iface\tDestination\n$(>pwned)\t00000000\nbr0\t00000000\n../../..\t00000000\n"
                                  "$((1/0))\t00000000\n")
    tree.swaps(("$(>pwned3)", "partition"), ("/dev/$(>pwned4)", "file"))
    assert agree(tree, tmp_path) == {IGB, ONBOARD_NIC, NVME2}
    assert "\n" not in python_critical(TreeHost(str(tree.root)), [NVME2])[NVME2]
    for where in (tmp_path / "state", tree.root, tmp_path):
        assert not [path for path in where.iterdir() if "pwned" in path.name]


def test_loops_and_fans_end(tmp_path):
    """Links back to themselves, lower_* cycles and a mesh of bonds (every one a lower of every
    other: millions of paths 6 deep) are each walked once."""
    tree = bare(tmp_path / "tree")
    tree.mkdir("/sys/devices/virtual/net/loop0")
    tree.symlink("/sys/devices/virtual/net/loop0/device", "device")
    tree.link_to("/sys/class/net/loop0", "/sys/devices/virtual/net/loop0")
    mesh = [f"bond{n}" for n in range(12)]
    for name in mesh:
        tree.mkdir(f"/sys/devices/virtual/net/{name}")
        tree.link_to(f"/sys/class/net/{name}", f"/sys/devices/virtual/net/{name}")
    for name in mesh:
        for lower in mesh + ["loop0"]:
            tree.link_to(f"/sys/devices/virtual/net/{name}/lower_{lower}", f"/sys/devices/virtual/net/{lower}")
    tree.link_to("/sys/devices/virtual/net/bond11/lower_eno1", f"{tree.device_dir(ONBOARD_NIC)}/net/eno1")
    tree.default_route("bond0")
    dm = tree.block_device("dm-0", "253:0", VIRTUAL)
    for n in range(12):
        tree.symlink(f"{dm}/slaves/s{n}", "../../dm-0")
    tree.symlink(f"{dm}/multipath", "multipath")
    tree.symlink("/sys/dev/block/253:9", "253:9")
    tree.mountinfo(("253:0", "/", "ext4", "/dev/dm-0"), ("253:9", "/usr", "ext4", "/dev/dm-0"))
    started = time.monotonic()
    assert agree(tree, tmp_path) == {ONBOARD_NIC}
    assert time.monotonic() - started < 30


def test_both_sides_stop_at_the_same_depth(tmp_path):
    """A NIC 6 lower_* links below the route's interface is found, one 7 links below is not; a disk
    8 block layers below a mount is found, one 9 layers below is not."""
    tree = bare(tmp_path / "tree")
    for chain, nic, length in (("a", "eno1", 6), ("b", "enp2s0", 7)):
        below = nic
        for n in reversed(range(length)):
            tree.net_interface(f"{chain}{n}", lowers=[below])
            below = f"{chain}{n}"
    tree.default_route("a0", ipv6="b0")
    nvme_disk(tree)
    nvme_disk(tree, NVME2, "nvme1", first_minor=4)
    for first, disk, length in ((10, "nvme0n1p2", 8), (20, "nvme1n1p2", 9)):
        below = disk
        for n in reversed(range(first, first + length)):
            tree.block_device(f"dm-{n}", f"253:{n}", VIRTUAL, slaves=[below])
            below = f"dm-{n}"
    tree.mountinfo(("253:10", "/", "ext4", "/dev/mapper/nothing"), ("253:20", "/usr", "ext4", "/dev/mapper/nothing"))
    assert agree(tree, tmp_path) == {ONBOARD_NIC, NVME}


def test_garbage_tables_agree(tmp_path):
    """Short lines, NUL bytes, bytes that are not UTF-8, a major:minor that climbs, tables that are
    directories: both sides read the same nothing, or the same something."""
    tree = bare(tmp_path / "tree")
    nvme_disk(tree)
    tree.write("/proc/net/route", b"Iface\tDestination\n\n eno1 \t 0000\x000000 \nbad\xff\t00000000\n-\n")
    tree.net_interface("bad\udcff", IGB)
    tree.write("/proc/self/mountinfo", b"x\n1 2 ../../../devices:1 / / rw - ext4 /dev/nvme0n1p1\n"
                                       b"1 2 3\n1 2 0:1 / /boot rw -\n1 2 0:1 / /usr - - ext4\n")
    tree.remove("/proc/swaps")
    tree.mkdir("/proc/swaps")
    assert agree(tree, tmp_path) == {ONBOARD_NIC, IGB, NVME}


# -- the snippet itself --------------------------------------------------------------------------
def test_guard_passes_shellcheck(tmp_path):
    shellcheck = require_tool("shellcheck")
    script = tmp_path / "guard.sh"
    script.write_text("#!/bin/bash\nset -euo pipefail\nROOT=${ROOT:-}\nSTATE=$(mktemp -d)\n"
                      "say() { printf '%s\\n' \"$*\"; }\n" + INROOT + HOST_GUARD
                      + 'if why=$(critical_reason 0000:01:00.0); then say "refused: $why"; fi\n')
    done = subprocess.run([shellcheck, "-s", "bash", str(script)], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
