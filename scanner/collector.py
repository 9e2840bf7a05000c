#!/usr/bin/env python3
"""vfio-scan's collector: one JSON snapshot of exactly what the rules read on a host.

Why it stands alone: it must run on the ``python3`` of a host where nothing is installed --
``ssh host python3 - < collector.py > host.json``, ``vfio-scan fleet``, Ansible's ``script``
module -- from Python 3.6 on (RHEL 8's platform-python). So this file imports nothing from
vfio-scan and nothing outside the standard library, and keeps to Python 3.6 syntax (no
f-strings at all, so that an older interpreter reaches the clear version check below instead
of a SyntaxError). ``vfio-scan collect`` imports this same module in-process.

What it captures is ``CAPTURE``: the paths scanner/facts reads, as patterns (``*`` globs over
directory listings, ``{a,b}`` alternatives, ``<release>`` for the kernel release). Every path is
resolved like a chroot, exactly as the host layer does (scanner/host/walk.py walks a path,
descriptors.py keeps the directories, tree.py reads; tests/test_collector_paths.py holds
this copy of its walk, limits and words to the original), and every step is recorded: each
directory, each symlink with its target, or the reason a step failed (missing, permission
denied, symlink loop). The snapshot host (scanner/host/snapshot.py) replays the same walk over
these records, so a scan of a snapshot answers every read as a scan of the host would have,
reasons included. Files are read with the same size caps as the scanner; a directory's
listing makes the absence of its other names implicit, which keeps snapshots small.

Nothing is ever written on the host (except ``-o FILE`` when asked, whole or not at all); the
kernel log is read with ``dmesg``, then ``journalctl -k -b 0``, each bounded in time.

May import: nothing of vfio-scan.
"""

import argparse
import base64
import datetime
import errno
import fnmatch
import gzip
import io
import json
import os
import re
import socket
import stat
import subprocess
import sys
import time
import zlib
from collections import OrderedDict

FORMAT = "vfio-scan-snapshot"
SNAPSHOT_VERSION = "1.1"  # 1.1: entries may carry uid, gid and mode (the "stat" captures)
COLLECTOR_VERSION = "1.0"

DEFAULT_CAP = 1 << 20  # the scanner's caps (scanner/host/__init__.py): sysfs/procfs files are tiny
LARGE_CAP = 16 << 20  # kernel configs, logs, pci.ids, cpuinfo of big machines
MAX_LINK_HOPS = 40  # the kernel's own limit (ELOOP)
MAX_DEPTH = 256  # directories one path may go down (scanner/host/walk.py's limit)
TOO_DEEP = "too deep: over %d directories down" % MAX_DEPTH
OPEN_DIRECTORIES = 64  # directory descriptors kept open for the walk (far under any RLIMIT_NOFILE)
DIR_FLAGS = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
#: Added where reading a directory is denied: a directory one may pass through but not list (0711)
#: is walked as the kernel walks it (scanner/host/descriptors.py does the same).
O_PATH = getattr(os, "O_PATH", 0)
MAX_ENTRIES = 250000  # a runaway tree (thousands of block devices) cannot grow a snapshot forever
MAX_TOTAL_BYTES = 256 << 20
COMMAND_TIMEOUT = 15
MISSING = "missing"
CHANGED = "changed while being read (a directory on the way was replaced)"  # scanner/host/tree.py's words
DENIED = "permission denied"
NOT_REGULAR = "not a regular file"
A_DIRECTORY = "not a regular file (a directory)"

# What the Facts layer reads (scanner/facts/__init__.py), as (kind, pattern, cap). Kinds: "read"
# a file, "list" a directory, "resolve" a path (exists, links, is_dir), "stat" a path's owner,
# group and mode (device nodes: never opened), "blockdev" a block device and what it sits on
# (slaves/, multipath/, the disk of a partition). tests/test_collector.py
# fails when the scanner reads something this list does not capture.
TOOLS = ("update-initramfs,dracut,mkinitcpio,proxmox-boot-tool,kernelstub,grubby,update-grub,"
         "grub2-mkconfig,driverctl")
PCI_ATTRS = ("vendor,device,class,subsystem_vendor,subsystem_device,driver_override,sriov_totalvfs,"
             "sriov_numvfs,sriov_drivers_autoprobe,sriov_vf_device,boot_vga,reset_method")
PCI_IDS_FILES = "/usr/share/{misc/pci.ids,hwdata/pci.ids,pci.ids}{,.gz}"  # cut down by shrink_pci_ids
CAPTURE = (
    # identity
    ("read", "/proc/sys/kernel/{osrelease,hostname,arch}", DEFAULT_CAP),
    ("read", "/etc/hostname", DEFAULT_CAP),
    ("read", "/{etc,usr/lib}/os-release", DEFAULT_CAP),
    # CPU, firmware, command line
    ("read", "/proc/cpuinfo", LARGE_CAP),
    ("resolve", "/dev/kvm", None),
    ("list", "/sys/firmware/acpi/tables", None),
    # arm64: the SMMUs the firmware describes (ACPI IORT, or the device tree's PCIe hosts and their iommu-map)
    ("read", "/sys/firmware/acpi/tables/IORT", DEFAULT_CAP),
    ("list", "/sys/firmware/devicetree/base", None),
    ("list", "/sys/firmware/devicetree/base/{pcie,pci}@*", None),
    ("read", "/proc/cmdline", DEFAULT_CAP),
    ("read", "/sys/module/{vfio*,kvm*,arm_smmu_v3}/parameters/*", DEFAULT_CAP),
    # kernel build and modules
    ("read", "/boot/config-<release>", LARGE_CAP),
    ("read", "/proc/config.gz", LARGE_CAP),
    ("read", "/lib/modules/<release>/{config,build/.config}", LARGE_CAP),
    ("read", "/proc/modules", DEFAULT_CAP),
    ("read", "/lib/modules/<release>/{modules.builtin,modules.dep,modules.alias,modules.builtin.alias}", LARGE_CAP),
    ("list", "/lib/modules/<release>/kernel/drivers/vfio{,/pci}", None),
    ("read", "/etc/modules-load.d/*.conf", DEFAULT_CAP),
    ("read", "/etc/modules", DEFAULT_CAP),
    # what the running kernel shows
    ("read", "/proc/interrupts", LARGE_CAP),
    ("list", "/sys/class/iommu", None),
    ("list", "/sys/kernel/iommu_groups/*/devices", None),
    ("read", "/sys/kernel/iommu_groups/*/{name,type}", DEFAULT_CAP),
    ("resolve", "/sys/kernel/iommu_groups/*/devices/*/driver", None),
    ("read", "/sys/hypervisor/type", DEFAULT_CAP),
    ("resolve", "/proc/xen", None),
    ("read", "/sys/kernel/security/lockdown", DEFAULT_CAP),
    # PCI devices
    ("list", "/sys/bus/pci/devices/*", None),
    ("read", "/sys/bus/pci/devices/*/{" + PCI_ATTRS + "}", DEFAULT_CAP),
    ("read", "/sys/bus/pci/devices/*/resource", DEFAULT_CAP),
    ("resolve", "/sys/bus/pci/devices/*/{driver,iommu_group,physfn,virtfn*}", None),
    ("resolve", "/sys/bus/pci/drivers/*/module", None),
    ("read", PCI_IDS_FILES, LARGE_CAP),
    ("list", "/dev/vfio", None),
    # what a device meets when QEMU opens it: framebuffers in its BARs, firmware-pinned regions of its group
    ("read", "/proc/iomem", DEFAULT_CAP),
    ("read", "/sys/kernel/iommu_groups/*/reserved_regions", DEFAULT_CAP),
    # what the host itself depends on: the default route's NICs, the disks of its filesystems and swap
    ("read", "/proc/net/{route,ipv6_route}", LARGE_CAP),
    ("list", "/sys/class/net/*", None),
    ("resolve", "/sys/class/net/*/device", None),
    ("read", "/proc/{self/mountinfo,swaps}", LARGE_CAP),
    ("blockdev", "/sys/{dev,class}/block/*", None),
    ("read", "/sys/class/block/dm-*/dm/name", DEFAULT_CAP),
    # boot configuration and the tools that change it
    ("read", "/etc/kernel/cmdline", DEFAULT_CAP),
    ("read", "/etc/default/grub", DEFAULT_CAP),
    # what a fix merges its lines into (another device's ids=, a cloud image's grub.d drop-in)
    ("read", "/etc/default/grub.d/*.cfg", DEFAULT_CAP),
    ("read", "/etc/modprobe.d/*.conf", DEFAULT_CAP),
    ("read", "/etc/udev/rules.d/*.rules", DEFAULT_CAP),
    ("read", "/etc/sysfs.conf", DEFAULT_CAP),
    ("read", "/etc/sysfs.d/*.conf", DEFAULT_CAP),
    # what binds a device at the next boot, and the boot entries grubby and kernelstub keep
    ("read", "/etc/driverctl.d/pci-*", DEFAULT_CAP),
    ("read", "/etc/{initramfs-tools/modules,mkinitcpio.conf}", DEFAULT_CAP),
    ("read", "/etc/dracut.conf.d/*.conf", DEFAULT_CAP),
    ("read", "/{efi,boot,boot/efi}/loader/{entries/*.conf,loader.conf}", DEFAULT_CAP),
    ("read", "/sys/firmware/efi/efivars/LoaderEntry{Default,Selected}-4a67b082-0a4c-41cf-b6c7-440b29bb8c4f",
     DEFAULT_CAP),
    ("read", "/boot/grub2/grubenv", DEFAULT_CAP),
    # the initramfs images: whether they exist (their contents are read on the host only, not collected)
    ("resolve", "/boot/{initrd.img-<release>,initramfs-<release>.img,initrd-<release>,initramfs-linux.img}", None),
    ("read", "/etc/kernelstub/configuration", DEFAULT_CAP),
    ("read", "/etc/pve/mapping/pci.cfg", DEFAULT_CAP),  # vm-config --check: Proxmox resource mappings
    ("resolve", "/{run/ostree-booted,sysroot/ostree,etc/NIXOS,etc/kernel/proxmox-boot-uuids}", None),
    ("resolve", "/{usr/sbin,usr/bin,sbin,bin}/{" + TOOLS + "}", None),
    # what QEMU opens at VM start, the user it runs as, and the memory that user may lock
    ("stat", "/dev/{vfio/*,vfio/devices/*,iommu}", None),
    ("list", "/sys/bus/pci/devices/*/vfio-dev", None),
    ("read", "/etc/{passwd,group,libvirt/qemu.conf}", DEFAULT_CAP),
    ("read", "/etc/security/limits.conf", DEFAULT_CAP),
    ("read", "/etc/security/limits.d/*.conf", DEFAULT_CAP),
    ("read", "/etc/systemd/system.conf", DEFAULT_CAP),
    ("read", "/etc/systemd/system.conf.d/*.conf", DEFAULT_CAP),
)

# scanner/facts/host_dependencies.py: a sysfs path under a PCI function, an NVMe controller's name
PCI_ADDRESS_PART = re.compile(r"/[0-9a-f]{4,8}:[0-9a-f]{2}:[0-1][0-9a-f]\.[0-7](?:/|\Z)")
NVME_CONTROLLER = re.compile(r"^nvme[0-9]+\Z")

# scanner/facts/pciids.py's line shapes: the excerpt keeps exactly what its parser would read
_IDS_VENDOR = re.compile(r"^([0-9A-Fa-f]{4})\s+(\S.*)$")
_IDS_DEVICE = re.compile(r"^\t([0-9A-Fa-f]{4})\s+(\S.*)$")
_IDS_SECTION = re.compile(r"^[A-Z] ")

KERNEL_LOG_COMMANDS = (
    ("dmesg",),
    ("journalctl", "-k", "-b", "0", "--no-pager", "-q"),
)


class Unresolvable(Exception):
    def __init__(self, reason):
        Exception.__init__(self, reason)
        self.reason = reason


def reason_for(exc):
    """The scanner's words for an OSError (scanner/host/descriptors.py: the same strings)."""
    if exc.errno in (errno.ENOENT, errno.ENOTDIR):
        return MISSING
    if exc.errno in (errno.EACCES, errno.EPERM):
        return DENIED
    if exc.errno == errno.ELOOP:
        return "symlink loop"
    if exc.errno == errno.ESTALE and exc.strerror == CHANGED:
        return CHANGED
    return "unreadable: %s" % (exc.strerror or exc)


def not_regular(mode):
    """Why a file of this mode is not read, or None for a regular file (scanner/host/tree.py's words)."""
    if stat.S_ISREG(mode):
        return None
    return A_DIRECTORY if stat.S_ISDIR(mode) else NOT_REGULAR


def open_directory(name, dir_fd, flags=DIR_FLAGS):
    """A directory descriptor, readable where reading is allowed, else one only to pass through."""
    try:
        return os.open(name, flags, dir_fd=dir_fd)
    except PermissionError:
        if not O_PATH:
            raise
        return os.open(name, flags | O_PATH, dir_fd=dir_fd)


def _text(raw):
    """Bytes from the filesystem as the scanner's str (UTF-8, odd bytes kept as surrogates)."""
    return raw.decode("utf-8", "surrogateescape")


def _raw(text):
    return text.encode("utf-8", "surrogateescape")


def key_of(parts):
    return "/" + "/".join(parts)


def expand_braces(pattern):
    """``/a/{b,c}/d`` -> ``/a/b/d``, ``/a/c/d`` (no nesting; that is all CAPTURE needs)."""
    match = re.search(r"\{([^{}]*)\}", pattern)
    if not match:
        return [pattern]
    out = []
    for choice in match.group(1).split(","):
        out += expand_braces(pattern[:match.start()] + choice + pattern[match.end():])
    return out


def release_of(text):
    """The kernel release as scanner/facts reads it: the first line of osrelease, stripped."""
    text = (text or "").strip()
    return text.splitlines()[0] if text else None


class Collector(object):
    """Walks a root (``/`` or a captured tree) and records what CAPTURE asks for."""

    def __init__(self, root="/", max_entries=None, max_total_bytes=None):
        self.root = os.path.abspath(root)
        self._root_raw = _raw(self.root)
        self.entries = {"/": {"type": "dir"}}
        self.notes = []
        self.entry_limit_hit = False
        self.max_entries = MAX_ENTRIES if max_entries is None else max_entries
        self.bytes_left = MAX_TOTAL_BYTES if max_total_bytes is None else max_total_bytes
        self._dir_cache = {}
        self._dir_fds = OrderedDict()  # resolved directory parts -> an open descriptor (a few, reused)

    # -- recording lstat/readlink, then the scanner's own walk ---------------------------------
    def _os_path(self, parts):
        return os.path.join(self._root_raw, *[_raw(p) for p in parts]) if parts else self._root_raw

    def _record(self, key, entry):
        if key not in self.entries:
            if len(self.entries) >= self.max_entries:
                if not self.entry_limit_hit:  # a flag: the notes may be many (one per file over the size cap)
                    self.entry_limit_hit = True
                    self.notes.append("entry limit reached: only the first %d paths were recorded" % self.max_entries)
                return entry
            self.entries[key] = entry
        return self.entries[key]

    # -- every system call beneath the root, through directory descriptors -------------------
    def _dir_fd(self, parts):
        """A descriptor of the resolved directory ``parts``, opened one component at a time with
        O_NOFOLLOW from the root's: a directory swapped for a symlink while the collector runs is
        refused (ELOOP/ENOTDIR), never followed out of the root. Raises OSError."""
        parts = tuple(parts)
        fd = self._dir_fds.get(parts)
        if fd is not None:
            self._dir_fds.move_to_end(parts)
            return fd
        if parts:
            parent = self._dir_fd(parts[:-1])
            try:
                fd = open_directory(_raw(parts[-1]), parent)
            except OSError as exc:
                if exc.errno in (errno.ELOOP, errno.ENOTDIR):  # it was a directory when the walk passed
                    raise OSError(errno.ESTALE, CHANGED)
                raise
        else:  # the root is the user's own path: a link to it is followed, as the system would
            fd = open_directory(self._root_raw, None, DIR_FLAGS & ~os.O_NOFOLLOW)
        self._dir_fds[parts] = fd
        while len(self._dir_fds) > OPEN_DIRECTORIES:
            _, old = self._dir_fds.popitem(last=False)
            os.close(old)
        return fd

    def close(self):
        while self._dir_fds:
            os.close(self._dir_fds.popitem()[1])

    def _lstat(self, parts):
        return os.lstat(_raw(parts[-1]), dir_fd=self._dir_fd(parts[:-1])) if parts else os.fstat(self._dir_fd(()))

    def _lookup(self, parts):
        key = key_of(parts)
        if key in self.entries:
            return self.entries[key]
        try:
            mode = self._lstat(parts).st_mode
        except OSError as exc:
            reason = reason_for(exc)
            entry = {"type": "missing"} if reason == MISSING else {"type": "error", "reason": reason}
            return self._record(key, entry)
        if stat.S_ISLNK(mode):
            try:
                entry = {"type": "link", "target": _text(os.readlink(_raw(parts[-1]), dir_fd=self._dir_fd(parts[:-1])))}
            except OSError as exc:
                entry = {"type": "link", "link_error": reason_for(exc)}
        elif stat.S_ISDIR(mode):
            entry = {"type": "dir"}
        elif stat.S_ISREG(mode):
            entry = {"type": "file"}
        else:
            entry = {"type": "other"}
        return self._record(key, entry)

    def _walk(self, pending, resolved, follow_last):
        """scanner/host/walk.py's ConfinedWalk._walk, step for step, over recorded lookups."""
        hops = 0
        while pending:
            name = pending.pop(0)
            if name in ("", "."):
                continue
            if name == "..":
                if resolved:
                    resolved.pop()
                continue
            candidate = resolved + [name]
            if len(candidate) > MAX_DEPTH:
                raise Unresolvable(TOO_DEEP)
            entry = self._lookup(tuple(candidate))
            kind = entry["type"]
            if kind == "missing":
                raise Unresolvable(MISSING)
            if kind == "error":
                raise Unresolvable(entry["reason"])
            if kind == "link" and (pending or follow_last):
                hops += 1
                if hops > MAX_LINK_HOPS:
                    raise Unresolvable("symlink loop")
                if "link_error" in entry:
                    raise Unresolvable(entry["link_error"])
                target = entry["target"]
                if target.startswith("/"):
                    resolved = []
                pending[:0] = target.split("/")
                continue
            if pending and kind not in ("dir", "link"):
                raise Unresolvable(MISSING)
            resolved = candidate
        return tuple(resolved)

    def _resolve_dir(self, path):
        cached = self._dir_cache.get(path)
        if cached is None:
            cached = self._walk(path.split("/"), [], True)
            if cached and self._lookup(cached)["type"] != "dir":
                raise Unresolvable(MISSING)  # a path through a regular file, as the kernel's ENOTDIR
            self._dir_cache[path] = cached
        return cached

    def _resolve(self, path):
        path = "/" + path.strip("/")
        parent, _, leaf = path.rpartition("/")
        base = self._resolve_dir(parent) if parent else ()
        return self._walk([leaf], list(base), True)

    # -- the three probes ----------------------------------------------------------------------
    def resolve(self, path):
        """Resolve ``path``; its canonical in-root path, or None (the reason is recorded)."""
        try:
            return key_of(self._resolve(path))
        except Unresolvable:
            return None

    def stat(self, path):
        """Record the owner, group and permission bits of what ``path`` leads to (lstat: never opened)."""
        try:
            parts = self._resolve(path)
        except Unresolvable:
            return
        entry = self.entries.get(key_of(parts))
        if entry is None or "mode" in entry:
            return
        try:
            found = self._lstat(parts)
        except OSError:
            return  # gone since the walk: the scan reads it as not collected
        entry.update({"uid": found.st_uid, "gid": found.st_gid, "mode": stat.S_IMODE(found.st_mode)})

    def listdir(self, path):
        """Names in a directory (recorded), or None."""
        try:
            parts = self._resolve(path)
        except Unresolvable:
            return None
        entry = self.entries.get(key_of(parts))
        if entry is None:
            return None
        if "names" not in entry and "list_error" not in entry:
            try:
                entry["names"] = sorted(_text(n) for n in self._listdir(parts))
            except OSError as exc:
                entry["list_error"] = "not a directory" if exc.errno == errno.ENOTDIR else \
                    DENIED if exc.errno == errno.EBADF else reason_for(exc)  # EBADF: open only to pass through
        return entry.get("names")

    def read(self, path, cap=DEFAULT_CAP):
        """Read a file (recorded with its cap); its bytes, or None."""
        try:
            parts = self._resolve(path)
        except Unresolvable:
            return None
        entry = self.entries.get(key_of(parts))
        if entry is None:
            return None
        if entry.get("cap", -1) < cap:
            for field in ("text", "base64", "read_error", "cap"):
                entry.pop(field, None)
            entry.update(self._read_file(parts, cap))
        return self.data_of(entry)

    def _listdir(self, parts):
        """The names of the resolved directory ``parts``, listed through its own descriptor."""
        fd = os.open(_raw(parts[-1]), DIR_FLAGS, dir_fd=self._dir_fd(parts[:-1])) if parts else \
            os.dup(self._dir_fd(()))
        try:
            return [os.fsencode(name) for name in os.listdir(fd)]  # names of a descriptor come as str
        finally:
            os.close(fd)

    @staticmethod
    def data_of(entry):
        if "text" in entry:
            return entry["text"].encode("utf-8")
        if "base64" in entry:
            return base64.b64decode(entry["base64"])
        return None

    def _read_file(self, parts, cap):
        """scanner/host/tree.py's read_bytes after resolution: opened beneath the root's descriptor,
        no links, no blocking, no terminal, a cap."""
        real = self._os_path(parts)
        flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_NOCTTY", 0) | getattr(os, "O_CLOEXEC", 0)
        try:  # the type before any open: a FIFO, a terminal or a watchdog device is never opened at all
            why = not_regular(self._lstat(parts).st_mode)
            if why:
                return {"read_error": why, "cap": cap}
            fd = os.open(_raw(parts[-1]), flags, dir_fd=self._dir_fd(parts[:-1]))
        except OSError as exc:
            changed = exc.errno == errno.ELOOP  # a link now where the walk met a file
            return {"read_error": CHANGED if changed else reason_for(exc), "cap": cap}
        try:
            why = not_regular(os.fstat(fd).st_mode)
            if why:
                return {"read_error": why, "cap": cap}
            chunks, size = [], 0
            while size <= cap:
                chunk = os.read(fd, min(1 << 16, cap + 1 - size))
                if not chunk:
                    break
                chunks.append(chunk)
                size += len(chunk)
            if size > cap:
                return {"read_error": "too large: over the %d-byte cap" % cap, "cap": cap}
            if size > self.bytes_left:
                self.notes.append("total size cap reached: %s not collected" % _text(real))
                return {"read_error": "not collected: the snapshot's total size cap was reached", "cap": cap}
            self.bytes_left -= size
            data = b"".join(chunks)
            try:
                return {"text": data.decode("utf-8"), "cap": cap}
            except UnicodeDecodeError:
                return {"base64": base64.b64encode(data).decode("ascii"), "cap": cap}
        except OSError as exc:
            return {"read_error": reason_for(exc), "cap": cap}
        finally:
            os.close(fd)

    # -- patterns ------------------------------------------------------------------------------
    def expand(self, pattern):
        """Concrete paths for a pattern: glob components are matched against recorded listings."""
        paths = [""]
        for part in pattern.strip("/").split("/"):
            if not any(c in part for c in "*?["):
                paths = [p + "/" + part for p in paths]
                continue
            found = []
            for prefix in paths:
                names = self.listdir(prefix or "/") or []
                found += [prefix + "/" + n for n in names if fnmatch.fnmatchcase(n, part)]
            paths = found
        return paths

    def capture(self, kind, pattern, cap, release):
        for concrete in expand_braces(pattern):
            if "<release>" in concrete:
                if not release:
                    continue
                concrete = concrete.replace("<release>", release)
            for path in self.expand(concrete):
                if kind == "read":
                    self.read(path, cap)
                elif kind == "list":
                    self.listdir(path)
                elif kind == "resolve":
                    self.resolve(path)
                elif kind == "stat":
                    self.stat(path)
                elif kind == "blockdev":
                    self.block_device(path, 0, set())

    def block_device(self, path, depth, seen):
        """A block device and what it sits on, as scanner/facts follows them to a PCI disk."""
        canonical = self.resolve(path)
        if canonical is None or canonical in seen or depth > 8:
            return
        seen.add(canonical)
        self.listdir(canonical)
        for sub in ("slaves", "multipath"):
            for name in self.listdir(canonical + "/" + sub) or []:
                self.block_device(canonical + "/" + sub + "/" + name, depth + 1, seen)
        if not PCI_ADDRESS_PART.search(canonical):  # a multipath head: its NVMe subsystem's controllers
            for name in self.listdir(canonical + "/device") or []:
                if NVME_CONTROLLER.match(name):
                    self.block_device(canonical + "/device/" + name, depth + 1, seen)
        if self.resolve(canonical + "/partition"):
            self.block_device(canonical + "/..", depth + 1, seen)

    def host_pci_ids(self):
        """(vendor, device) of every PCI function listed, lower-case hex, as the scanner parses them."""
        present = set()
        for name in self.listdir("/sys/bus/pci/devices") or []:
            ids = [(self.read_text("/sys/bus/pci/devices/%s/%s" % (name, attr)) or "").strip().lower()
                   for attr in ("vendor", "device")]
            ids = [i[2:] if i.startswith("0x") else i for i in ids]
            if all(len(i) == 4 and all(c in "0123456789abcdef" for c in i) for i in ids):
                present.add((ids[0], ids[1]))
        return present

    def shrink_pci_ids(self):
        """Keep only the pci.ids lines that name this host's devices (see :func:`pci_ids_excerpt`).

        The whole file is 1.4 MB, nearly all of a snapshot, and the scanner only ever looks up
        the names of the devices the host has (``vfio-scan groups``): a fleet of a thousand
        snapshots would otherwise carry and parse 1.4 GB of names it never shows.
        """
        present = None
        for path in expand_braces(PCI_IDS_FILES):
            canonical = self.resolve(path)
            entry = self.entries.get(canonical) if canonical else None
            if not entry or entry.get("type") != "file" or "read_error" in entry:
                continue
            data = self.data_of(entry)
            if data is None:
                continue
            if canonical.endswith(".gz"):
                data = gunzip(data, LARGE_CAP)
                if data is None:  # kept whole: the scanner finds it too large or garbled, as on the host
                    continue
            try:
                text = data.decode("utf-8")
            except UnicodeDecodeError:
                continue
            if present is None:
                present = self.host_pci_ids()
            excerpt = pci_ids_excerpt(text, present)
            if excerpt is None:
                continue
            for field in ("text", "base64"):
                entry.pop(field, None)
            if canonical.endswith(".gz"):
                packed = io.BytesIO()
                with gzip.GzipFile(fileobj=packed, mode="wb", mtime=0) as handle:  # 3.6 has no compress(mtime=)
                    handle.write(excerpt.encode("utf-8"))
                entry["base64"] = base64.b64encode(packed.getvalue()).decode("ascii")
            else:
                entry["text"] = excerpt

    def compact(self):
        """Drop 'missing' records that a recorded listing of their directory already implies.

        Each listing is made a set once: a directory of 100,000 names (IOMMU groups, dangling
        links) searched name by name for each of its missing children took hours.
        """
        listed = {}
        for key in [k for k, e in self.entries.items() if e["type"] == "missing"]:
            parent, _, name = key.rpartition("/")
            parent = parent or "/"
            if parent not in listed:
                names = self.entries.get(parent, {}).get("names")
                listed[parent] = None if names is None else set(names)
            if listed[parent] is not None and name not in listed[parent]:
                del self.entries[key]

    # -- the host's identity and its kernel log ---------------------------------------------
    def read_text(self, path, cap=DEFAULT_CAP):
        """Strict text, as the scanner's Host.read: None when missing, binary or not UTF-8."""
        data = self.read(path, cap)
        if data is None or b"\0" in data:
            return None
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError:
            return None

    def tree_hostname(self):
        for path in ("/proc/sys/kernel/hostname", "/etc/hostname"):
            text = self.read_text(path)
            if text and text.strip():
                return text.strip().splitlines()[0]
        return os.path.basename(self.root.rstrip("/")) or "root"

    def tree_kernel_log(self):
        path = "/var/log/dmesg"
        data = self.read(path, LARGE_CAP)
        if data is not None:
            return {"source": path, "text": lenient(data)}
        reason = self.reason(path, LARGE_CAP)
        return {"source": path, "reason": "no kernel log in the tree (%s: %s); give one with --kernel-log FILE"
                                          % (path, reason)}

    def reason(self, path, cap):
        """Why a read of ``path`` gave nothing (after :meth:`read`)."""
        try:
            parts = self._resolve(path)
        except Unresolvable as exc:
            return exc.reason
        entry = self.entries.get(key_of(parts), {})
        return entry.get("read_error", "unreadable")


def gunzip(data, cap):
    """A ``.gz`` file's content, or None when it is garbled, truncated or over ``cap`` bytes once
    decompressed: scanner/facts/pciids.py's gunzip, so that what it refuses is kept whole here and
    refused alike by the scan. Inflated up to ``cap`` bytes, never more (970 KB can hold 2 GB)."""
    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        out = inflater.decompress(data, cap + 1)
    except zlib.error:
        return None
    if len(out) > cap or not inflater.eof:
        return None
    return out


def lenient(data):
    """Kernel logs are decoded leniently by the scanner: one odd byte must not hide the log."""
    return data.replace(b"\0", b"").decode("utf-8", "replace")


def read_outside_file(path):
    """``--kernel-log FILE``: the user's own file, symlinks followed as the system does."""
    real = os.path.realpath(path)
    helper = Collector(os.path.dirname(real))
    try:
        data = helper.read(os.path.basename(real), LARGE_CAP)
        if data is not None:
            return {"source": path, "text": lenient(data)}
        return {"source": path, "reason": helper.reason(os.path.basename(real), LARGE_CAP)}
    finally:
        helper.close()


def run_command(argv, timeout=COMMAND_TIMEOUT):
    """A read-only command's output, or why there is none (scanner/host/live.py's words)."""
    source = " ".join(argv)
    env = dict(os.environ, LC_ALL="C", SYSTEMD_PAGER="", PAGER="cat")
    try:
        proc = subprocess.run(list(argv), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, timeout=timeout, env=env, check=False)
    except FileNotFoundError:
        return {"source": source, "reason": "command not found"}
    except subprocess.TimeoutExpired:
        return {"source": source, "reason": "timed out after %d s" % timeout}
    except OSError as exc:
        return {"source": source, "reason": "could not run: %s" % (exc.strerror or exc)}
    err = proc.stderr.decode("utf-8", "replace").strip().splitlines()
    if proc.returncode != 0:
        return {"source": source, "reason": err[-1] if err else "exit status %d" % proc.returncode}
    out = proc.stdout[:LARGE_CAP].decode("utf-8", "replace")
    if not out.strip():
        return {"source": source, "reason": "printed nothing" + (" (%s)" % err[-1] if err else "")}
    return {"source": source, "text": out}


def live_kernel_log():
    reasons = []
    for argv in KERNEL_LOG_COMMANDS:
        got = run_command(argv)
        if "text" in got:
            return got
        reasons.append("%s: %s" % (got["source"], got["reason"]))
    return {"source": "kernel log", "reason": "no readable kernel log (" + "; ".join(reasons) + ")"}


def pci_ids_excerpt(text, present):
    """The lines of a pci.ids text that name the devices ``present``, or None to keep it whole.

    Mirrors scanner/facts/pciids.py's parser line for line, so the excerpt gives the same
    vendor and device names for these devices: a kept vendor's line and its kept device lines,
    in their order (the first of duplicates still wins); subsystem lines and the class section,
    which the parser skips, go. A file the parser would find junk in is kept whole, so that its
    note about skipped lines stays the same. One vendor line is kept even when no device of the
    host is named, so that the excerpt is still a pci.ids (one that knows none of them).
    """
    vendors = set(v for v, _ in present)
    kept, first_vendor = [], None
    vendor, in_vendors = None, True
    for raw in text.splitlines():
        line = raw.rstrip("\r\n ")
        if "\0" in raw:
            return None
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        if not line.startswith("\t"):
            match = _IDS_VENDOR.match(line)
            if match:
                in_vendors, vendor = True, match.group(1).lower()
                first_vendor = first_vendor or raw
                if vendor in vendors:
                    kept.append(raw)
                continue
            vendor = None
            if _IDS_SECTION.match(line):
                in_vendors = False
                continue
            return None
        if line.startswith("\t\t") or not in_vendors:
            continue
        match = _IDS_DEVICE.match(line)
        if match and vendor:
            if vendor in vendors and (vendor, match.group(1).lower()) in present:
                kept.append(raw)
            continue
        if not match:
            return None
    if first_vendor and not any(not line.startswith("\t") for line in kept):
        kept.insert(0, first_vendor)
    header = "# The lines of this host's devices, kept by vfio-scan's collector (of %d lines)" % len(text.splitlines())
    return "\n".join([header] + kept) + "\n"


def now_iso():
    """The local time with its zone, ISO 8601 (2024-05-01T12:00:00+02:00)."""
    return datetime.datetime.now(datetime.timezone.utc).astimezone().isoformat(timespec="seconds")


def collect(root=None, kernel_log_file=None):
    """The snapshot of ``root`` (a captured tree) or, without one, of this machine, as a dict."""
    started = time.time()
    collector = Collector(root or "/")
    try:
        return _collect(collector, root, kernel_log_file, started)
    finally:
        collector.close()


def _collect(collector, root, kernel_log_file, started):
    release = release_of(collector.read_text("/proc/sys/kernel/osrelease"))
    for kind, pattern, cap in CAPTURE:
        collector.capture(kind, pattern, cap, release)
    if kernel_log_file:
        kernel_log = read_outside_file(kernel_log_file)
    elif root:
        kernel_log = collector.tree_kernel_log()
    else:
        kernel_log = live_kernel_log()
    if root:
        hostname, machine = collector.tree_hostname(), None
    else:
        hostname, machine = socket.gethostname() or collector.tree_hostname(), os.uname()[4]
        release = release or os.uname()[2]
    collector.shrink_pci_ids()
    collector.compact()
    return {
        "format": FORMAT,
        "snapshot_version": SNAPSHOT_VERSION,
        "collector": {"version": COLLECTOR_VERSION, "python": "%d.%d.%d" % tuple(sys.version_info[:3])},
        "collected_at": now_iso(),
        "duration_s": round(time.time() - started, 3),
        "source": "root" if root else "live",
        "root": collector.root,
        "hostname": hostname,
        "machine": machine,
        "kernel_release": release,
        "kernel_log": kernel_log,
        "notes": collector.notes,
        "entries": collector.entries,
    }


def dumps(snapshot):
    """The snapshot as JSON text: ASCII only (any locale can print it), sorted, one entry a line."""
    return json.dumps(snapshot, ensure_ascii=True, sort_keys=True, indent=0) + "\n"


FD_LINK = re.compile(r"^/(?:proc/[^/]+/fd|dev/fd)/|^/dev/std(?:in|out|err)$")


def write_whole(path, data):
    """Write ``data`` (bytes) to ``path`` whole or not at all; an OSError leaves no part of it behind.

    The rules of scanner/output/atomicwrite.py, in a copy of its own since this file stands alone: a
    regular file (a new one, or the file a symlink points to) is written to a temporary file beside
    it, synced, given the old file's mode (else 0o666 less the umask) and renamed over it; when
    anything fails the temporary file is removed and the old file stays as it was. A device, a FIFO
    or a descriptor's link (/dev/stdout, /proc/self/fd/1) is written in place, never renamed over.
    """
    hop = os.path.abspath(path)
    in_place = False
    for _ in range(40):
        in_place = in_place or bool(FD_LINK.match(hop))
        if in_place or not os.path.islink(hop):
            break
        hop = os.path.normpath(os.path.join(os.path.dirname(hop), os.readlink(hop)))
    try:
        old = os.stat(path)
        in_place = in_place or not stat.S_ISREG(old.st_mode)
        mode = stat.S_IMODE(old.st_mode)
    except FileNotFoundError:
        mode = os.umask(0o077)  # read by setting it; this program has one thread
        os.umask(mode)
        mode = 0o666 & ~mode
    if in_place:
        with open(path, "wb") as handle:
            handle.write(data)
        return
    import tempfile

    target = os.path.realpath(path)
    fd, temp = tempfile.mkstemp(dir=os.path.dirname(target), prefix="." + os.path.basename(target) + ".",
                                suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
            os.fchmod(handle.fileno(), mode)
        os.replace(temp, target)
    except BaseException:
        try:
            os.unlink(temp)
        except OSError:
            pass
        raise


def main(argv=None):
    parser = argparse.ArgumentParser(prog="vfio-scan-collector",
                                     description="Write a vfio-scan snapshot of this host (JSON) to stdout or -o FILE.")
    parser.add_argument("--root", metavar="DIR", help="snapshot a directory laid out like / instead of this machine")
    parser.add_argument("--kernel-log", metavar="FILE", help="the kernel log to record (default: dmesg or the "
                                                             "journal; in a --root tree, its var/log/dmesg)")
    parser.add_argument("-o", "--output", metavar="FILE", help="write the snapshot to FILE instead of stdout")
    parser.add_argument("--version", action="version", version="vfio-scan collector " + COLLECTOR_VERSION)
    args = parser.parse_args(argv)
    if args.root and not os.path.isdir(args.root):
        parser.exit(2, "vfio-scan collector: error: --root %s: no such directory\n" % args.root)
    if args.kernel_log and not os.path.isfile(args.kernel_log):
        parser.exit(2, "vfio-scan collector: error: --kernel-log %s: no such file\n" % args.kernel_log)
    text = dumps(collect(args.root, args.kernel_log))
    to_file = args.output and args.output != "-"
    try:
        if to_file:
            write_whole(args.output, text.encode("ascii"))
        else:
            sys.stdout.write(text)
            sys.stdout.flush()
    except OSError as exc:  # a full disk, > /dev/full, a closed pipe: one line, exit 3 (incomplete)
        if not to_file:  # what stays buffered goes to /dev/null at exit instead of failing a second time
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.stderr.write("vfio-scan collector: error: cannot write %s: %s\n"
                         % (args.output if to_file else "to stdout", exc.strerror or exc))
        return 3
    return 0


if __name__ == "__main__":
    if sys.version_info < (3, 6):
        sys.stderr.write("vfio-scan collector: needs Python 3.6 or newer, this is %s\n" % sys.version.split()[0])
        sys.exit(2)
    sys.exit(main())
