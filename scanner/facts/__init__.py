"""Facts: what the host says, read once through the Host layer and parsed by pure parsers.

Every property is computed on first use and cached, so all rules share one read of each file.
A fact that could not be read keeps the reason (``facts.cmdline_read.reason``), which rules turn
into a ``skip`` instead of a false ``fail``.

May import: scanner.base, scanner.host, scanner.engine.model.
"""

from __future__ import annotations

from typing import Dict, List, Optional, Tuple

from scanner.base.cached import cached_property
from scanner.facts.cmdline import Cmdline, parse_cmdline
from scanner.facts.host_dependencies import HostDependencies
from scanner.facts.arm_platform import ArmPlatform
from scanner.facts.next_boot import NextBoot
from scanner.facts.boot_claims import BootClaims
from scanner.facts.boot_config import BootConfiguration
from scanner.facts.vm_start_hw import VmStartHardware
from scanner.facts.vm_access import VmAccess
from scanner.facts.cpu import CpuInfo, parse_cpuinfo
from scanner.facts.interrupts import Interrupts, parse_interrupts
from scanner.facts.iommu import IommuGroup, IommuState, group_sort_key
from scanner.facts.kconfig import KernelConfig, parse_kconfig
from scanner.facts.kernel_log import KernelLog, parse_kernel_log
from scanner.facts.modules import Modules, module_name, parse_modules_builtin, parse_modules_dep, parse_proc_modules
from scanner.host import LARGE_CAP, MISSING, Listing, Read
from scanner.engine.model import Evidence

X86 = ("x86_64", "i386", "i486", "i586", "i686", "x86")
#: Bytes of pci.ids that take as long to name in full as reading one device's ids takes: naming
#: only the host's own devices parses a full file (1.3 MB) in 22 ms instead of 38, yet first reads
#: two files of every device, some 25 us each from a tree or this machine. A host with more devices
#: than the file's size over this (650 for a full file; any host, with the cut-down file of a
#: snapshot) is named in full: the same names, sooner.
BYTES_PER_DEVICE_READ = 2000
#: Past any real pci.ids (1.4 MB): a larger file names only the host's own devices, however many,
#: so that the names kept stay bounded by the devices and not by a hostile file's size.
FULL_NAMING_MAX_BYTES = 4 << 20


def evidence_of(read: Read, limit: int = 300) -> Evidence:
    """An evidence item for a read: what the file said (trimmed), or why it said nothing."""
    if read.ok:
        text = read.text.strip()
        if len(text) > limit:
            text = text[:limit] + f"... ({len(read.text)} bytes)"
        return Evidence(read.path, text)
    return Evidence(read.path, f"<{read.reason}>")


class Facts(HostDependencies, NextBoot, BootClaims, BootConfiguration, VmStartHardware, VmAccess, ArmPlatform):
    """Parsed facts of one host; see the module docstring."""

    def __init__(self, host):
        self.host = host

    # -- identity -----------------------------------------------------------------------
    @cached_property
    def release_read(self) -> Read:
        return self.host.read("/proc/sys/kernel/osrelease")

    @cached_property
    def release(self) -> Optional[str]:
        text = self.release_read.value().strip()
        return text.splitlines()[0] if text else None

    @cached_property
    def hostname(self) -> str:
        return self.host.hostname()

    @cached_property
    def arch(self) -> Optional[str]:
        got = self.host.read("/proc/sys/kernel/arch")
        if got.ok and got.text.strip():
            return got.text.strip()
        if self.host.machine:
            return self.host.machine
        if self.cpu and self.cpu.vendor in ("intel", "amd"):
            return "x86_64"
        return None

    @property
    def is_x86(self) -> bool:
        return (self.arch or "") in X86

    @property
    def is_arm64(self) -> bool:
        return (self.arch or "") in ("aarch64", "arm64")

    @cached_property
    def os_release(self) -> Dict[str, str]:
        got = self.host.read("/etc/os-release")
        if not got.ok:
            got = self.host.read("/usr/lib/os-release")
        data = {}
        for line in got.value().splitlines():
            key, sep, value = line.partition("=")
            if sep and key.strip().isidentifier():
                data[key.strip()] = value.strip().strip("'\"")
        return data

    @property
    def reads_etc_modules(self) -> bool:
        """Does a boot read ``/etc/modules``? systemd-modules-load reads only modules-load.d; Debian and its
        family link it in there (``modules-load.d/modules.conf``, listed on its own) and their kmod
        script reads it, Alpine's OpenRC reads it. Anywhere else (Arch, Fedora) a module listed only there
        is not loaded at boot. An os-release that cannot be read gives the file the benefit of the doubt."""
        release = self.os_release
        if not release:
            return True
        family = {release.get("ID", "")} | set(release.get("ID_LIKE", "").split())
        return bool(family & {"debian", "ubuntu", "alpine"})

    # -- CPU, firmware, command line ------------------------------------------------------
    @cached_property
    def cpu_read(self) -> Read:
        got = self.host.read("/proc/cpuinfo", cap=LARGE_CAP)
        if got.ok and not any(sep and key.strip() for key, sep, _ in (line.partition(":") for line in got.text.splitlines())):
            # an empty or junk file says nothing about the CPU: not "no vmx flag"
            return Read(got.path, reason="garbled: no 'key: value' line" if got.text.strip() else "garbled: empty")
        return got

    @cached_property
    def cpu(self) -> Optional[CpuInfo]:
        return parse_cpuinfo(self.cpu_read.text) if self.cpu_read.ok else None

    @cached_property
    def dev_kvm(self) -> Read:
        return self.host.resolve("/dev/kvm")

    @cached_property
    def acpi_tables(self) -> Listing:
        return self.host.listdir("/sys/firmware/acpi/tables")

    @cached_property
    def cmdline_read(self) -> Read:
        return self.host.read("/proc/cmdline")

    @cached_property
    def cmdline(self) -> Optional[Cmdline]:
        return parse_cmdline(self.cmdline_read.text) if self.cmdline_read.ok else None

    @cached_property
    def acs_override(self) -> bool:
        """Booted with ``pcie_acs_override``: every IOMMU group is split by force (each group's
        classification asks, and a host may have thousands of groups)."""
        cmdline = self.cmdline
        return bool(cmdline is not None and cmdline.has("pcie_acs_override"))

    def module_param(self, module: str, param: str) -> Read:
        return self.host.read(f"/sys/module/{module}/parameters/{param}")

    # -- kernel build and modules ---------------------------------------------------------
    @cached_property
    def kconfig(self) -> KernelConfig:
        release = self.release
        candidates = []
        if release:
            candidates += [f"/boot/config-{release}", "/proc/config.gz", f"/lib/modules/{release}/config",
                           f"/lib/modules/{release}/build/.config"]
        else:
            candidates.append("/proc/config.gz")
        searched = []
        for path in candidates:
            raw = self.host.read_bytes(path, cap=LARGE_CAP)
            if not raw.ok:
                searched.append(f"{path} ({raw.reason})")
                continue
            data = raw.data
            if path.endswith(".gz"):
                from scanner.facts.pciids import gunzip

                # capped like every read: an unbounded gzip.decompress of a small file can take
                # gigabytes (a "gzip bomb" in a captured tree)
                data, why = gunzip(data, LARGE_CAP)
                if data is None:
                    searched.append(f"{path} ({why})")
                    continue
            options = parse_kconfig(data.decode("utf-8", "replace"))
            if not options:
                searched.append(f"{path} (garbled: no CONFIG_ lines)")
                continue
            return KernelConfig(options=options, source=path, searched=tuple(searched))
        if not release:
            searched.append(f"kernel release unknown ({self.release_read.describe()})")
        return KernelConfig(searched=tuple(searched))

    @cached_property
    def modules(self) -> Modules:
        notes = []
        proc = self.host.read("/proc/modules")
        loaded = parse_proc_modules(proc.text) if proc.ok else frozenset()
        if proc.ok and not loaded and proc.text.strip():  # text, but not one module line: junk, not "none loaded"
            proc = Read(proc.path, reason="garbled: no module lines")
        if not proc.ok:
            notes.append(proc.describe())
        builtin = installed = unindexed = frozenset()
        builtin_src = installed_src = None
        if self.release:
            base = f"/lib/modules/{self.release}"
            got = self.host.read(f"{base}/modules.builtin", cap=LARGE_CAP)
            if got.ok:
                builtin, builtin_src = parse_modules_builtin(got.text), got.path
            else:
                notes.append(got.describe())
            got = self.host.read(f"{base}/modules.dep", cap=LARGE_CAP)
            if got.ok:
                installed, installed_src = parse_modules_dep(got.text), got.path
            else:
                notes.append(got.describe())
                unindexed = self._module_files(base)
        else:
            notes.append(f"kernel release unknown ({self.release_read.describe()})")
        return Modules(loaded=loaded, builtin=builtin, installed=installed,
                       loaded_source=proc.path if proc.ok else None, builtin_source=builtin_src,
                       installed_source=installed_src, notes=tuple(notes), unindexed=unindexed)

    def _module_files(self, base: str) -> frozenset:
        """The VFIO modules whose .ko is in the tree (kernel/drivers/vfio, .../vfio/pci): what a missing
        modules.dep hides from modprobe, not from the kernel."""
        found = set()
        for sub in ("kernel/drivers/vfio", "kernel/drivers/vfio/pci"):
            found |= {module_name(n) for n in self.host.listdir(f"{base}/{sub}").entries() if ".ko" in n}
        return frozenset(found)

    @cached_property
    def modules_load_config(self) -> Dict[str, frozenset]:
        """Module names each boot-time load list asks for (``/etc/modules-load.d/*.conf``, and ``/etc/modules``
        where the distribution reads it: :attr:`reads_etc_modules`)."""
        files = [f"/etc/modules-load.d/{n}" for n in self.host.listdir("/etc/modules-load.d").entries()
                 if n.endswith(".conf")] + (["/etc/modules"] if self.reads_etc_modules else [])
        found = {}
        for path in files:
            got = self.host.read(path)
            if got.ok:
                names = {line.split("#", 1)[0].strip().replace("-", "_") for line in got.text.splitlines()}
                found[path] = frozenset(n for n in names if n)
        return found

    # -- what the running kernel shows -----------------------------------------------------
    @cached_property
    def kernel_log(self) -> KernelLog:
        got = self.host.kernel_log()
        if not got.ok:
            return KernelLog(source=got.path, reason=got.reason)
        return parse_kernel_log(got.text, source=got.path)

    @cached_property
    def interrupts_read(self) -> Read:
        return self.host.read("/proc/interrupts", cap=LARGE_CAP)

    @cached_property
    def interrupts(self) -> Optional[Interrupts]:
        return parse_interrupts(self.interrupts_read.text) if self.interrupts_read.ok else None

    @cached_property
    def iommu(self) -> IommuState:
        units = self.host.listdir("/sys/class/iommu")
        groups_dir = self.host.listdir("/sys/kernel/iommu_groups")
        groups = {}
        readers = {"read_name": self._group_name, "read_devices": self._group_members,
                   "read_type": self._group_type}  # one set of readers for every group
        for number in sorted(groups_dir.entries(), key=group_sort_key):
            groups[number] = IommuGroup(number, **readers)
        return IommuState(
            units=units.entries(),
            units_reason=None if units.ok or units.missing else units.reason,
            groups=groups,
            groups_reason=None if groups_dir.ok or groups_dir.missing else groups_dir.reason,
        )

    def _group_members(self, number: str) -> Tuple[Tuple[str, ...], Optional[str]]:
        """(addresses, None) of an IOMMU group's ``devices`` directory, or ((), why it cannot be listed)."""
        devices = self.host.listdir(f"/sys/kernel/iommu_groups/{number}/devices")
        return devices.entries(), None if devices.ok else devices.reason

    def _group_name(self, number: str) -> Optional[str]:
        return self._group_word(number, "name")

    def _group_type(self, number: str) -> Optional[str]:
        return self._group_word(number, "type")

    def _group_word(self, number: str, leaf: str) -> Optional[str]:
        """What an IOMMU group's one-word file (``name``, ``type``) says, or None when it cannot be read."""
        got = self.host.read(f"/sys/kernel/iommu_groups/{number}/{leaf}")
        return got.text.strip() if got.ok else None

    @cached_property
    def xen_dom0(self) -> bool:
        """Xen owns the IOMMU: dom0 shows no groups although passthrough works."""
        got = self.host.read("/sys/hypervisor/type")
        return got.ok and got.text.strip() == "xen" and self.host.exists("/proc/xen")

    # -- PCI devices -------------------------------------------------------------------------
    @cached_property
    def pci_listing(self) -> Listing:
        return self.host.listdir("/sys/bus/pci/devices")

    @cached_property
    def pci(self) -> PciDevices:
        """Every PCI function by address (names that are not PCI addresses are ignored), each read in
        full on first access; ``facts.pci.fields`` reads only the attributes asked for
        (:mod:`scanner.facts.pci_devices`)."""
        from scanner.facts.pci_devices import PciDevices

        return PciDevices(self.host, self.pci_listing.entries())

    def _link_name(self, path: str) -> Optional[str]:
        """What the link at ``path`` points to (its last component), or None when it is no link."""
        from scanner.facts.pci_devices import link_target

        return link_target(self.host, path)[0]

    @cached_property
    def pci_ids(self) -> PciIds:
        """Vendor and device names from the scanned host's own ``pci.ids`` (plain or ``.gz``), for
        the devices it has (the only names anything shows).

        Empty (``found`` false, with a note saying where it looked) when none is installed or
        none is readable: names are a nicety, numeric ids are shown instead.
        """
        from scanner.facts.pciids import PCI_IDS_PATHS, PciIds, gunzip, parse_pci_ids

        searched = []
        for path in [p + suffix for p in PCI_IDS_PATHS for suffix in ("", ".gz")]:
            raw = self.host.read_bytes(path, cap=LARGE_CAP)
            if not raw.ok:
                if raw.reason != MISSING:
                    searched.append(f"{path}: {raw.reason}")
                continue
            data = raw.data
            if path.endswith(".gz"):
                data, why = gunzip(data, LARGE_CAP)
                if data is None:
                    searched.append(f"{path}: {why}")
                    continue
            present = None  # every name, unless naming only the host's own devices is cheaper
            if len(data) > min(BYTES_PER_DEVICE_READ * len(self.pci), FULL_NAMING_MAX_BYTES):
                present = {(d.vendor, d.device) for d in self.pci.fields.values() if d.vendor and d.device}
            ids = parse_pci_ids(data.replace(b"\0", b"").decode("utf-8", "replace"), source=path, wanted=present)
            if ids.found:
                return PciIds(ids.vendors, ids.devices, path, tuple(searched) + ids.notes, ids.vendor_lines)
            searched.append(f"{path}: garbled: no vendor lines")
        where = ", ".join(PCI_IDS_PATHS)
        return PciIds(notes=(f"no usable pci.ids in {where} (nor .gz)",) + tuple(searched))

    def device_reason(self, address: str) -> Optional[str]:
        """Why a listed PCI function's state cannot be read (its directory, driver or group link), or None.

        No device rule can judge such a device: the engine reports a ``skip`` with this reason.
        """
        device = self.pci.get(address)
        return device.reason if device is not None else None

    @cached_property
    def pci_index(self):
        """Devices by vendor:device ids, the displays, ...: built once, so that per-target questions
        do not scan every device again (:class:`scanner.facts.pci_index.PciIndex`)."""
        from scanner.facts.pci_index import PciIndex

        return PciIndex(self.pci.fields)

    def devices_in_group(self, group: str) -> List[str]:
        """Addresses in an IOMMU group, from the group's own ``devices`` directory."""
        found = self.iommu.groups.get(group)
        return list(found.devices) if found else []

    def group_member_driver(self, group: str, name: str) -> Tuple[Optional[str], Optional[str]]:
        """(driver, None) of a device an IOMMU group lists that is no PCI function (a platform device an
        SoC or an APU puts in a GPU's group), read through the group's own link to it; (None, None) when
        no driver holds it; (None, why) when that cannot be told. Bound, it keeps the group from VFIO as
        any PCI member does (since 5.19 the kernel asks every bus's driver for the group's ownership)."""
        if name in ("", ".", "..") or "/" in name or not group.isdigit():
            return None, "not a device's name"
        got = self.host.resolve(f"/sys/kernel/iommu_groups/{group}/devices/{name}/driver")
        if got.ok:
            return got.text.rstrip("/").rsplit("/", 1)[-1], None
        return None, (None if got.reason == MISSING else got.reason)

    @cached_property
    def dev_vfio(self) -> Listing:
        return self.host.listdir("/dev/vfio")

    @cached_property
    def dev_vfio_names(self) -> frozenset:
        """``/dev/vfio``'s names as a set: every target asks for its own group's node."""
        return frozenset(self.dev_vfio.entries())

    def driver_module(self, driver: str) -> Optional[str]:
        """The module a PCI driver comes from (``/sys/bus/pci/drivers/<driver>/module``): ``xhci_hcd``
        is in ``xhci_pci``, ``i801_smbus`` in ``i2c_i801``. None when built in or unknown."""
        if not self._plain_name(driver or ""):
            return None
        return self._link_name(f"/sys/bus/pci/drivers/{driver}/module")
