"""A snapshot answers a read by one look-up where it can (scanner/host/snapshot_lookup.py): every
answer, and every path it notes as not collected, stays the one the confined walk alone gives --
through links, ``..``, loops, missing, failed and unrecorded names, and at the depth limit -- and
every text read is the one the round trip through bytes gives, garbled, too large or lenient."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from scanner.host.snapshot import SnapshotHost
from scanner.host.tree import TreeHost
from scanner.host.walk import MAX_DEPTH, TOO_DEEP

NAMES = ("a", "b", "c")
#: What a record's text can hold: plain ASCII, other characters, a NUL, a byte that was not UTF-8
#: (kept by the collector as a lone surrogate), a surrogate no byte makes, and sizes about the caps read with.
TEXTS = ("x\n", "", "y", "ab", "abc", "0x10de\n", "caf\u00e9\n", "\u00e9", "a\0b", "\0", "bad\udcff\n", "\ud800",
         "x" * 79 + "\n", "x" * 81)


class WalkOnly(SnapshotHost):
    """The snapshot host as it reads without the look-up: every path through the walk, every text
    through bytes."""

    read = TreeHost.read

    def _plain_entry(self, path):
        return None


def paths(max_size: int = 4):
    """Paths as rules and hostile records write them: absolute or not, with ``.``, ``..`` and empty names."""
    return st.lists(st.sampled_from(NAMES + (".", "..", "")), min_size=0, max_size=max_size).map("/".join).flatmap(
        lambda tail: st.sampled_from(["/" + tail, tail, "/" + tail + "/"]))


def entries():
    kinds = st.one_of(
        st.builds(lambda names: {"type": "dir", "names": names}, st.lists(st.sampled_from(NAMES), unique=True)),
        st.just({"type": "dir"}),
        st.just({"type": "dir", "list_error": "permission denied"}),
        st.builds(lambda text: {"type": "file", "text": text, "cap": 100}, st.sampled_from(TEXTS)),
        st.builds(lambda text: {"type": "dir", "text": text}, st.sampled_from(TEXTS)),
        st.just({"type": "file", "base64": "eHk="}),
        st.just({"type": "file", "base64": "not base64!"}),
        st.just({"type": "file", "read_error": "permission denied"}),
        st.just({"type": "file", "read_error": "too large: over the 64-byte cap", "cap": 64}),
        st.just({"type": "file", "mode": 0o644, "uid": 0, "gid": 0}),
        st.just({"type": "file"}),
        st.builds(lambda target: {"type": "link", "target": target}, paths(5)),
        st.just({"type": "link", "link_error": "permission denied"}),
        st.just({"type": "other"}),
        st.just({"type": "missing"}),
        st.just({"type": "error", "reason": "permission denied"}),
    )
    keys = st.lists(st.sampled_from(NAMES), min_size=1, max_size=3).map(lambda names: "/" + "/".join(names))
    return st.dictionaries(st.one_of(keys, st.just("/")), kinds, max_size=14)


def answers(host, asked):
    """Everything a rule can learn of each path, in the order asked, and what the host noted."""
    got = []
    for path in asked:
        got.append((path, host.read_bytes(path, cap=80), host.is_dir(path), host.listdir(path), host.stat(path),
                    host.initramfs(path).reason, host.lists(path, "a"), host.read(path), host.read(path, cap=2),
                    host.read(path, cap=3), host.read(path, lenient=True)))
    return got, sorted(host.uncollected)


def snapshot(records) -> dict:
    return {"entries": records, "hostname": "h", "collected_at": "2026-11-25T06:30:50+00:00",
            "kernel_log": {"source": "dmesg", "text": ""}}


@settings(max_examples=600, deadline=None)
@given(records=entries(), data=st.data())
def test_every_read_answers_as_the_walk_alone_does(records, data):
    recorded = st.sampled_from(sorted(records)) if records else paths()
    asked = data.draw(st.lists(st.one_of(paths(), recorded), min_size=1, max_size=12))
    quick, walked = SnapshotHost(snapshot(records)), WalkOnly(snapshot(records))
    assert answers(quick, asked) == answers(walked, asked)


def test_the_lookup_answers_most_reads_of_a_device_tree():
    """The look-up is taken where it can be (else the test above compares the walk with itself)."""
    records = {"/sys": {"type": "dir"}, "/sys/bus": {"type": "dir"}, "/sys/devices": {"type": "dir"},
               "/sys/bus/dev": {"type": "link", "target": "../devices/d0"}, "/sys/devices/d0": {"type": "dir"},
               "/sys/devices/d0/vendor": {"type": "file", "text": "0x10de\n", "cap": 100}}
    host, taken = SnapshotHost(snapshot(records)), []
    look_up = host._plain_entry
    host._plain_entry = lambda path: taken.append(look_up(path)) or taken[-1]
    assert host.read("/sys/bus/dev/vendor").text == "0x10de\n"
    assert host.read("/sys/bus/dev/vendor").text == "0x10de\n"
    assert taken == [records["/sys/devices/d0/vendor"]] * 2


def test_a_record_below_the_depth_limit_is_refused_as_the_walk_refuses_it():
    """A directory exactly :data:`MAX_DEPTH` down can be walked; a name in it is one too deep."""
    records = {"/" + "/".join(["d"] * depth): {"type": "dir"} for depth in range(1, MAX_DEPTH + 1)}
    deepest = "/" + "/".join(["d"] * MAX_DEPTH)
    records[deepest + "/f"] = {"type": "file", "text": "too deep\n", "cap": 100}
    records[deepest[:-2] + "/f"] = {"type": "file", "text": "deep\n", "cap": 100}
    for host in (SnapshotHost(snapshot(records)), WalkOnly(snapshot(records))):
        assert host.read(deepest + "/f").reason == TOO_DEEP
        assert host.read(deepest[:-2] + "/f").text == "deep\n"
        assert host.is_dir(deepest) and not host.is_dir(deepest + "/f")


def where(host, asked):
    """Where each path leads and whether it exists, in the order asked, and what the host noted."""
    return [(path, host.resolve(path), host.exists(path)) for path in asked], sorted(host.uncollected)


@settings(max_examples=400, deadline=None)
@given(records=entries(), data=st.data())
def test_every_path_resolves_as_the_walk_alone_resolves_it(records, data):
    asked = data.draw(st.lists(st.one_of(paths(), st.sampled_from(sorted(records)) if records else paths()),
                               min_size=1, max_size=12))
    # where each path leads first, then every read after those look-ups
    seen = [(where(host, asked), answers(host, asked)) for host in (SnapshotHost(snapshot(records)),
                                                                     WalkOnly(snapshot(records)))]
    assert seen[0] == seen[1]


def test_a_name_the_walk_fails_at_is_answered_without_it():
    """An unlisted name, a name recorded missing or failed, under a walked directory: the look-up's
    answer, the walk's reason (else the tests above compare the walk with itself)."""
    records = {"/sys": {"type": "dir", "names": ["g", "l"]}, "/sys/g": {"type": "dir", "names": ["type"]},
               "/sys/g/type": {"type": "file", "text": "DMA\n", "cap": 100}, "/sys/g/gone": {"type": "missing"},
               "/sys/g/no": {"type": "error", "reason": "permission denied"},
               "/sys/l": {"type": "link", "target": "g"}}
    host = SnapshotHost(snapshot(records))
    host.read("/sys/g/type")  # walks /sys/g once
    walked = host._resolve
    host._resolve = lambda *args: (_ for _ in ()).throw(AssertionError("walked"))
    assert [host.read(f"/sys/g/{name}").reason for name in ("name", "gone", "no")] == [
        "missing", "missing", "permission denied"]
    assert [host.resolve(f"/sys/g/{name}").reason for name in ("name", "gone", "no")] == [
        "missing", "missing", "permission denied"]
    assert host.resolve("/sys/g/type").text == "/sys/g/type" and not host.exists("/sys/g/name")
    assert host.listdir("/sys/g/name").reason == "missing" and host.stat("/sys/g/no").reason == "permission denied"
    host._resolve = walked
    assert host.resolve("/sys/l/type").text == "/sys/g/type"  # a link on the way: the walked directory, the name
    assert host.uncollected == set()
