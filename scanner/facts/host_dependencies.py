"""What the host itself runs on: the NICs of its default route, the disks of its filesystems and swap.

A mixin of :class:`scanner.facts.Facts` (it reads through ``self.host`` like every fact): the
device rules and the remediation script refuse to take such a device away from the host, so
these are followed through every layer a real host puts between them and the PCI function --
bridges, bonds and VLANs for a route; device-mapper, MD, NVMe multipath and partitions for a
disk. A VF the host runs on makes its PF just as needed: unbinding the PF, or setting its
``sriov_numvfs`` to 0, removes the VF.

The remediation script checks the same at run time in bash (:mod:`scanner.remediation.script_guard`), with
the same sources, walks and limits, so both always name the same set of PCI functions. Hence the
reading rules here are bash's: a table is split into lines at ``\\n`` and into fields at spaces and
tabs, NUL bytes are dropped, names keep their bytes (a name that is not UTF-8 still finds its
directory), and every walk is breadth first with a set of visited nodes (a hostile tree full of
links back cannot make it exponential) down to a fixed depth.
"""

from __future__ import annotations

from functools import cached_property
from typing import Callable, Dict, Hashable, List, Optional, Tuple, TypeVar

from scanner.host import DEFAULT_CAP, LARGE_CAP
from scanner.base.lazyre import lazy_compile

#: ``lower_*`` links followed below a route's interface (VLAN on a bond under a bridge is 3).
ROUTE_DEPTH = 6
#: Block layers followed below a mounted device (LUKS on LVM on MD on a partition is 4).
BLOCK_DEPTH = 8
MAJOR_MINOR = lazy_compile(r"^[0-9]+:[0-9]+\Z")
#: A controller link in an NVMe subsystem's directory (``nvme0``), where a multipath head leads.
NVME_CONTROLLER = lazy_compile(r"^nvme[0-9]+\Z")
_FIELD_SEPARATORS = lazy_compile(r"[ \t]+")
#: The escapes of mountinfo and /proc/swaps (space, tab, newline, backslash).
_MOUNT_ESCAPE = lazy_compile(r"\\(040|011|012|134)")
Found = TypeVar("Found", bound=Hashable)


def table_fields(line: str) -> List[str]:
    """A table line's fields as bash's ``read -a`` splits them (spaces and tabs, never other whitespace)."""
    return [field for field in _FIELD_SEPARATORS.split(line) if field]


def is_ipv6_default(fields: List[str]) -> bool:
    """An ``/proc/net/ipv6_route`` line of a usable ``::/0`` route (RTF_UP, not RTF_REJECT), not on ``lo``."""
    # dest, prefix length, src, src prefix, next hop, metric, refcnt, use, flags, iface
    if len(fields) < 10 or fields[0] != "0" * 32 or fields[1] != "00" or fields[9] == "lo":
        return False
    if not all(c in "0123456789abcdefABCDEF" for c in fields[8]):
        return False
    flags = int(fields[8], 16)
    return bool(flags & 0x1) and not flags & 0x200


def shown(text: str) -> str:
    """A name read from the host, fit for a one-line message: mount escapes undone, undecodable
    bytes as U+FFFD, other unprintable characters (a newline in an interface name) as ``?``."""
    text = _MOUNT_ESCAPE.sub(lambda m: chr(int(m.group(1), 8)), text)
    text = text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    return "".join(c if c.isprintable() else "?" for c in text)


def in_mount(path: str, point: str) -> bool:
    """Is ``path`` on the filesystem mounted at ``point`` (both as the kernel escapes them)?"""
    return point == "/" or path == point or path.startswith(point + "/")


class Mount:
    """One line of ``/proc/self/mountinfo``: its device, where it is mounted, its source (escaped as read)."""

    __slots__ = ("device", "point", "source")

    def __init__(self, fields: List[str]):
        self.device, self.point = fields[2], fields[4]
        after = fields.index("-", 6) + 2 if "-" in fields[6:] else len(fields)  # "- fstype source"
        self.source = fields[after] if after < len(fields) else ""

    @property
    def label(self) -> str:
        """``259:0 (/dev/nvme0n1p2)``."""
        return self.device + (f" ({shown(self.source)})" if self.source.startswith("/dev/") else "")


def breadth_first(start: List[str], depth: int,
                  visit: Callable[[str], Tuple[Optional[Found], List[str]]]) -> List[Found]:
    """Walk from ``start``: ``visit(node)`` gives (what the node leads to, or None and the nodes below it).

    A node is visited once, at the smallest depth it is reached at, so the walk finds exactly
    what following every path ``depth`` steps deep would, without its exponential cost; what it
    found, in order, each once.
    """
    seen, level, found = set(start), list(dict.fromkeys(start)), []
    for level_depth in range(depth + 1):
        below = []
        for node in level:
            address, children = visit(node)
            if address:
                found.append(address)
            elif level_depth < depth:
                for child in children:
                    if child not in seen:
                        seen.add(child)
                        below.append(child)
        level = below
    return list(dict.fromkeys(found))


class HostDependencies:
    """The PCI functions the host needs for itself (``self.host`` is the Host layer)."""

    @staticmethod
    def _plain_name(name: str) -> bool:
        return bool(name) and "/" not in name and name not in (".", "..")

    def _table_lines(self, path: str, cap: int = LARGE_CAP) -> List[str]:
        """Lines of a /proc table, as bash reads them (bytes kept as surrogates, NULs dropped).

        Capped high: a host with thousands of mounts, or a full routing table, keeps its devices.
        """
        got = self.host.read_bytes(path, cap=cap)
        return got.data.replace(b"\0", b"").decode("utf-8", "surrogateescape").split("\n") if got.ok else []

    def _pci_address_of(self, sysfs_path: str) -> Optional[str]:
        """The PCI function a sysfs device path sits under (the last PCI address in its path)."""
        got = self.host.resolve(sysfs_path)
        return self._address_in(got.text) if got.ok else None

    @staticmethod
    def _address_in(resolved: str) -> Optional[str]:
        from scanner.facts.pci import ADDRESS

        found = [part for part in resolved.split("/") if ADDRESS.match(part)]
        return found[-1] if found else None

    # -- the default route ---------------------------------------------------------------------
    def _default_route_interfaces(self) -> List[str]:
        """Interfaces with a default route: IPv4 (``/proc/net/route``), then IPv6 (``/proc/net/ipv6_route``)."""
        names = [fields[0] for fields in map(table_fields, self._table_lines("/proc/net/route")[1:])
                 if len(fields) >= 2 and fields[1] == "00000000"]
        names += [fields[9] for fields in map(table_fields, self._table_lines("/proc/net/ipv6_route"))
                  if is_ipv6_default(fields)]
        return list(dict.fromkeys(names))

    @cached_property
    def default_route_devices(self) -> Dict[str, str]:
        """PCI address -> interface for interfaces that carry a default route.

        IPv4 and IPv6. A route on a bridge, bond or VLAN (``vmbr0`` on a Proxmox host) is followed
        down its ``lower_*`` links to the NIC that really carries it: the value then reads
        ``enp3s0 (under vmbr0)``.
        """
        found: Dict[str, str] = {}
        for iface in self._default_route_interfaces():
            for address, name in breadth_first([iface], ROUTE_DEPTH, self._net_step):
                found.setdefault(address, shown(name) if name == iface else f"{shown(name)} (under {shown(iface)})")
        return found

    def _net_step(self, iface: str) -> Tuple[Optional[Tuple[str, str]], List[str]]:
        """One interface: (its PCI function, itself), else the interfaces below it."""
        if not self._plain_name(iface):
            return None, []
        address = self._pci_address_of(f"/sys/class/net/{iface}/device")
        if address:
            return (address, iface), []
        return None, [name[len("lower_"):] for name in self.host.listdir(f"/sys/class/net/{iface}").entries()
                      if name.startswith("lower_")]

    # -- disks: mounted filesystems and swap -----------------------------------------------------
    @cached_property
    def mounts(self) -> List[Mount]:
        """``/proc/self/mountinfo``, in order (mount points and sources as escaped there)."""
        return [Mount(fields) for fields in map(table_fields, self._table_lines("/proc/self/mountinfo"))
                if len(fields) > 4]

    @cached_property
    def _mounted_devices(self) -> List[Tuple[str, Mount]]:
        """(PCI address, mount) for every mounted filesystem on a PCI function's disk, each filesystem
        once: by its first mount (a bind mount of it, same device and source, adds nothing).

        Why every mount, not only ``/``, ``/usr`` and ``/boot``: unbinding a disk whose ``/var``,
        ``/home`` or VM image store is mounted takes it from under the running host as surely
        (writes lost now, a failed mount at the next boot). Pseudo and network filesystems have no
        PCI function below them and add nothing.
        """
        found, walked = [], set()
        for mount in self.mounts:
            key = (mount.device, mount.source)
            if key not in walked:
                walked.add(key)
                found += [(address, mount) for address in self._mount_pci_devices(mount)]
        return found

    @cached_property
    def root_fs_devices(self) -> Dict[str, str]:
        """PCI address -> ``259:0 (/dev/nvme0n1p2)`` for the device(s) holding ``/``."""
        found: Dict[str, str] = {}
        for address, mount in self._mounted_devices:
            if mount.point == "/":
                found.setdefault(address, mount.label)
        return found

    @cached_property
    def host_disk_devices(self) -> Dict[str, str]:
        """PCI address -> what the host keeps on it: ``/ on 259:2 (/dev/nvme0n1p2)``, ``swap on /dev/sda3``.

        Every mounted filesystem (``/proc/self/mountinfo``, :attr:`_mounted_devices`) and every swap
        area (``/proc/swaps``): a partition by its block device, a file by the filesystem holding
        it. Followed through device-mapper and MD layers (LVM, LUKS, RAID: ``slaves/``), NVMe
        multipath heads and partitions; a btrfs filesystem shows an anonymous ``0:NN`` device, so
        its mount source (``/dev/nvme0n1p3``, ``/dev/mapper/NAME``) is used instead. Several uses
        of one function are joined with ``, ``.
        """
        uses: Dict[str, Dict[str, None]] = {}
        for address, mount in self._mounted_devices:
            uses.setdefault(address, {})[f"{mount.point} on {mount.label}"] = None
        for address, what in self._swap_devices():
            uses.setdefault(address, {})[what] = None
        return {address: ", ".join(whats) for address, whats in uses.items()}

    def _swap_devices(self) -> List[Tuple[str, str]]:
        """(PCI address, ``swap on /dev/sda3`` / ``swap file F on 259:3 (/dev/sdb1)``) from ``/proc/swaps``."""
        found = []
        for fields in map(table_fields, self._table_lines("/proc/swaps")[1:]):
            if len(fields) < 2:
                continue
            name, kind = fields[0], fields[1]
            if kind == "partition":
                found += [(address, f"swap on {shown(name)}") for address in self._source_pci_devices(name)]
            elif kind == "file":
                for mount in self._mounts_holding(name):
                    found += [(address, f"swap file {shown(name)} on {mount.label}")
                              for address in self._mount_pci_devices(mount)]
        return found

    def _mounts_holding(self, path: str) -> List[Mount]:
        """The mount(s) a file is on: those with the longest mount point (in bytes) that contains it."""
        holding = [(len(mount.point.encode("utf-8", "surrogateescape")), mount) for mount in self.mounts
                   if in_mount(path, mount.point)]
        longest = max((size for size, _ in holding), default=0)
        return [mount for size, mount in holding if size == longest]

    def _mount_pci_devices(self, mount: Mount) -> List[str]:
        """PCI functions under a mounted filesystem: from its ``major:minor``, else from its source."""
        found = []
        if MAJOR_MINOR.match(mount.device):
            found = self._block_pci_devices(f"/sys/dev/block/{mount.device}")
        return found or self._source_pci_devices(mount.source)

    def _source_pci_devices(self, source: str) -> List[str]:
        """PCI functions under a ``/dev/NAME`` or ``/dev/mapper/NAME`` block device."""
        if not source.startswith("/dev/"):
            return []
        name = source.rsplit("/", 1)[-1]
        names = (self._dm_by_name(name) or [name]) if source.startswith("/dev/mapper/") else [name]
        found: List[str] = []
        for block in names:
            if self._plain_name(block):
                found += self._block_pci_devices(f"/sys/class/block/{block}")
        return list(dict.fromkeys(found))

    def _dm_by_name(self, name: str) -> List[str]:
        """Every ``dm-N`` whose device-mapper name (first line of ``dm/name``) is ``name``."""
        return [entry for entry in self.host.listdir("/sys/class/block").entries()
                if entry.startswith("dm-") and self._first_line(f"/sys/class/block/{entry}/dm/name") == name]

    def _first_line(self, path: str) -> str:
        """A file's first line without surrounding spaces and tabs (bash's ``read -r LINE``)."""
        lines = self._table_lines(path, cap=DEFAULT_CAP)
        return lines[0].strip(" \t") if lines else ""

    def _block_pci_devices(self, path: str) -> List[str]:
        """PCI functions under a block device, down :data:`BLOCK_DEPTH` layers (see :meth:`_block_step`)."""
        got = self.host.resolve(path)
        return breadth_first([got.text], BLOCK_DEPTH, self._block_step) if got.ok else []

    def _block_step(self, device: str) -> Tuple[Optional[str], List[str]]:
        """One block device (resolved): its PCI function, else what it sits on.

        ``slaves/*`` (device-mapper, MD), ``multipath/*`` (an NVMe multipath head, newer kernels),
        ``device/nvmeN`` (a head's NVMe subsystem lists its controllers: kernels 6.1 to 6.12 give a
        head no other way down) and the disk of a partition.
        """
        address = self._address_in(device)
        if address:
            return address, []
        below = [f"{device}/{sub}/{name}" for sub in ("slaves", "multipath")
                 for name in self.host.listdir(f"{device}/{sub}").entries() if self._plain_name(name)]
        below += [f"{device}/device/{name}" for name in self.host.listdir(f"{device}/device").entries()
                  if NVME_CONTROLLER.match(name)]
        if self.host.exists(f"{device}/partition"):
            below.append(f"{device}/..")
        resolved = (self.host.resolve(path) for path in below)
        return None, [got.text for got in resolved if got.ok]

    # -- VFs ---------------------------------------------------------------------------------------
    @cached_property
    def host_vf_parents(self) -> Dict[str, List[str]]:
        """PF address -> its VFs that carry the default route or hold a disk of the host.

        Unbinding such a PF, or writing 0 to its ``sriov_numvfs``, removes those VFs with it.
        The PF is the device's ``physfn`` link (:attr:`scanner.facts.pci.PciDevice.physfn`).
        """
        from scanner.facts.pci import ADDRESS

        parents: Dict[str, List[str]] = {}
        for address in dict.fromkeys(list(self.default_route_devices) + list(self.host_disk_devices)):
            device = self.pci.get(address)
            physfn = device.physfn if device is not None else None
            if physfn and ADDRESS.match(physfn) and address not in parents.get(physfn, ()):
                parents.setdefault(physfn, []).append(address)
        return parents
