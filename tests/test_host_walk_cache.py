"""The walk remembers the directories and links it met: every answer stays the one a fresh walk
of the tree gives, inside the root, however often and in whatever order paths are read."""

import errno
import itertools
import os
import stat

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hosttree import HostTree
from scanner.host.tree import MAX_DEPTH, MAX_LINK_HOPS, TOO_DEEP, TreeHost

MARKER = "OUTSIDE THE TREE\n"


@pytest.fixture
def outside(tmp_path):
    """A directory beside the tree whose files only an escape could read."""
    where = tmp_path / "outside"
    where.mkdir()
    (where / "secret").write_text(MARKER)
    return where


@pytest.fixture
def host(tree):
    return TreeHost(str(tree.root))


def twice(read):
    """Read the same thing twice through one host: the second answer comes from what the walk kept."""
    first, second = read(), read()
    assert first == second
    return first


def test_an_absolute_link_out_of_the_tree_stays_inside_when_read_again(tree, host, outside):
    tree.write(str(outside / "secret"), "the tree's own\n")  # the same path inside the root
    tree.symlink("/etc/escape", str(outside / "secret"))
    assert twice(lambda: host.read("/etc/escape")).text == "the tree's own\n"
    assert twice(lambda: host.resolve("/etc/escape")).text == str(outside / "secret")


def test_a_climbing_link_stays_inside_when_read_again(tree, host, outside):
    depth = len(tree.root.parts) + 3
    tree.mkdir("/a/b")
    tree.symlink("/a/b/up", "../" * depth + str(outside).lstrip("/"))
    got = twice(lambda: host.read("/a/b/up/secret"))
    assert got.text != MARKER and got.reason == "missing"
    assert twice(lambda: host.listdir("/a/b/up")).reason == "missing"


def test_a_directory_link_to_outside_read_through_many_times_never_leaves(tree, host, outside):
    tree.write("/etc/conf/value", "inside\n")
    tree.symlink("/sys/away", str(outside))  # absolute: /<outside> inside the root, which is missing
    tree.symlink("/sys/conf", "../etc/conf")
    for _ in range(3):
        assert host.read("/sys/away/secret").reason == "missing"
        assert host.read("/sys/conf/value").text == "inside\n"
        assert host.listdir("/sys/conf").names == ("value",)


def test_a_link_loop_is_a_loop_every_time(tree, host):
    tree.mkdir("/sys")
    tree.symlink("/sys/a", "b")
    tree.symlink("/sys/b", "a")
    for path in ("/sys/a", "/sys/b/x", "/sys/a", "/sys/b"):
        assert host.read(path).reason == "symlink loop"
        assert host.resolve(path).reason == "symlink loop"


def test_a_kept_link_still_counts_toward_the_hop_limit(tree, host):
    tree.write("/chain/target", "end\n")
    for n in range(MAX_LINK_HOPS + 1):
        tree.symlink(f"/chain/l{n}", "target" if n == 0 else f"l{n - 1}")
    tree.symlink("/two", "chain/l39")  # one more hop before the 40 that resolve
    for _ in range(2):
        assert host.read(f"/chain/l{MAX_LINK_HOPS - 1}").text == "end\n"
        assert host.read(f"/chain/l{MAX_LINK_HOPS}").reason == "symlink loop"
        assert host.read("/two").reason == "symlink loop"


def test_a_missing_file_created_later_is_read(tree, host):
    tree.mkdir("/sys/d")
    tree.symlink("/sys/link", "d/later")  # dangling for now
    assert host.read("/sys/d/later").reason == "missing"
    assert host.read("/sys/link").reason == "missing"
    tree.write("/sys/d/later", "here\n")
    assert host.read("/sys/d/later").text == "here\n"
    assert host.read("/sys/link").text == "here\n"


def test_a_kept_link_to_a_file_is_no_directory(tree, host):
    tree.write("/etc/file", "text\n")
    tree.symlink("/etc/link", "file")
    assert host.read("/etc/link").text == "text\n"
    assert host.read("/etc/link/x").reason == "missing"
    assert host.listdir("/etc/link").reason == "not a directory"
    assert host.resolve("/etc/link/.").reason == "missing"


def test_a_deep_chain_through_kept_links_is_refused(tree, host):
    tree.write("/" + "/".join(["d"] * (MAX_DEPTH + 2)) + "/f", "bottom\n")
    tree.symlink("/near", "/" + "/".join(["d"] * (MAX_DEPTH - 2)))
    for _ in range(2):
        assert host.read("/near/d").reason == "not a regular file (a directory)"  # 255 down
        assert host.read("/near/d/d/d/f").reason == TOO_DEEP


def test_names_that_are_not_utf8_are_walked_the_same_every_time(tree, host, outside):
    odd, link = os.fsdecode(b"caf\xe9"), os.fsdecode(b"l\xff")  # names a filesystem holds, but no text
    tree.write(f"/etc/{odd}/value", "odd\n")
    sys_dir = os.fsencode(str(tree.mkdir("/sys")))
    os.symlink(os.fsencode(f"../etc/{odd}"), sys_dir + os.fsencode(f"/{link}"))
    os.symlink(os.fsencode(str(outside)) + b"/\xff", sys_dir + b"/away")
    for _ in range(2):
        assert host.read(f"/sys/{link}/value").text == "odd\n"
        assert host.resolve(f"/sys/{link}").text == f"/etc/{odd}"
        assert host.read("/sys/away").reason == "missing"


def test_each_link_of_a_device_is_read_once(tree, monkeypatch):
    """The walk keeps the links it followed: a device's attributes, its listing and its driver
    cost one readlink of ``/sys/bus/pci/devices/<address>``, not one per read."""
    tree.pci_device("0000:01:00.0", "10de", "2204", "030000", driver="nvidia", group="1")
    host = TreeHost(str(tree.root))
    links = []
    real = os.readlink

    def counting(path, *, dir_fd=None):
        links.append(path)
        return real(path, dir_fd=dir_fd)

    monkeypatch.setattr(os, "readlink", counting)
    base = "/sys/bus/pci/devices/0000:01:00.0"
    for name in ("vendor", "device", "class"):
        assert host.read(f"{base}/{name}").ok
    assert "driver" in host.listdir(base).names
    assert host.resolve(base).ok and host.resolve(f"{base}/driver").text.endswith("/nvidia")
    assert host.resolve(f"{base}/driver").text.endswith("/nvidia")
    assert links.count("0000:01:00.0") == 1 and links.count("driver") == 1


# -- against the walk without memory, on trees of random links ----------------------------------

NAMES = ("a", "b", "..", ".")


def reference(root: str, path: str):
    """The walk as it is with nothing kept: lstat and readlink of each name from the root."""
    pending, resolved, hops = path.strip("/").split("/")[::-1], [], 0
    while pending:
        name = pending.pop()
        if name in ("", "."):
            continue
        if name == "..":
            resolved = resolved[:-1]
            continue
        key = resolved + [name]
        if len(key) > MAX_DEPTH:
            return None, TOO_DEEP
        try:
            mode = os.lstat(os.path.join(root, *key)).st_mode
        except OSError as exc:
            assert exc.errno in (errno.ENOENT, errno.ENOTDIR)
            return None, "missing"
        if stat.S_ISLNK(mode):
            hops += 1
            if hops > MAX_LINK_HOPS:
                return None, "symlink loop"
            target = os.readlink(os.path.join(root, *key))
            if target.startswith("/"):
                resolved = []
            pending.extend(reversed(target.split("/")))
            continue
        if not stat.S_ISDIR(mode) and pending:
            return None, "missing"
        resolved = key
    return "/" + "/".join(resolved), None


def targets():
    relative = st.lists(st.sampled_from(NAMES), min_size=1, max_size=4).map("/".join)
    return st.one_of(relative, relative.map(lambda t: "/" + t))


entries = st.dictionaries(
    st.lists(st.sampled_from("ab"), min_size=1, max_size=3).map(lambda p: "/".join(p)),
    st.one_of(st.just("dir"), st.just("file"), targets()),
    max_size=10,
)


def build(root, layout) -> None:
    for path in sorted(layout, key=len):
        where = os.path.join(root, path)
        parent = os.path.dirname(where)
        if not os.path.isdir(parent) or os.path.realpath(parent) != os.path.realpath(root) + parent[len(root):] \
                or os.path.lexists(where):
            continue  # under a file or through a link: the layout cannot hold it as named
        kind = layout[path]
        if kind == "dir":
            os.mkdir(where)
        elif kind == "file":
            with open(where, "w") as out:
                out.write(path)
        else:
            os.symlink(kind, where)


PATHS = ["/".join(p) for n in (1, 2, 3) for p in itertools.product("ab.", repeat=n)]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(layout=entries, order=st.randoms(use_true_random=False))
def test_every_path_resolves_as_a_walk_without_memory_does(tmp_path_factory, layout, order):
    root = str(tmp_path_factory.mktemp("walk"))
    build(root, layout)
    host = TreeHost(root)
    paths = PATHS * 2  # each twice, in a random order: answers from what was kept meet fresh ones
    order.shuffle(paths)
    for path in paths:
        canonical, why = reference(root, path)
        got = host.resolve(path)
        assert (got.text, got.reason) == (canonical, why), path
        read = host.read(path)
        if canonical is None:
            assert read.reason == why, path
        elif os.path.isfile(os.path.join(root, canonical.lstrip("/"))) and not os.path.islink(
                os.path.join(root, canonical.lstrip("/"))):
            assert read.text == canonical.lstrip("/"), path
    host.close()


def test_the_reference_walk_is_the_hosts_on_a_hand_made_tree(tmp_path):
    """The reference itself, held to answers worked out by hand (so that it cannot agree by accident)."""
    tree = HostTree(tmp_path / "r")
    tree.write("/a/f", "x")
    tree.symlink("/b", "a/..//a")
    tree.symlink("/a/b", "/../../a")
    assert reference(str(tree.root), "b/f") == ("/a/f", None)
    assert reference(str(tree.root), "a/b/b/f") == ("/a/f", None)
    assert reference(str(tree.root), "a/f/x") == (None, "missing")
