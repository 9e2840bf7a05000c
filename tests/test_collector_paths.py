"""The collector's copy of the host layer's path logic, held to the original (scanner/host/tree.py).

The collector (scanner/collector.py) stands alone -- it runs on hosts where vfio-scan is not
installed -- so it carries its own copy of how the host layer resolves a path inside a root
(links followed by hand, ``..`` never above the root, the hop and depth limits, a path through a
file is missing), the words for each failure, which files it reads and which it refuses to open.
These tests run both over the same generated trees -- links escaping the root, absolute and
relative, loops, paths through files, FIFOs, names that are not UTF-8, a path deeper than the
limit, a root given as a link, directories one may pass through but not list -- and hold the
collector's answers to the host layer's, directly and through the snapshot it records. A change
to either copy alone fails here.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import scanner.host as host_layer
from hardening import as_nobody, require_nobody, world_readable_base
from scanner import collector
from scanner.host import descriptors, tree
from scanner.host.snapshot import SnapshotHost, parse_snapshot
from scanner.host.tree import TreeHost

REPO = Path(__file__).resolve().parents[1]
#: Names a generated tree is made of: plain, non-ASCII, and one byte that is not UTF-8 (0xff,
#: which both sides carry as the surrogate U+DCFF).
NAMES = ("a", "b", "é", "\udcff")
STEPS = NAMES + (".", "..", "")
CAP = 64  # small enough that a generated file can be over it


# -- the constants and the words ------------------------------------------------------------------

def test_the_limits_and_the_words_are_the_host_layers():
    assert collector.MAX_LINK_HOPS == tree.MAX_LINK_HOPS
    assert collector.MAX_DEPTH == tree.MAX_DEPTH and collector.TOO_DEEP == tree.TOO_DEEP
    assert collector.CHANGED == tree.CHANGED
    assert collector.NOT_REGULAR == tree.NOT_REGULAR and collector.A_DIRECTORY == tree.A_DIRECTORY
    assert collector.MISSING == host_layer.MISSING and collector.DENIED == host_layer.DENIED
    assert collector.DEFAULT_CAP == host_layer.DEFAULT_CAP and collector.LARGE_CAP == host_layer.LARGE_CAP


@pytest.mark.parametrize("code", sorted(errno.errorcode))
def test_every_errno_is_given_the_host_layers_reason(code):
    exc = OSError(code, os.strerror(code))
    assert collector.reason_for(exc) == descriptors.reason_for(exc)


def test_a_replaced_directory_is_named_as_the_host_layer_names_it():
    """The collector carries "changed" in an ESTALE of its own making; it reads back as the host layer's words."""
    assert collector.reason_for(OSError(errno.ESTALE, collector.CHANGED)) == tree.CHANGED


# -- one tree, both sides --------------------------------------------------------------------------

def _raw(path: str) -> bytes:
    return os.fsencode(path)


def make_tree(root: str, items) -> None:
    """Create ``items`` ((components, kind, payload), in order) under ``root``; an item whose parent
    is not a directory by then is left out, as is one whose name is taken."""
    os.makedirs(root)
    for parts, kind, payload in items:
        path = _raw(os.path.join(root, *parts))
        parent = os.path.dirname(path)
        if not os.path.isdir(parent) or os.path.islink(parent) or os.path.lexists(path):
            continue
        if kind == "dir":
            os.mkdir(path)
        elif kind == "file":
            with open(path, "wb") as handle:
                handle.write(payload)
        elif kind == "link":
            os.symlink(_raw(payload), path)
        else:
            os.mkfifo(path)


def snapshot_of(recorder: collector.Collector) -> SnapshotHost:
    """The collector's records as a snapshot, through its JSON and the schema, as a scan reads one."""
    document = {"format": collector.FORMAT, "snapshot_version": collector.SNAPSHOT_VERSION,
                "collector": {"version": collector.COLLECTOR_VERSION, "python": "3.6.0"},
                "collected_at": "2024-01-01T00:00:00+00:00", "duration_s": 0.0, "source": "root",
                "root": recorder.root, "hostname": "h", "machine": None, "kernel_release": None,
                "kernel_log": {"source": "/var/log/dmesg", "reason": "missing"}, "notes": [],
                "entries": recorder.entries}
    return SnapshotHost(parse_snapshot(collector.dumps(document), "the generated tree's snapshot"))


def disagreements(root: str, paths) -> list:
    """Every answer the collector gives differently from the host layer, first directly, then as
    the snapshot it recorded answers a scan; each as one readable line."""
    host = TreeHost(root)
    recorder = collector.Collector(root)
    found = []
    try:
        for path in paths:
            resolved, data, listing = host.resolve(path), host.read_bytes(path, CAP), host.listdir(path)
            got = (recorder.resolve(path), recorder.read(path, CAP), recorder.listdir(path))
            recorder.stat(path)
            want = (resolved.text, data.data, list(listing.names) if listing.ok else None)
            if got != want:
                found.append(f"collector {path!r}: {got!r}, host layer {want!r}")
        snapshot = snapshot_of(recorder)
        for path in paths:
            methods = (("resolve", ()), ("read_bytes", (CAP,)), ("is_dir", ()))
            if host.resolve(path).text != "/":  # the snapshot host answers the root itself from no record:
                methods += (("listdir", ()), ("stat", ()))  # test_the_snapshot_lists_the_root_it_recorded
            for method, args in methods:
                want, got = getattr(host, method)(path, *args), getattr(snapshot, method)(path, *args)
                if got != want:
                    found.append(f"snapshot {method}({path!r}): {got!r}, host layer {want!r}")
        if snapshot.uncollected:
            found.append(f"not recorded: {sorted(snapshot.uncollected)}")
    finally:
        host.close()
        recorder.close()
    return found


def _join(steps, absolute: bool) -> str:
    return ("/" if absolute else "") + "/".join(steps)


component_lists = st.lists(st.sampled_from(NAMES), min_size=1, max_size=3).map(tuple)
link_targets = st.builds(_join, st.lists(st.sampled_from(STEPS), min_size=1, max_size=5), st.booleans()).filter(bool)
items = st.one_of(
    st.tuples(component_lists, st.just("dir"), st.none()),
    st.tuples(component_lists, st.just("file"), st.binary(max_size=CAP + 8)),
    st.tuples(component_lists, st.just("link"), link_targets),
    st.tuples(component_lists, st.just("fifo"), st.none()),
)
query_paths = st.builds(_join, st.lists(st.sampled_from(STEPS), min_size=0, max_size=6), st.just(True))


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(items, min_size=1, max_size=25), st.lists(query_paths, max_size=25))
def test_generated_trees_resolve_read_and_list_alike(tree_items, queries):
    base = tempfile.mkdtemp(prefix="collector-paths-")
    try:
        root = os.path.join(base, "root")
        make_tree(root, tree_items)
        made = ["/" + "/".join(parts) for parts, _, _ in tree_items]
        paths = list(dict.fromkeys(queries + made + [p + "/.." for p in made] + [p + "/a" for p in made]))
        assert disagreements(root, paths) == []
    finally:
        shutil.rmtree(base)


def test_the_snapshot_lists_the_root_it_recorded(tmp_path):
    root = str(tmp_path / "root")
    make_tree(root, [(("a",), "dir", None)])
    recorder = collector.Collector(root)
    assert recorder.listdir("/") == ["a"]
    recorder.stat("/")
    snapshot = snapshot_of(recorder)
    assert snapshot.listdir("/") == TreeHost(root).listdir("/")
    assert snapshot.stat("/") == TreeHost(root).stat("/")


@pytest.mark.parametrize("record", [{"type": "file", "text": "x"}, {"type": "missing"},
                                    {"type": "link", "target": "/elsewhere"}])
def test_a_root_recorded_as_no_directory_is_still_the_directory_paths_start_from(tmp_path, record):
    root = str(tmp_path / "root")
    make_tree(root, [(("a",), "dir", None), (("a", "f"), "file", b"kept\n")])
    recorder = collector.Collector(root)
    recorder.read("/a/f")
    recorder.entries["/"] = record  # a hostile snapshot's own word for its root
    snapshot = snapshot_of(recorder)
    assert snapshot.read("/a/f").text == "kept\n"
    assert snapshot.is_dir("/") and snapshot.read("/").reason == "not a regular file (a directory)"


# -- the hostile cases, each by name ---------------------------------------------------------------

def hostile_tree(root: str) -> None:
    make_tree(root, [
        (("etc",), "dir", None), (("etc", "hostname"), "file", b"h\n"),
        (("etc", "bad\udcff"), "file", b"\xff\xfe not UTF-8\n"),
        (("escape",), "link", "../../../../../../../../etc"),  # above the root: stays at the root
        (("absolute",), "link", "/etc/hostname"),  # taken from the root, not from /
        (("loop",), "link", "loop"), (("ping",), "link", "pong"), (("pong",), "link", "ping"),
        (("dangling",), "link", "nowhere/at/all"),
        (("through",), "link", "etc/hostname/.."),  # a path through a file is missing
        (("fifo",), "fifo", None), (("to-fifo",), "link", "fifo"),
        (("dot",), "link", "."), (("up",), "link", ".."),
    ])


HOSTILE_PATHS = ("/etc/hostname", "/etc/hostname/..", "/etc/hostname/../hostname", "/etc/hostname/.",
                 "/etc/bad\udcff", "/etc", "/", "/..", "/../..", "/escape", "/escape/hostname", "/absolute",
                 "/loop", "/loop/x", "/ping", "/pong/x", "/dangling", "/through", "/through/x", "/fifo",
                 "/to-fifo", "/fifo/..", "/dot/dot/dot/etc/hostname", "/up/up/etc", "/etc/../etc/./hostname",
                 "//etc//hostname/", "/nothing", "/nothing/..")


def test_hostile_paths_resolve_read_and_list_alike(tmp_path):
    root = str(tmp_path / "root")
    hostile_tree(root)
    assert disagreements(root, HOSTILE_PATHS) == []
    recorder = collector.Collector(root)
    assert recorder.read("/escape/hostname") == b"h\n"  # the teeth: these did resolve, inside the root
    assert recorder.resolve("/etc/hostname/..") is None and recorder.resolve("/loop") is None
    recorder.close()


def test_a_path_deeper_than_the_limit_is_too_deep_on_both_sides(tmp_path):
    root = tmp_path / "root"
    deep = root.joinpath(*["d"] * (tree.MAX_DEPTH + 4))
    deep.mkdir(parents=True)
    (deep / "f").write_text("x")
    (root / "shallow").write_text("y")
    paths = ["/" + "/".join(["d"] * depth + ["f"]) for depth in (tree.MAX_DEPTH - 1, tree.MAX_DEPTH + 4)]
    assert TreeHost(str(root)).resolve(paths[1]).reason == tree.TOO_DEEP
    assert disagreements(str(root), paths + ["/shallow"]) == []


def test_a_root_given_as_a_link_is_followed_on_both_sides(tmp_path):
    hostile_tree(str(tmp_path / "root"))
    (tmp_path / "link").symlink_to("root")
    assert disagreements(str(tmp_path / "link"), HOSTILE_PATHS) == []
    snapshot = SnapshotHost(parse_snapshot(collector.dumps(collector.collect(str(tmp_path / "link"))), "link"))
    assert snapshot.read("/proc/cmdline").reason == "missing"  # not "symlink loop": the tree was read


def test_a_fifo_is_never_opened_only_named(tmp_path, monkeypatch):
    """What is not a regular file is refused by its type before any open, as the host layer does:
    opening a FIFO, a terminal or a watchdog device can block, or act."""
    root = str(tmp_path / "root")
    hostile_tree(root)
    opened = []
    real_open = os.open

    def spy(path, *args, **kwargs):
        opened.append(os.fsdecode(path))
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(os, "open", spy)
    recorder = collector.Collector(root)
    assert recorder.read("/fifo") is None and recorder.read("/to-fifo") is None
    recorder.close()
    assert [name for name in opened if os.path.basename(name) in ("fifo", "to-fifo")] == []
    assert recorder.entries["/fifo"]["read_error"] == collector.NOT_REGULAR


# -- what is read: text as the host layer decodes it ---------------------------------------------

@settings(max_examples=80, deadline=None)
@given(st.binary(max_size=40), st.binary(max_size=40))
def test_text_the_hostname_and_a_lenient_log_decode_alike(hostname, log):
    base = tempfile.mkdtemp(prefix="collector-text-")
    try:
        root = os.path.join(base, "root")
        make_tree(root, [(("etc",), "dir", None), (("etc", "hostname"), "file", hostname), (("var",), "dir", None),
                         (("var", "log"), "dir", None), (("var", "log", "dmesg"), "file", log)])
        host, recorder = TreeHost(root), collector.Collector(root)
        assert recorder.read_text("/etc/hostname") == host.read("/etc/hostname").text
        assert recorder.tree_hostname() == host.hostname()
        assert recorder.tree_kernel_log()["text"] == host.kernel_log().text
        assert collector.lenient(log) == host_layer.decode_text("/var/log/dmesg", log, lenient=True).text
        os.unlink(os.path.join(root, "var", "log", "dmesg"))
        host.close()
        recorder.close()
        recorder = collector.Collector(root)
        assert recorder.tree_kernel_log()["reason"] == host.kernel_log().reason
        recorder.close()
    finally:
        shutil.rmtree(base)


def test_a_kernel_log_named_through_links_is_read_alike(tmp_path):
    (tmp_path / "logs").mkdir()
    (tmp_path / "logs" / "dmesg.txt").write_bytes(b"[0.1] DMAR: IOMMU enabled\n[0.2] odd \xff\x00 byte\n")
    (tmp_path / "hop").symlink_to("logs/dmesg.txt")
    (tmp_path / "link").symlink_to("hop")
    for name in ("link", "hop", "logs/dmesg.txt", "nothing"):
        named = str(tmp_path / name)
        got, want = collector.read_outside_file(named), tree.read_outside_file(named)
        assert (got.get("text"), got.get("reason")) == (want.text, want.reason)


# -- unprivileged: what nobody may pass through but not list ----------------------------------------

NOBODY_SCRIPT = """
import json, sys
sys.path.insert(0, {tests!r})
from test_collector_paths import disagreements
from scanner import collector
root = {root!r}
recorder = collector.Collector(root)
print(json.dumps([disagreements(root, {paths!r}), recorder.read("/search-only/f") is not None]))
"""


def test_directories_nobody_may_only_pass_through_or_not_enter_at_all_read_alike():
    require_nobody()
    base = world_readable_base("collector-paths-")
    try:
        root = base / "root"
        make_tree(str(root), [(("search-only",), "dir", None), (("search-only", "f"), "file", b"f\n"),
                              (("search-only", "d"), "dir", None), (("closed",), "dir", None),
                              (("closed", "f"), "file", b"g\n"), (("to-f",), "link", "search-only/f")])
        for path in root.rglob("*"):
            os.chmod(path, 0o755 if path.is_dir() else 0o644)
        os.chmod(root, 0o755)
        os.chmod(root / "search-only", 0o711)
        os.chmod(root / "closed", 0o700)
        paths = ["/search-only", "/search-only/f", "/search-only/d", "/search-only/d/..", "/closed",
                 "/closed/f", "/to-f", "/"]
        script = NOBODY_SCRIPT.format(tests=str(REPO / "tests"), root=str(root), paths=paths)
        done = as_nobody(["-c", script])
        assert done.returncode == 0, done.stderr
        found, read = json.loads(done.stdout)
        assert found == []
        assert read  # the teeth: nobody did read the file beneath the directory it cannot list
    finally:
        shutil.rmtree(base)
