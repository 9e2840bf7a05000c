"""The floor of ``vfio-scan groups``: read what it reads, in a bare loop, and nothing else.

To list every IOMMU group with its devices, the command reads each group's listing, ``type`` and
``name``, and each PCI function's ``vendor``, ``device`` and ``class``, its ``driver`` link and
whether it has a ``pci_bus`` (a bridge), and the host's pci.ids. No parsing, no verdicts, no table
here; two ways of reading:

* ``--plain``: each file opened by its path, read and closed: the least any tool does;
* confined (the default): the system calls vfio-scan's reads of a tree make to stay inside it
  whatever its links hold (scanner/host/tree.py): every directory opened by one name inside its
  parent's descriptor without following a link, every link read and followed by hand, every file's
  type looked at before it is opened (lstat), the file opened without following a link or blocking,
  its type checked again once open (fstat), read and closed.

What ``vfio-scan groups`` takes over the confined floor is its own Python; what the confined floor
takes over the plain one is the price of that safety. Like ``floor.py``, no import of vfio-scan's,
so the start-up is the interpreter's alone.

Usage: ``python3 benchmarks/groups_floor.py [ROOT] [--plain]`` (default ``/``); prints how many
groups and functions it read.
"""

import os
import stat
import sys
from collections import OrderedDict

DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC
OPEN_DIRECTORIES = 128  # as many as vfio-scan keeps open (scanner/host/descriptors.py)
PCI_IDS = ("/usr/share/misc/pci.ids", "/usr/share/hwdata/pci.ids", "/usr/share/pci.ids")


def read_all(fd, size=-1):
    """The open file's bytes: to its end, or once ``size`` bytes are in (what fstat said of a file on disk)."""
    chunks, got = [], 0
    while got != size:
        chunk = os.read(fd, 1 << 16)
        if not chunk:
            break
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)


class Plain:
    """Each path handed to the kernel whole, links and all."""

    def __init__(self, root):
        self.prefix = "" if root == "/" else root

    def read(self, path):
        try:
            fd = os.open(self.prefix + path, os.O_RDONLY)
        except OSError:
            return None
        try:
            return read_all(fd)
        finally:
            os.close(fd)

    def listdir(self, path):
        try:
            return os.listdir(self.prefix + path)
        except OSError:
            return []

    def readlink(self, path):
        try:
            return os.readlink(self.prefix + path)
        except OSError:
            return None

    def lexists(self, path):
        return os.path.lexists(self.prefix + path)


class Confined:
    """One name at a time inside a directory's descriptor, as vfio-scan reads a tree (module docstring).

    What it walked is kept, as vfio-scan keeps it: the components each walked name leads to, and
    the last few directories' descriptors.
    """

    def __init__(self, root):
        self.root_fd = os.open(root, DIR_FLAGS & ~os.O_NOFOLLOW)
        self.fds = OrderedDict()  # components -> descriptor, the most recently used last
        self.walked = {}  # components as named -> components they lead to (links followed)
        self.directories = {}  # a directory's path as asked -> its components

    def fd(self, parts):
        if not parts:
            return self.root_fd
        fd = self.fds.get(parts)
        if fd is not None:
            self.fds.move_to_end(parts)
            return fd
        fd = self.fds[parts] = os.open(parts[-1], DIR_FLAGS, dir_fd=self.fd(parts[:-1]))
        if len(self.fds) > OPEN_DIRECTORIES:
            os.close(self.fds.popitem(last=False)[1])
        return fd

    def walk(self, names, parts=(), hops=0):
        if hops > 40:
            raise OSError("symlink loop")
        for name in names:
            if name in ("", "."):
                continue
            if name == "..":
                parts = parts[:-1]
                continue
            key = parts + (name,)
            leads = self.walked.get(key)
            if leads is None:
                mode = os.stat(name, dir_fd=self.fd(parts), follow_symlinks=False).st_mode
                if stat.S_ISLNK(mode):
                    target = os.readlink(name, dir_fd=self.fd(parts))
                    leads = self.walk(target.split("/"), () if target.startswith("/") else parts, hops + 1)
                else:
                    leads = key
                self.walked[key] = leads
            parts = leads
        return parts

    def directory(self, path):
        parts = self.directories.get(path)
        if parts is None:
            parts = self.directories[path] = self.walk(path.split("/"))
        return self.fd(parts)

    def _leaf(self, path):
        """(descriptor of the directory ``path`` is in, its last name, that name's lstat mode)."""
        parent, _, leaf = path.rpartition("/")
        dir_fd = self.directory(parent)
        return dir_fd, leaf, os.stat(leaf, dir_fd=dir_fd, follow_symlinks=False).st_mode

    def read(self, path):
        try:
            dir_fd, leaf, mode = self._leaf(path)
            if not stat.S_ISREG(mode):
                return None
            fd = os.open(leaf, FILE_FLAGS, dir_fd=dir_fd)
        except OSError:
            return None
        try:
            opened = os.fstat(fd)
            if not stat.S_ISREG(opened.st_mode):
                return None
            return read_all(fd, opened.st_size)
        finally:
            os.close(fd)

    def listdir(self, path):
        try:
            return os.listdir(self.directory(path))
        except OSError:
            return []

    def readlink(self, path):
        try:
            dir_fd, leaf, mode = self._leaf(path)
            return os.readlink(leaf, dir_fd=dir_fd) if stat.S_ISLNK(mode) else None
        except OSError:
            return None

    def lexists(self, path):
        try:
            self._leaf(path)
        except OSError:
            return False
        return True


def main(argv):
    plain = "--plain" in argv
    args = [arg for arg in argv[1:] if arg != "--plain"]
    root = os.path.abspath(args[0]) if args else "/"
    host = Plain(root) if plain else Confined(root)
    for path in PCI_IDS:
        if host.read(path) is not None:
            break
    functions = sorted(host.listdir("/sys/bus/pci/devices"))
    for address in functions:
        device = "/sys/bus/pci/devices/" + address
        for attribute in ("vendor", "device", "class"):
            host.read(device + "/" + attribute)
        host.readlink(device + "/driver")
        host.lexists(device + "/pci_bus")
    groups = host.listdir("/sys/kernel/iommu_groups")
    grouped = 0
    for number in groups:
        group = "/sys/kernel/iommu_groups/" + number
        grouped += len(sorted(host.listdir(group + "/devices")))
        host.read(group + "/type")
        host.read(group + "/name")
    print(f"{len(groups)} groups, {grouped} functions in them, {len(functions)} functions")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
