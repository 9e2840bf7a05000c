"""The tree host's shortcuts on the common read (a plain name in a directory walked before) answer
exactly as the whole walk does: the same text, bytes or reason for every read, resolve, listing
and look-up, on trees of links, loops, dangling links, FIFOs, files of odd bytes and files over
the cap, in any order, with the descriptor cache small enough to drop and open directories again.

The reference is the host with the shortcuts taken out (the code as it was before them): each
descriptor through the cache's reordering, each name walked by the walk, no link followed on
being looked up.
"""

from __future__ import annotations

import itertools
import os
from collections import defaultdict

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from scanner.facts.pci_devices import PciFields
from test_host_walk_cache import build as build_links
from scanner.host import DEFAULT_CAP
from scanner.host.descriptors import Directories
from scanner.host.tree import A_DIRECTORY, TreeHost


class ReorderingDirectories(Directories):
    """The descriptor cache that reorders itself on every hit, the one just asked for included."""

    def fd(self, parts):
        self._last = None  # nothing answered without the cache's own lookup
        return super().fd(parts)


class WalkedHost(TreeHost):
    """A TreeHost without the shortcuts: see the module docstring."""

    def __init__(self, root: str, limit: int):
        super().__init__(root)
        self._dirs = ReorderingDirectories(self.root, limit)

    def _resolve(self, path, follow_last=True):
        path = "/" + path.strip("/")
        parent, _, leaf = path.rpartition("/")
        base = self._resolve_dir(parent) if parent else ()
        return self._walk([leaf], base, follow_last)

    def _keep_link(self, key):
        pass  # a link is followed when a walk meets it, never on being looked up


NAMES = ("a", "b", "c", "..", ".")


def targets():
    relative = st.lists(st.sampled_from(NAMES), min_size=1, max_size=4).map("/".join)
    return st.one_of(relative, relative.map(lambda t: "/" + t))


ODD = ("fifo", "garbled", "nul", "big", "empty")  # files made of another kind than build_links makes
KINDS = ("dir", "file") + ODD
entries = st.dictionaries(
    st.lists(st.sampled_from("abc"), min_size=1, max_size=3).map("/".join),
    st.one_of(st.sampled_from(KINDS), targets()),
    max_size=14,
)
CAP = 64  # the cap some reads are made with: a "big" file is over it


def build(root: str, layout) -> None:
    """The layout as test_host_walk_cache builds it, each file of an odd kind then made that kind."""
    build_links(root, {path: "file" if kind in ODD else kind for path, kind in layout.items()})
    contents = {"garbled": b"caf\xe9\n", "nul": b"a\0b", "big": b"x" * (CAP + 1), "empty": b""}
    for path, kind in layout.items():
        where = os.path.join(root, path)
        if kind not in ODD or not os.path.isfile(where) or os.path.islink(where) \
                or os.path.realpath(where) != os.path.join(os.path.realpath(root), path):
            continue  # not made, or made as something else (a link's target, a directory)
        if kind == "fifo":
            os.unlink(where)
            os.mkfifo(where)
        else:
            with open(where, "wb") as out:
                out.write(contents[kind])


PATHS = ["/".join(p) for n in (1, 2, 3, 4) for p in itertools.product(("a", "b", "c", ".."), repeat=n)][:120]


def answer(host: TreeHost, op):
    """What ``host`` says to one question, as plain values to compare."""
    how, path, extra = op
    if how == "read":
        got = host.read(path, cap=extra)
        return got.text, got.reason
    if how == "read_bytes":
        got = host.read_bytes(path, cap=extra)
        return got.data, got.reason
    if how == "resolve":
        got = host.resolve(path)
        return got.text, got.reason
    if how == "lists":
        return host.lists(path, extra)
    if how == "listdir":
        got = host.listdir(path)
        return got.names, got.reason
    if how == "is_dir":
        return host.is_dir(path)
    if how == "stat":
        got = host.stat(path)
        return got.mode, got.reason
    host.close()
    return None


operations = st.lists(
    st.tuples(st.sampled_from(("read", "read", "read", "read_bytes", "resolve", "lists", "listdir", "is_dir",
                               "stat", "close")),
              st.sampled_from(PATHS + ["/", "a/", "/a/./b", "a//b"]),
              st.sampled_from((DEFAULT_CAP, CAP, "a", "b", "c", ".."))),
    min_size=1, max_size=60,
).map(lambda ops: [(how, path, _extra(how, extra)) for how, path, extra in ops])


def _extra(how: str, extra):
    """A read's cap, or the name a look-up asks for."""
    if how.startswith("read"):
        return extra if isinstance(extra, int) else CAP
    return extra if isinstance(extra, str) else "a"


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(layout=entries, ops=operations, limit=st.sampled_from((1, 2, 3, 128)))
@example(layout={"a": "dir", "a/b": "../c", "c": "file", "a/c": "/a/b", "b": "b/a"}, ops=[("read", "a/b/a", CAP)],
         limit=2)  # links to a file, a directory and into a loop, looked up before they are read through
def test_every_answer_is_the_whole_walks(tmp_path_factory, layout, ops, limit):
    root = str(tmp_path_factory.mktemp("shortcuts"))
    build(root, layout)
    host, walked = TreeHost(root), WalkedHost(root, limit)
    host._dirs = Directories(host.root, limit)
    try:
        looked_up = [("lists", path, name) for path in ["/"] + PATHS[:20] for name in "abc"]
        read_twice = [(how, path, CAP) for how in ("read", "resolve", "read") for path in PATHS]
        for op in ops + looked_up + read_twice:
            assert answer(host, op) == answer(walked, op), op
    finally:
        host.close()
        walked.close()


def test_the_reference_is_held_to_answers_worked_out_by_hand(tmp_path):
    """The two hosts agree on what is plainly right, so that the comparison cannot pass by both being wrong."""
    root = str(tmp_path)
    build(root, {"a": "dir", "a/b": "file", "a/c": "fifo", "b": "a/b", "c": "a", "a/a": "big"})
    for host in (TreeHost(root), WalkedHost(root, 1)):
        for _ in range(2):
            assert host.read("/a/b").text == "a/b"
            assert host.read("/b").text == "a/b"
            assert host.read("/c/b").text == "a/b"
            assert host.read("/a/c").reason == "not a regular file"
            assert host.read("/a/b/x").reason == "missing"
            assert host.read("/a").reason == A_DIRECTORY
            assert host.read("/a/a", cap=CAP).reason == f"too large: over the {CAP}-byte cap"
            assert host.read("/a/a").text == "x" * (CAP + 1)
            assert host.lists("/c", "b") and not host.lists("/c", "x")
        host.close()
        assert host.read("/c/b").text == "a/b"  # after closing, the directories are opened again


class CountingHost(TreeHost):
    def __init__(self, root: str):
        super().__init__(root)
        self.asked = defaultdict(int)

    def read_bytes(self, path, cap=DEFAULT_CAP):
        self.asked[path] += 1
        return super().read_bytes(path, cap)

    def lists(self, path, name):
        self.asked[f"{path}/{name}"] += 1
        return super().lists(path, name)


def test_a_device_field_is_read_once_however_often_it_is_asked(tmp_path):
    from hosttree import HostTree

    tree = HostTree(tmp_path / "r")
    tree.pci_device("0000:01:00.0", "10de", "2204", "030000", driver="nvidia", group="1")
    host = CountingHost(str(tree.root))
    fields = PciFields(host, "0000:01:00.0")
    for _ in range(3):
        assert (fields.vendor, fields.device, fields.pci_class, fields.driver, fields.has_pci_bus) == \
            ("10de", "2204", "030000", "nvidia", False)
    base = "/sys/bus/pci/devices/0000:01:00.0"
    assert {path: n for path, n in host.asked.items()} == {
        f"{base}/vendor": 1, f"{base}/device": 1, f"{base}/class": 1, f"{base}/driver": 1, f"{base}/pci_bus": 1}


def test_the_descriptor_answered_last_is_forgotten_when_opening_another_fails_after_closing_it(tmp_path):
    """With a small cache, opening a deep directory closes the one answered last to make room; when
    a name further down is no directory, the open fails. Asked for again, the one answered last is
    opened anew, never answered by the number it had (which the failed walk reused for another)."""
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "only-in-a").write_text("")
    (tmp_path / "b" / "c" / "d").mkdir(parents=True)
    (tmp_path / "b" / "c" / "d" / "f").write_text("a file, not a directory")
    dirs = Directories(str(tmp_path), limit=2)
    try:
        dirs.fd(("a",))
        try:
            dirs.fd(("b", "c", "d", "f", "g"))
        except OSError:
            pass
        else:
            raise AssertionError("a path through a regular file was opened")
        assert os.listdir(dirs.fd(("a",))) == ["only-in-a"]
    finally:
        dirs.close()
