"""The floor: list and read exactly the files vfio-scan's rules need, and nothing else.

No parsing, no rules, no report: the least any tool must do to answer the same questions, in the
same interpreter. vfio-scan's time over this one's is what its checks, its evidence and its
safety (chroot-style resolution, size caps, never-raising reads) cost.

``PATTERNS`` is a copy of the collector's ``CAPTURE`` list (scanner/collector.py, the paths the
Facts layer reads); the benchmark smoke test fails when the two drift apart. The copy keeps this
script free of vfio-scan's imports, so its start-up is the interpreter's alone.

Usage: ``python3 benchmarks/floor.py [ROOT] [--devices] [--stack]`` (default ``/``); prints how many
paths it read. Without ``--devices`` it reads what a scan without device targets reads (the host
rules and the IOMMU groups); with it, also every device's attributes, links, and what the device
rules check around them (drivers' modules, the default route's NIC, the root filesystem's disk, the
boot configuration). ``--stack`` first imports what any scan needs before its first check -- the
plugin manager the design prescribes (pluggy), argparse and json -- so that a ratio can be read
against the floor of the chosen stack as well as the interpreter's.
"""

import fnmatch
import os
import subprocess
import sys

PCI_ATTRS = ("vendor,device,class,subsystem_vendor,subsystem_device,driver_override,sriov_totalvfs,"
             "sriov_numvfs,sriov_drivers_autoprobe,sriov_vf_device,boot_vga,reset_method")
TOOLS = ("update-initramfs,dracut,mkinitcpio,proxmox-boot-tool,kernelstub,grubby,update-grub,"
         "grub2-mkconfig,driverctl")
PATTERNS = (
    ("read", "/proc/sys/kernel/{osrelease,hostname,arch}"),
    ("read", "/etc/hostname"),
    ("read", "/{etc,usr/lib}/os-release"),
    ("read", "/proc/cpuinfo"),
    ("resolve", "/dev/kvm"),
    ("list", "/sys/firmware/acpi/tables"),
    ("read", "/sys/firmware/acpi/tables/IORT"),
    ("list", "/sys/firmware/devicetree/base"),
    ("list", "/sys/firmware/devicetree/base/{pcie,pci}@*"),
    ("read", "/proc/cmdline"),
    ("read", "/sys/module/{vfio*,kvm*,arm_smmu_v3}/parameters/*"),
    ("read", "/boot/config-<release>"),
    ("read", "/proc/config.gz"),
    ("read", "/lib/modules/<release>/{config,build/.config}"),
    ("read", "/proc/modules"),
    ("read", "/lib/modules/<release>/{modules.builtin,modules.dep,modules.alias,modules.builtin.alias}"),
    ("list", "/lib/modules/<release>/kernel/drivers/vfio{,/pci}"),
    ("read", "/etc/modules-load.d/*.conf"),
    ("read", "/etc/modules"),
    ("read", "/proc/interrupts"),
    ("list", "/sys/class/iommu"),
    ("list", "/sys/kernel/iommu_groups/*/devices"),
    ("read", "/sys/kernel/iommu_groups/*/{name,type}"),
    ("resolve", "/sys/kernel/iommu_groups/*/devices/*/driver"),
    ("read", "/sys/hypervisor/type"),
    ("resolve", "/proc/xen"),
    ("read", "/sys/kernel/security/lockdown"),
    # from here on, what only the device rules need (a scan with targets)
    ("list", "/sys/bus/pci/devices/*"),
    ("read", "/sys/bus/pci/devices/*/{" + PCI_ATTRS + "}"),
    ("read", "/sys/bus/pci/devices/*/resource"),
    ("resolve", "/sys/bus/pci/devices/*/{driver,iommu_group,physfn,virtfn*}"),
    ("resolve", "/sys/bus/pci/drivers/*/module"),
    ("read", "/usr/share/{misc/pci.ids,hwdata/pci.ids,pci.ids}{,.gz}"),
    ("list", "/dev/vfio"),
    ("read", "/proc/iomem"),
    ("read", "/sys/kernel/iommu_groups/*/reserved_regions"),
    ("read", "/proc/net/{route,ipv6_route}"),
    ("list", "/sys/class/net/*"),
    ("resolve", "/sys/class/net/*/device"),
    ("read", "/proc/{self/mountinfo,swaps}"),
    ("blockdev", "/sys/{dev,class}/block/*"),
    ("read", "/sys/class/block/dm-*/dm/name"),
    ("read", "/etc/kernel/cmdline"),
    ("read", "/etc/default/grub"),
    ("read", "/etc/default/grub.d/*.cfg"),
    ("read", "/etc/modprobe.d/*.conf"),
    ("read", "/etc/udev/rules.d/*.rules"),
    ("read", "/etc/sysfs.conf"),
    ("read", "/etc/sysfs.d/*.conf"),
    ("read", "/etc/driverctl.d/pci-*"),
    ("read", "/etc/{initramfs-tools/modules,mkinitcpio.conf}"),
    ("read", "/etc/dracut.conf.d/*.conf"),
    ("read", "/{efi,boot,boot/efi}/loader/{entries/*.conf,loader.conf}"),
    ("read", "/sys/firmware/efi/efivars/LoaderEntry{Default,Selected}-4a67b082-0a4c-41cf-b6c7-440b29bb8c4f"),
    ("read", "/boot/grub2/grubenv"),
    ("resolve", "/boot/{initrd.img-<release>,initramfs-<release>.img,initrd-<release>,initramfs-linux.img}"),
    ("read", "/etc/kernelstub/configuration"),
    ("read", "/etc/pve/mapping/pci.cfg"),
    ("resolve", "/{run/ostree-booted,sysroot/ostree,etc/NIXOS,etc/kernel/proxmox-boot-uuids}"),
    ("resolve", "/{usr/sbin,usr/bin,sbin,bin}/{" + TOOLS + "}"),
    ("stat", "/dev/{vfio/*,vfio/devices/*,iommu}"),
    ("list", "/sys/bus/pci/devices/*/vfio-dev"),
    ("read", "/etc/{passwd,group,libvirt/qemu.conf}"),
    ("read", "/etc/security/limits.conf"),
    ("read", "/etc/security/limits.d/*.conf"),
    ("read", "/etc/systemd/system.conf"),
    ("read", "/etc/systemd/system.conf.d/*.conf"),
)


DEVICE_PATTERNS_FROM = PATTERNS.index(("list", "/sys/bus/pci/devices/*"))


def braces(pattern):
    """Expand ``{a,b}`` alternatives (not nested), left to right."""
    start = pattern.find("{")
    if start < 0:
        return [pattern]
    end = pattern.index("}", start)
    head, tail = pattern[:start], pattern[end + 1:]
    return [expanded for choice in pattern[start + 1:end].split(",") for expanded in braces(head + choice + tail)]


LISTINGS = {}


def listdir(path):
    """A directory's names, listed once however many patterns walk through it."""
    if path not in LISTINGS:
        try:
            LISTINGS[path] = os.listdir(path)
        except OSError:
            LISTINGS[path] = []
    return LISTINGS[path]


def expand(prefix, pattern):
    """The existing paths a ``*`` pattern names, walking one directory level at a time."""
    paths, listed = [prefix], False
    for segment in pattern.strip("/").split("/"):
        if "*" in segment:
            paths = [path + "/" + name for path in paths for name in fnmatch.filter(listdir(path), segment)]
            listed = True
        elif listed:  # under a listed directory: only the names it has (no failed opens)
            paths = [path + "/" + segment for path in paths if segment in listdir(path)]
        else:
            paths = [path + "/" + segment for path in paths]
    return paths


def read(path):
    """The file's bytes with the fewest system calls (open, read until empty, close)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        chunks = []
        while True:
            chunk = os.read(fd, 1 << 20)
            if not chunk:
                return b"".join(chunks)
            chunks.append(chunk)
    except OSError:
        return None
    finally:
        os.close(fd)


def main(argv):
    devices = "--devices" in argv
    if "--stack" in argv:
        import argparse, json, pluggy  # noqa: F401,E401  (their import is what --stack measures)
    args = [arg for arg in argv[1:] if arg not in ("--devices", "--stack")]
    root = os.path.abspath(args[0]) if args else "/"
    prefix = "" if root == "/" else root
    release = (read(prefix + "/proc/sys/kernel/osrelease") or b"").decode().strip()
    touched = 0
    for kind, pattern in PATTERNS if devices else PATTERNS[:DEVICE_PATTERNS_FROM]:
        for alternative in braces(pattern.replace("<release>", release)):
            for path in expand(prefix, alternative) if "*" in alternative else [prefix + alternative]:
                touched += 1
                if kind == "read":
                    read(path)
                elif kind == "list":
                    try:
                        os.listdir(path)
                    except OSError:
                        pass
                elif kind == "resolve":
                    try:
                        os.readlink(path)
                    except OSError:  # not a link (or missing): does it exist at all
                        os.path.exists(path)
                elif kind == "stat":  # a device node's owner and mode: never opened
                    try:
                        os.stat(path)
                    except OSError:
                        pass
                else:  # blockdev: the device, what it sits on
                    for sub in ("slaves", "holders"):
                        try:
                            os.listdir(os.path.join(path, sub))
                        except OSError:
                            pass
                    os.path.realpath(path)
    if prefix:
        log = read(prefix + "/var/log/dmesg")
    else:
        log = subprocess.run(["dmesg"], capture_output=True).stdout
    print(f"{touched} paths read, kernel log {len(log or b'')} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
