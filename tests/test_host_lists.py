"""``host.lists(path, name)`` answers as ``name in host.listdir(path).entries()`` on every backend.

A name is looked up instead of its directory listed (one system call instead of eight): the
answer must stay the listing's wherever the two could differ -- a directory that can be passed
through but not listed, one that can be listed but not searched, a dangling link, a file, a path
through a file, a name that is no name -- on a tree, on a snapshot of it and on this machine.
"""

from __future__ import annotations

import os

import pytest

from hosttree import HostTree
from scanner import collector
from scanner.host.live import LiveHost
from scanner.host.snapshot import SnapshotHost, parse_snapshot
from scanner.host.tree import TreeHost

PATHS = ("/", "/d", "/dlink", "/d/sub", "/plain", "/nowhere", "/plain/below", "/unlistable", "/unsearchable",
         "/dangling", "/loop")
NAMES = ("f", "sub", "dangling", "pipe", "x", "absent", "", ".", "..", "a/b", "F", "d", "plain")


def build(root) -> HostTree:
    tree = HostTree(root)
    tree.write("/d/f", "text")
    tree.mkdir("/d/sub")
    tree.symlink("/d/dangling", "nowhere")
    os.mkfifo(tree.root / "d" / "pipe")
    tree.symlink("/dlink", "d")
    tree.write("/plain", "text")
    tree.write("/unlistable/x", "text")
    tree.write("/unsearchable/x", "text")
    tree.symlink("/dangling", "nowhere")
    tree.symlink("/loop", "loop")
    return tree


@pytest.fixture
def unprivileged(monkeypatch):
    """What an unprivileged user meets (the tests may run as root): ``unlistable`` can be passed
    through but not opened for reading (mode 0711), ``unsearchable`` listed but its names not
    looked up (mode 0644)."""
    real_open, real_stat = os.open, os.stat

    def opening(path, flags, mode=0o777, *, dir_fd=None):
        if os.fsdecode(path) == "unlistable" and not flags & getattr(os, "O_PATH", 0):
            raise PermissionError(13, "Permission denied")
        return real_open(path, flags, mode, dir_fd=dir_fd)

    def looking_up(path, *args, dir_fd=None, follow_symlinks=True):
        if path == "x" and dir_fd is not None and os.path.samestat(real_stat(dir_fd), real_stat(unsearchable[0])):
            raise PermissionError(13, "Permission denied")
        return real_stat(path, *args, dir_fd=dir_fd, follow_symlinks=follow_symlinks)

    unsearchable = []
    monkeypatch.setattr(os, "open", opening)
    monkeypatch.setattr(os, "stat", looking_up)
    return unsearchable


def agree(make_host, paths=PATHS, names=NAMES) -> int:
    """Ask every (path, name) of a fresh host and of one host asked everything: the listing's answers."""
    shared = make_host()
    asked = 0
    for path in paths:
        for name in names:
            listed = name in make_host().listdir(path).entries()
            assert make_host().lists(path, name) == listed, (path, name)
            assert shared.lists(path, name) == listed, (path, name)
            asked += listed
    return asked


def test_a_tree_answers_as_its_listing(tmp_path, unprivileged):
    tree = build(tmp_path / "t")
    unprivileged.append(str(tree.root / "unsearchable"))
    assert TreeHost(str(tree.root)).listdir("/unlistable").reason == "permission denied"
    assert TreeHost(str(tree.root)).lists("/unsearchable", "x")  # the look-up is denied, the listing says
    assert agree(lambda: TreeHost(str(tree.root))) >= 8


def test_a_snapshot_answers_as_its_listing(tmp_path):
    tree = build(tmp_path / "t")
    snapshot = parse_snapshot(collector.dumps(collector.collect(str(tree.root))), "snapshot")
    entries = snapshot["entries"]
    entries["/d"] = {"type": "dir", "names": ["dangling", "f", "pipe", "sub"]}
    entries["/unlistable"] = {"type": "dir", "list_error": "permission denied"}
    entries["/d/sub"] = {"type": "dir"}  # listed by no one: not collected
    assert agree(lambda: SnapshotHost(snapshot)) >= 4  # /d, as recorded
    host = SnapshotHost(snapshot)
    assert not host.lists("/d/sub", "f") and "/d/sub" in host.uncollected  # noted as the listing notes it


def test_this_machine_answers_as_its_listing():
    host = LiveHost()
    devices = host.listdir("/sys/bus/pci/devices").entries()[:8]
    paths = ("/", "/proc", "/sys/bus/pci/devices", "/nonexistent") + tuple(f"/sys/bus/pci/devices/{d}" for d in devices)
    agree(LiveHost, paths, ("driver", "pci_bus", "vendor", "iommu_group", "proc", "sys", "absent", "."))
