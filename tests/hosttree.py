"""Build fixture host trees (a directory laid out like ``/``) that look like real machines.

The layout follows what a real kernel shows (checked on Debian's 6.1 kernel under QEMU with an
emulated VT-d, see ``../shared/qemu-host``): ``/sys/bus/pci/devices/<addr>`` are relative links
into ``/sys/devices/pci0000:00/...``, a device's ``driver`` and ``iommu_group`` are relative
links, ``/sys/kernel/iommu_groups/<n>/devices/<addr>`` link back, ``/sys/class/iommu/dmar0``
links into ``/sys/devices/virtual/iommu``. Trees are built by code, never checked in.
"""

from __future__ import annotations

import gzip
import os
from pathlib import Path
from typing import Dict, Iterable, Optional

ROUTE_HEADER = "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\n"
SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
RELEASE = "6.1.0-56-amd64"

INTEL_FLAGS = "fpu vme de pse tsc msr pae mce cx8 apic sep mtrr pge mca cmov pat pse36 clflush mmx fxsr sse sse2 ss ht syscall nx lm constant_tsc x2apic vmx ept"
AMD_FLAGS = "fpu vme de pse tsc msr pae mce cx8 apic sep mtrr pge mca cmov pat pse36 clflush mmx fxsr sse sse2 ht syscall nx lm constant_tsc svm npt"

DEBIAN_KCONFIG = {
    "IOMMU_SUPPORT": "y", "INTEL_IOMMU": "y", "AMD_IOMMU": "y", "IRQ_REMAP": "y",
    "INTEL_IOMMU_DEFAULT_ON": "n", "INTEL_IOMMU_DEFAULT_ON_INTGPU_OFF": "y",
    "VFIO": "m", "VFIO_PCI": "m", "VFIO_IOMMU_TYPE1": "m", "PCI_IOV": "y", "SECURITY_LOCKDOWN_LSM": "y",
}

DMESG_INTEL_ON = """\
[    0.000000] Linux version 6.1.0-56-amd64 (debian-kernel@lists.debian.org)
[    0.000000] Command line: console=ttyS0,115200 panic=-1 quiet intel_iommu=on iommu=pt
[    0.038378] ACPI: DMAR 0x000000007FFE3126 000098 (v01 BOCHS  BXPC     00000001 BXPC 00000001)
[    0.086142] DMAR: IOMMU enabled
[    0.203868] DMAR: dmar0: reg_base_addr fed90000 ver 1:0 cap d2008c22260286 ecap f00f4a
[    0.210809] DMAR-IR: Enabled IRQ remapping in xapic mode
[    0.962382] iommu: Default domain type: Passthrough (set via kernel command line)
[    1.165396] DMAR: IOMMU batching disallowed due to virtualization
[    1.166001] pci 0000:00:00.0: Adding to iommu group 0
[    1.166101] pci 0000:00:02.0: Adding to iommu group 1
[    1.168799] DMAR: Intel(R) Virtualization Technology for Directed I/O
"""

INTERRUPTS_IR = """\
           CPU0       CPU1
  0:         44          0  IR-IO-APIC    2-edge      timer
 24:          0          0  DMAR-MSI    0-edge      dmar0
 25:        120          0  IR-PCI-MSIX-0000:00:02.0    0-edge      enp0s2-rx-0
NMI:          0          0   Non-maskable interrupts
"""

INTERRUPTS_NO_IR = """\
           CPU0       CPU1
  0:         44          0   IO-APIC    2-edge      timer
 25:        120          0   PCI-MSI 32768-edge      enp0s2-rx-0
NMI:          0          0   Non-maskable interrupts
"""

#: What every IOMMU group of an x86 host lists in ``reserved_regions``: the MSI window (6.1 under QEMU).
MSI_REGION = "0x00000000fee00000 0x00000000feefffff msi\n"
#: ``resource`` flags as the kernel shows them: a 32-bit memory BAR, a 64-bit prefetchable one, an I/O BAR.
MEM32, MEM64_PREF, IO_BAR = 0x40200, 0x14220C, 0x40101

#: ``/proc/iomem`` of the QEMU q35 guest (6.1, as root), cut to the lines around its PCI devices.
IOMEM_QEMU = """\
00000000-00000fff : Reserved
00001000-0009fbff : System RAM
00100000-7ffd6fff : System RAM
  01000000-01e01d31 : Kernel code
80000000-afffffff : PCI Bus 0000:00
b0000000-bfffffff : PCI MMCONFIG 0000 [bus 00-ff]
c0000000-febfffff : PCI Bus 0000:00
  fe200000-fe21ffff : 0000:00:02.0
    fe200000-fe21ffff : e1000e
fec00000-fec003ff : IOAPIC 0
fed90000-fed90fff : dmar0
fee00000-fee00fff : Local APIC
100000000-8ffffffff : PCI Bus 0000:00
"""

#: The workstation's GPUs: an RTX 3080 without resizable BAR (16 MiB registers, 256 MiB and 32 MiB of
#: 64-bit prefetchable memory, I/O ports) and the iGPU (its 256 MiB aperture holds the firmware's
#: framebuffer until i915 takes over).
WORKSTATION_GPU_BARS = {0: (0xF6000000, 16 << 20, MEM32), 1: (0xE0000000, 256 << 20, MEM64_PREF),
                        3: (0xF0000000, 32 << 20, MEM64_PREF), 5: (0xE000, 128, IO_BAR)}
WORKSTATION_IGPU_BARS = {0: (0xF5000000, 16 << 20, 0x140204), 2: (0xD0000000, 256 << 20, MEM64_PREF),
                         4: (0xF000, 64, IO_BAR)}
#: Its ``/proc/iomem`` around the GPUs once the host's drivers run (i915 removed the EFI framebuffer).
IOMEM_WORKSTATION = """\
00000000-00000fff : Reserved
00100000-7ffd6fff : System RAM
c0000000-febfffff : PCI Bus 0000:00
  d0000000-dfffffff : 0000:00:02.0
  e0000000-f1ffffff : PCI Bus 0000:01
    e0000000-efffffff : 0000:01:00.0
    f0000000-f1ffffff : 0000:01:00.0
  f5000000-f5ffffff : 0000:00:02.0
  f6000000-f70fffff : PCI Bus 0000:01
    f6000000-f6ffffff : 0000:01:00.0
      f6000000-f6ffffff : nvidia
    f7080000-f7083fff : 0000:01:00.1
      f7080000-f7083fff : ICH HD audio
fee00000-fee00fff : Local APIC
"""


def resource_text(bars: Dict[int, tuple], bridge: bool = False) -> str:
    """A ``resource`` file: 13 lines (17 on a bridge), ``bars`` index -> (start, size, flags), the rest zero."""
    lines = []
    for index in range(17 if bridge else 13):
        start, size, flags = bars.get(index, (0, 0, 0))
        lines.append(f"0x{start:016x} 0x{start + size - 1 if size else 0:016x} 0x{flags:016x}")
    return "\n".join(lines) + "\n"



class HostTree:
    """Write files and links under ``root`` using absolute in-tree paths (``/proc/cmdline``)."""

    def __init__(self, root):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)

    def path(self, path: str) -> Path:
        return self.root / path.lstrip("/")

    def write(self, path: str, text, mode: Optional[int] = None) -> Path:
        target = self.path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(text, bytes):
            target.write_bytes(text)
        else:
            target.write_text(text)
        if mode is not None:
            os.chmod(target, mode)
        return target

    def mkdir(self, path: str) -> Path:
        target = self.path(path)
        target.mkdir(parents=True, exist_ok=True)
        return target

    def symlink(self, path: str, target: str) -> Path:
        """``path`` -> ``target``; a relative target is kept relative, as sysfs does."""
        link = self.path(path)
        link.parent.mkdir(parents=True, exist_ok=True)
        if link.is_symlink() or link.exists():
            link.unlink()
        os.symlink(target, link)
        return link

    def link_to(self, path: str, target_abs: str) -> Path:
        """A relative link from ``path`` to the in-tree absolute ``target_abs``."""
        rel = os.path.relpath(target_abs, os.path.dirname("/" + path.lstrip("/")))
        return self.symlink(path, rel)

    def remove(self, path: str) -> None:
        target = self.path(path)
        if target.is_symlink() or target.is_file():
            target.unlink()

    # -- building blocks ----------------------------------------------------------------
    def cpu(self, vendor: str = "intel", flags: Optional[str] = None, hypervisor: bool = False) -> None:
        vendor_id = {"intel": "GenuineIntel", "amd": "AuthenticAMD"}[vendor]
        flags = flags if flags is not None else (INTEL_FLAGS if vendor == "intel" else AMD_FLAGS)
        if hypervisor:
            flags += " hypervisor"
        block = (f"processor\t: {{n}}\nvendor_id\t: {vendor_id}\ncpu family\t: 6\n"
                 f"model name\t: Test CPU\nflags\t\t: {flags}\n\n")
        self.write("/proc/cpuinfo", block.format(n=0) + block.format(n=1))
        self.write("/proc/sys/kernel/arch", "x86_64\n")

    def release(self, release: str = RELEASE) -> None:
        self.write("/proc/sys/kernel/osrelease", release + "\n")
        self.write("/proc/sys/kernel/hostname", "testhost\n")

    def cmdline(self, text: str) -> None:
        self.write("/proc/cmdline", text + "\n")

    def kconfig(self, options: Dict[str, str], where: str = "boot", release: str = RELEASE) -> None:
        lines = [f"# CONFIG_{k} is not set" if v == "n" else f"CONFIG_{k}={v}" for k, v in options.items()]
        text = "#\n# Automatically generated file; DO NOT EDIT.\n#\n" + "\n".join(lines) + "\n"
        if where == "boot":
            self.write(f"/boot/config-{release}", text)
        elif where == "proc":
            self.write("/proc/config.gz", gzip.compress(text.encode()))
        else:
            self.write(f"/lib/modules/{release}/config", text)

    def modules(self, loaded: Iterable[str] = (), builtin: Iterable[str] = (), installed: Iterable[str] = (),
                release: str = RELEASE) -> None:
        self.write("/proc/modules", "".join(f"{m} 16384 0 - Live 0x0000000000000000\n" for m in loaded))
        paths = {"vfio": "kernel/drivers/vfio/vfio.ko", "vfio_pci": "kernel/drivers/vfio/pci/vfio-pci.ko",
                 "vfio_iommu_type1": "kernel/drivers/vfio/vfio_iommu_type1.ko"}
        self.write(f"/lib/modules/{release}/modules.builtin",
                   "".join(paths.get(m, f"kernel/drivers/misc/{m}.ko") + "\n" for m in builtin))
        self.write(f"/lib/modules/{release}/modules.dep",
                   "".join(paths.get(m, f"kernel/drivers/misc/{m}.ko") + ".xz:\n" for m in installed))
        for m in loaded:
            self.mkdir(f"/sys/module/{m}")

    def acpi_tables(self, *names: str) -> None:
        self.mkdir("/sys/firmware/acpi/tables/data")
        for name in ("APIC", "DSDT", "FACP", "HPET", "MCFG") + names:
            self.write(f"/sys/firmware/acpi/tables/{name}", b"", mode=0o400)

    def iommu_unit(self, name: str = "dmar0") -> None:
        self.mkdir(f"/sys/devices/virtual/iommu/{name}")
        self.link_to(f"/sys/class/iommu/{name}", f"/sys/devices/virtual/iommu/{name}")

    def pci_device(self, addr: str, vendor: str, device: str, pci_class: str, driver: Optional[str] = None,
                   group: Optional[str] = None, parent: Optional[str] = None, root_bus: str = "00",
                   bars: Optional[Dict[int, tuple]] = None, **attrs: str) -> str:
        """A PCI function under its root complex (or under ``parent``, a bridge address).

        ``root_bus``: the root bus of its host bridge, ``pci0000:<root_bus>`` (servers have several).
        ``bars``: resource index -> (start, size, flags) for its ``resource`` file (none: all zero).
        """
        domain_bus = addr.rsplit(":", 1)[0]
        base = f"/sys/devices/pci{addr.split(':')[0]}:{root_bus}"
        if parent:
            base = self._device_dir(parent)
        devdir = f"{base}/{addr}"
        self._dirs = getattr(self, "_dirs", {})
        self._dirs[addr] = devdir
        self.write(f"{devdir}/vendor", f"0x{vendor}\n")
        self.write(f"{devdir}/device", f"0x{device}\n")
        self.write(f"{devdir}/class", f"0x{pci_class}\n")
        self.write(f"{devdir}/driver_override", "(null)\n")
        self.write(f"{devdir}/resource", resource_text(bars or {}, bridge=pci_class.startswith("0604")))
        for key, value in attrs.items():
            self.write(f"{devdir}/{key}", f"{value}\n")
        if pci_class.startswith("0604"):
            self.mkdir(f"{devdir}/pci_bus")  # bridges have a secondary bus
        self.link_to(f"/sys/bus/pci/devices/{addr}", devdir)
        if driver:
            self.mkdir(f"/sys/bus/pci/drivers/{driver}")
            self.link_to(f"{devdir}/driver", f"/sys/bus/pci/drivers/{driver}")
            self.link_to(f"/sys/bus/pci/drivers/{driver}/{addr}", devdir)
        if group is not None:
            self.mkdir(f"/sys/kernel/iommu_groups/{group}/devices")
            self.write(f"/sys/kernel/iommu_groups/{group}/type", "DMA\n")
            self.write(f"/sys/kernel/iommu_groups/{group}/reserved_regions", MSI_REGION)
            self.link_to(f"{devdir}/iommu_group", f"/sys/kernel/iommu_groups/{group}")
            self.link_to(f"/sys/kernel/iommu_groups/{group}/devices/{addr}", devdir)
        del domain_bus
        return devdir

    def _device_dir(self, addr: str) -> str:
        return getattr(self, "_dirs", {})[addr]

    def device_dir(self, addr: str) -> str:
        """The in-tree ``/sys/devices/...`` directory of a device built here."""
        return self._device_dir(addr)

    def bind(self, addr: str, driver: Optional[str]) -> None:
        """Re-point a device's ``driver`` link (None: unbind)."""
        devdir = self._device_dir(addr)
        self.remove(f"{devdir}/driver")
        if driver:
            self.mkdir(f"/sys/bus/pci/drivers/{driver}")
            self.link_to(f"{devdir}/driver", f"/sys/bus/pci/drivers/{driver}")
            self.link_to(f"/sys/bus/pci/drivers/{driver}/{addr}", devdir)
        if driver == "vfio-pci":
            group = os.path.basename(os.readlink(self.path(f"{devdir}/iommu_group")))
            self.write(f"/dev/vfio/{group}", "")

    def enable_vfs(self, pf: str, count: int, first_group: int, vf_device: str, driver: Optional[str] = None) -> list:
        """Create ``count`` VFs of ``pf`` (``virtfnN`` / ``physfn`` links), each in its own IOMMU group."""
        devdir = self._device_dir(pf)
        domain, bus, rest = pf.split(":")
        slot, func = rest.split(".")
        vendor = self.path(f"{devdir}/vendor").read_text().strip()[2:]
        offset_file, stride_file = self.path(f"{devdir}/sriov_offset"), self.path(f"{devdir}/sriov_stride")
        offset = int(offset_file.read_text()) if offset_file.exists() else 1
        stride = int(stride_file.read_text()) if stride_file.exists() else 1
        routing_id = (int(bus, 16) << 8) | (int(slot, 16) << 3) | int(func)
        self.write(f"{devdir}/sriov_numvfs", f"{count}\n")
        made = []
        for n in range(count):
            rid = routing_id + offset + n * stride  # where the kernel puts VF n (PCIe SR-IOV routing ids)
            vf = f"{domain}:{rid >> 8:02x}:{(rid >> 3) & 0x1f:02x}.{rid & 7}"
            parent = os.path.dirname(devdir)
            vfdir = f"{parent}/{vf}"
            self._dirs[vf] = vfdir
            for key, value in (("vendor", f"0x{vendor}"), ("device", f"0x{vf_device}"), ("class", "0x020000"),
                               ("driver_override", "(null)"), ("reset_method", "flr")):
                self.write(f"{vfdir}/{key}", value + "\n")
            self.write(f"{vfdir}/resource", resource_text({}))
            self.link_to(f"{vfdir}/physfn", devdir)
            self.link_to(f"{devdir}/virtfn{n}", vfdir)
            self.link_to(f"/sys/bus/pci/devices/{vf}", vfdir)
            group = str(first_group + n)
            self.mkdir(f"/sys/kernel/iommu_groups/{group}/devices")
            self.write(f"/sys/kernel/iommu_groups/{group}/type", "DMA\n")
            self.write(f"/sys/kernel/iommu_groups/{group}/reserved_regions", MSI_REGION)
            self.link_to(f"{vfdir}/iommu_group", f"/sys/kernel/iommu_groups/{group}")
            self.link_to(f"/sys/kernel/iommu_groups/{group}/devices/{vf}", vfdir)
            if driver:
                self.bind(vf, driver)
            made.append(vf)
        return made

    # -- what the host runs on: interfaces, routes, block devices, mounts, swap ---------------------
    def net_interface(self, name: str, device: Optional[str] = None, lowers: Iterable[str] = ()) -> str:
        """``/sys/class/net/NAME`` as the kernel lays it out: a NIC under its PCI function (``device``
        links back to it), else a virtual one (bridge, bond, VLAN) with a ``lower_X`` link to each
        interface below it (made before it). Returns its sysfs directory."""
        self._nets = getattr(self, "_nets", {})
        netdir = f"{self._device_dir(device)}/net/{name}" if device else f"/sys/devices/virtual/net/{name}"
        self.mkdir(netdir)
        if device:
            self.link_to(f"{netdir}/device", self._device_dir(device))
        for lower in lowers:
            self.link_to(f"{netdir}/lower_{lower}", self._nets[lower])
        self.link_to(f"/sys/class/net/{name}", netdir)
        self._nets[name] = netdir
        return netdir

    def default_route(self, iface: Optional[str], ipv6: Optional[str] = None) -> None:
        """The IPv4 default route on ``iface`` (None: no IPv4 default route); ``ipv6``: ``::/0`` on that interface."""
        self.write("/proc/net/route", ROUTE_HEADER + (f"{iface}\t00000000\t0100A8C0\t0003\t0\t0\t100\t00000000\n"
                                                       if iface else ""))
        zero = "0" * 32
        self.write("/proc/net/ipv6_route",
                   f"fe800000000000000000000000000000 40 {zero} 00 {zero} 00000100 00000001 00000000 00000001   lo\n"
                   + (f"{zero} 00 {zero} 00 fe800000000000000000000000000001 00000400 00000001 00000000 00450003 "
                      f"  {ipv6}\n" if ipv6 else ""))

    def block_device(self, name: str, dev: str, parent: str, partition: Optional[int] = None,
                     dm_name: Optional[str] = None, slaves: Iterable[str] = ()) -> str:
        """A block device ``name`` (``dev`` is its major:minor) in the sysfs directory ``parent``: a
        disk under its controller, a partition in its disk's directory, or a virtual device (LVM,
        LUKS, MD) in ``/sys/devices/virtual/block`` with ``slaves`` (block devices made before it).
        Linked from ``/sys/dev/block`` and ``/sys/class/block`` as the kernel does; returns its directory."""
        self._blocks = getattr(self, "_blocks", {})
        blockdir = f"{parent}/{name}"
        self.write(f"{blockdir}/dev", dev + "\n")
        if partition is not None:
            self.write(f"{blockdir}/partition", f"{partition}\n")
        if dm_name is not None:
            self.write(f"{blockdir}/dm/name", dm_name + "\n")
        if slaves or parent == "/sys/devices/virtual/block":
            self.mkdir(f"{blockdir}/slaves")
        for slave in slaves:
            self.link_to(f"{blockdir}/slaves/{slave}", self._blocks[slave])
        self.link_to(f"/sys/dev/block/{dev}", blockdir)
        self.link_to(f"/sys/class/block/{name}", blockdir)
        self._blocks[name] = blockdir
        return blockdir

    def mountinfo(self, *mounts: tuple) -> None:
        """``/proc/self/mountinfo`` of (major:minor, mount point, fstype, source) mounts, after /proc."""
        lines = ["21 1 0:21 / /proc rw,nosuid shared:12 - proc proc rw"]
        lines += [f"{22 + n} 1 {dev} / {point} rw,relatime shared:{n + 1} - {fstype} {source} rw"
                  for n, (dev, point, fstype, source) in enumerate(mounts)]
        self.write("/proc/self/mountinfo", "\n".join(lines) + "\n")

    def swaps(self, *areas: tuple) -> None:
        """``/proc/swaps`` of (file name, ``partition`` or ``file``) areas."""
        self.write("/proc/swaps", "Filename\t\t\t\tType\t\tSize\t\tUsed\t\tPriority\n"
                   + "".join(f"{name}\t{kind}\t\t8388604\t\t0\t\t-2\n" for name, kind in areas))

    def vfio_ids_at_boot(self, ids: Iterable[str], softdeps: Iterable[str] = ()) -> None:
        """What a host prepared for passthrough keeps at boot: ids= and softdeps in /etc/modprobe.d/vfio.conf."""
        self.write("/etc/modprobe.d/vfio.conf", f"options vfio-pci ids={','.join(ids)}\n"
                   + "".join(f"softdep {m} pre: vfio-pci\n" for m in softdeps))

    def iomem(self, text: str) -> None:
        self.write("/proc/iomem", text)

    def lockdown(self, mode: str = "none") -> None:
        """``/sys/kernel/security/lockdown`` with ``mode`` in brackets."""
        self.write("/sys/kernel/security/lockdown",
                   " ".join(f"[{m}]" if m == mode else m for m in ("none", "integrity", "confidentiality")) + "\n")

    def kernel_log(self, text: str) -> None:
        self.write("/var/log/dmesg", text)

    def interrupts(self, remapped: bool = True) -> None:
        self.write("/proc/interrupts", INTERRUPTS_IR if remapped else INTERRUPTS_NO_IR)

    def dev_kvm(self) -> None:
        self.write("/dev/kvm", "")

    def grub(self, default: str = "quiet", linux: str = "") -> None:
        self.write("/etc/default/grub", f'GRUB_DEFAULT=0\nGRUB_TIMEOUT=5\nGRUB_CMDLINE_LINUX_DEFAULT="{default}"\n'
                                         f'GRUB_CMDLINE_LINUX="{linux}"\n')
        self.write("/usr/sbin/update-grub", "#!/bin/sh\n", mode=0o755)
        self.write("/usr/sbin/update-initramfs", "#!/bin/sh\n", mode=0o755)


def ready_host(root, vendor: str = "intel", cmdline: Optional[str] = None) -> HostTree:
    """A host where every host rule passes: modelled on the QEMU guest with intel_iommu=on iommu=pt."""
    tree = HostTree(root)
    tree.release()
    tree.cpu(vendor)
    if cmdline is None:
        cmdline = ("BOOT_IMAGE=/boot/vmlinuz-6.1.0-56-amd64 root=/dev/sda1 ro quiet "
                   + ("intel_iommu=on iommu=pt" if vendor == "intel" else "iommu=pt"))
    tree.cmdline(cmdline)
    tree.kconfig(DEBIAN_KCONFIG)
    tree.modules(loaded=["vfio", "vfio_iommu_type1", "vfio_pci", "vfio_pci_core", "kvm_intel" if vendor == "intel" else "kvm_amd", "kvm"],
                 builtin=[], installed=["vfio", "vfio_iommu_type1", "vfio_pci", "vfio_pci_core"])
    tree.acpi_tables("DMAR" if vendor == "intel" else "IVRS")
    tree.iommu_unit("dmar0" if vendor == "intel" else "ivhd0")
    tree.pci_device("0000:00:00.0", "8086", "29c0", "060000", group="0")
    tree.pci_device("0000:00:02.0", "8086", "10d3", "020000", driver="e1000e", group="1")
    tree.interrupts(remapped=True)
    tree.dev_kvm()
    tree.kernel_log(DMESG_INTEL_ON if vendor == "intel" else
                    "[    0.000000] Linux version 6.1.0-56-amd64\n"
                    "[    1.038284] pci 0000:00:00.2: AMD-Vi: Found IOMMU cap 0x40\n"
                    "[    1.038372] AMD-Vi: Interrupt remapping enabled\n")
    tree.grub(default="quiet intel_iommu=on iommu=pt" if vendor == "intel" else "quiet iommu=pt")
    tree.iomem(IOMEM_QEMU)
    tree.lockdown("none")
    # loaded at every boot, as the passthrough guides have it (Proxmox, Debian): else VFIO-007 says lost at next boot
    tree.write("/etc/modules", "# /etc/modules: kernel modules to load at boot time.\nvfio\nvfio_iommu_type1\nvfio_pci\n")
    return tree


def workstation(root, vendor: str = "intel") -> HostTree:
    """A ready Intel desktop with the devices people pass through, laid out as real sysfs does.

    Groups (as on real client chipsets): the CPU root port shares group 1 with the GPU and its
    HDMI audio; the PCH functions 00:1f.* (LPC, audio, SMBus, the on-board NIC carrying the
    default route) share group 5; an SR-IOV NIC (I350, 7 VFs max) and the root-filesystem NVMe
    sit behind their own root ports; two identical e1000 behind a PCIe-to-PCI bridge share group
    11, as in the QEMU test machine.
    """
    tree = ready_host(root, vendor=vendor)
    for gone in ("/sys/bus/pci/devices/0000:00:02.0", "/sys/kernel/iommu_groups/1/devices/0000:00:02.0"):
        tree.remove(gone)
    tree.pci_device("0000:00:01.0", "8086", "1901", "060400", driver="pcieport", group="1")
    tree.pci_device("0000:01:00.0", "10de", "2204", "030000", driver="nvidia", group="1", parent="0000:00:01.0",
                    boot_vga="0", reset_method="bus", subsystem_vendor="0x1458", subsystem_device="0x403b",
                    bars=WORKSTATION_GPU_BARS)
    tree.pci_device("0000:01:00.1", "10de", "1aef", "040300", driver="snd_hda_intel", group="1",
                    parent="0000:00:01.0", reset_method="bus", bars={0: (0xF7080000, 16 << 10, MEM32)})
    tree.pci_device("0000:00:02.0", "8086", "3e92", "030000", driver="i915", group="2", boot_vga="1",
                    reset_method="flr", bars=WORKSTATION_IGPU_BARS)
    tree.pci_device("0000:00:14.0", "8086", "a36d", "0c0330", driver="xhci_hcd", group="3", reset_method="pm")
    tree.pci_device("0000:00:17.0", "8086", "a352", "010601", driver="ahci", group="4", reset_method="")
    tree.pci_device("0000:00:1f.0", "8086", "a305", "060100", group="5")
    tree.pci_device("0000:00:1f.3", "8086", "a348", "040300", driver="snd_hda_intel", group="5", reset_method="flr")
    tree.pci_device("0000:00:1f.4", "8086", "a323", "0c0500", driver="i801_smbus", group="5")
    tree.pci_device("0000:00:1f.6", "8086", "15bc", "020000", driver="e1000e", group="5", reset_method="flr")
    tree.pci_device("0000:00:1c.0", "8086", "a33c", "060400", driver="pcieport", group="6")
    tree.pci_device("0000:02:00.0", "8086", "1521", "020000", driver="igb", group="7", parent="0000:00:1c.0",
                    reset_method="flr bus", sriov_totalvfs="7", sriov_numvfs="0", sriov_drivers_autoprobe="1",
                    sriov_offset="128", sriov_stride="4", sriov_vf_device="1520")
    tree.pci_device("0000:00:1d.0", "8086", "a330", "060400", driver="pcieport", group="8")
    nvme = tree.pci_device("0000:03:00.0", "144d", "a808", "010802", driver="nvme", group="9",
                           parent="0000:00:1d.0", reset_method="flr bus")
    tree.pci_device("0000:00:06.0", "8086", "1905", "060400", driver="pcieport", group="10")
    tree.pci_device("0000:05:00.0", "1b36", "000e", "060400", group="11", parent="0000:00:06.0")
    tree.pci_device("0000:06:01.0", "8086", "100e", "020000", driver="e1000", group="11", parent="0000:05:00.0",
                    reset_method="bus")
    tree.pci_device("0000:06:02.0", "8086", "100e", "020000", driver="e1000", group="11", parent="0000:05:00.0",
                    reset_method="bus")
    # what the host itself runs on: the default route and the root filesystem
    tree.write("/proc/net/route", "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\n"
                                  "eno1\t00000000\t0100A8C0\t0003\t0\t0\t100\t00000000\n"
                                  "eno1\t0000A8C0\t00000000\t0001\t0\t0\t100\t00FFFFFF\n")
    tree.link_to("/sys/class/net/eno1/device", tree.device_dir("0000:00:1f.6"))
    tree.mkdir(f"{nvme}/nvme/nvme0/nvme0n1")
    tree.link_to("/sys/dev/block/259:0", f"{nvme}/nvme/nvme0/nvme0n1")
    tree.write("/proc/self/mountinfo", "22 1 259:0 / / rw,relatime shared:1 - ext4 /dev/nvme0n1p2 rw\n"
                                       "23 22 0:21 / /proc rw,nosuid shared:12 - proc proc rw\n")
    tree.write("/dev/vfio/vfio", "")
    tree.iomem(IOMEM_WORKSTATION)
    return tree


def gpu_on_vfio(tree: HostTree) -> HostTree:
    """The workstation's GPU and its HDMI audio on vfio-pci (which makes /dev/vfio/1), kept there at boot."""
    tree.bind("0000:01:00.0", "vfio-pci")
    tree.bind("0000:01:00.1", "vfio-pci")
    tree.vfio_ids_at_boot(["10de:2204", "10de:1aef"], softdeps=["nvidia", "snd_hda_intel"])
    return tree
