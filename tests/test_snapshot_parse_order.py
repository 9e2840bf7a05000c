"""A snapshot is accepted, or refused with its one-line message, exactly as every check in turn says.

parse_snapshot takes a short way for sound snapshots (a fleet parses a thousand of them); these
tests hold it to a plain reference: decode, nesting, format, version, entry count, then the whole
schema by jsonschema alone, the first fault's message winning. Documents are a valid snapshot
with hypothesis's changes: wrong types, values nested past the limit anywhere (the envelope, an
entry, a name list), entries that break the schema, too many entries.
"""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from scanner.host import snapshot as snapshot_module
from scanner.host.snapshot import MAX_NESTING, TOO_DEEP, SnapshotError, parse_snapshot
from scanner.base.schemas import schema_validator

BASE = {
    "format": "vfio-scan-snapshot", "snapshot_version": "1.0", "collector": {"version": "1.0", "python": "3.11"},
    "collected_at": "2026-11-25T06:30:50+00:00", "source": "root", "root": "/tree", "hostname": "h",
    "machine": None, "kernel_release": None, "kernel_log": {"source": "dmesg", "text": ""}, "notes": [],
    "entries": {"/": {"type": "dir", "names": ["sys"]}, "/sys": {"type": "link", "target": "x"},
                "/proc/cmdline": {"type": "file", "text": "ro", "cap": 4096}},
}


def depth(value) -> int:
    if isinstance(value, dict):
        return 1 + max(map(depth, value.values()), default=0)
    if isinstance(value, list):
        return 1 + max(map(depth, value), default=0)
    return 0


def shorten(text: str, limit: int = 300) -> str:
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"


def reference(text: str, where: str) -> dict:
    """Every check in turn, the whole schema by jsonschema: what parse_snapshot must answer."""
    try:
        document = json.loads(text)
    except RecursionError:
        raise SnapshotError(f"{where}: {TOO_DEEP}") from None
    except ValueError as exc:
        raise SnapshotError(f"{where}: not valid JSON: {exc}") from None
    if depth(document) > MAX_NESTING:
        raise SnapshotError(f"{where}: {TOO_DEEP}")
    if not isinstance(document, dict) or document.get("format") != "vfio-scan-snapshot":
        raise SnapshotError(f"{where}: not a vfio-scan snapshot (no \"format\": \"vfio-scan-snapshot\")")
    version = str(document.get("snapshot_version", ""))
    if not version.startswith("1."):
        raise SnapshotError(f"{where}: snapshot_version {version or '?'} is not one this vfio-scan reads (1.x)")
    entries = document.get("entries")
    if isinstance(entries, dict) and len(entries) > snapshot_module.MAX_ENTRIES:
        raise SnapshotError(f"{where}: {len(entries)} entries, more than a collector records "
                            f"({snapshot_module.MAX_ENTRIES})")
    errors = list(schema_validator("snapshot").iter_errors(document))
    if errors:
        error = min(errors, key=lambda e: list(map(str, e.absolute_path)))
        at = "/" + "/".join(str(p) for p in error.absolute_path)
        raise SnapshotError(f"{where}: does not match schemas/snapshot.schema.json at {shorten(at)}: "
                            f"{shorten(error.message)}")
    return document


def answer(parse, text: str):
    try:
        return ("accepted", parse(text, "s.json"))
    except SnapshotError as exc:
        return ("refused", str(exc))


def nested(levels: int, inner, kinds: str):
    """``inner`` inside ``levels`` arrays or objects (``kinds``: which, level by level, cycled)."""
    for n in range(levels):
        inner = [inner] if kinds[n % len(kinds)] == "a" else {"k": inner}
    return inner


SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-2, 5000), st.floats(allow_nan=False, allow_infinity=False),
                    st.sampled_from(["", "1.0", "1.7", "2.0", "vfio-scan-snapshot", "file", "dir", "link", "/x"]))
VALUES = st.one_of(
    SCALARS,
    st.builds(nested, st.integers(1, MAX_NESTING + 3), SCALARS, st.sampled_from(["a", "o", "ao", "oa"])),
    st.lists(SCALARS, max_size=3), st.dictionaries(st.sampled_from(["type", "text", "names", "x"]), SCALARS, max_size=3),
)
TOP_KEYS = st.sampled_from(sorted(BASE) + ["extra"])
ENTRY_KEYS = st.sampled_from(["/", "/sys", "/proc/cmdline", "/new", "relative"])
FIELD_KEYS = st.sampled_from(["type", "text", "names", "target", "cap", "reason", "mode", "extra"])
CHANGES = st.lists(st.one_of(
    st.tuples(st.just("top"), TOP_KEYS, VALUES),
    st.tuples(st.just("entry"), ENTRY_KEYS, VALUES),
    st.tuples(st.just("field"), st.tuples(ENTRY_KEYS, FIELD_KEYS), VALUES),
    st.tuples(st.just("drop"), TOP_KEYS, st.none()),
), max_size=4)


def changed(changes) -> dict:
    document = json.loads(json.dumps(BASE))
    for kind, key, value in changes:
        entries = document.get("entries")
        if kind == "top":
            document[key] = value
        elif kind == "drop":
            document.pop(key, None)
        elif isinstance(entries, dict) and kind == "entry":
            entries[key] = value
        elif isinstance(entries, dict) and isinstance(entries.get(key[0]), dict):
            entries[key[0]][key[1]] = value
    return document


@settings(max_examples=1500, deadline=None)
@given(CHANGES)
def test_a_changed_snapshot_gets_the_answer_of_every_check_in_turn(changes):
    text = json.dumps(changed(changes))
    assert answer(parse_snapshot, text) == answer(reference, text)


@pytest.mark.parametrize("where", ["envelope", "entry", "names"])
def test_one_level_past_the_limit_is_refused_wherever_it_is(where):
    """The deepest a snapshot may go, then one deeper: in the envelope, inside an entry, in a name list."""
    for levels, refused in ((MAX_NESTING - 4, False), (MAX_NESTING - 3, True)):
        document = json.loads(json.dumps(BASE))
        if where == "envelope":  # the document, "collector" and three levels of its own: then the value
            document["collector"]["x"] = nested(levels + 2, 1, "a")
        elif where == "entry":
            document["entries"]["/sys"]["x"] = nested(levels + 1, 1, "o")
        else:
            document["entries"]["/"]["names"] = [nested(levels, "x", "a")]
        got = answer(parse_snapshot, json.dumps(document))
        assert got == answer(reference, json.dumps(document))
        assert (got == ("refused", f"s.json: {TOO_DEEP}")) is refused


def test_too_many_sound_entries_are_refused_by_count(monkeypatch):
    monkeypatch.setattr(snapshot_module, "MAX_ENTRIES", 2)
    text = json.dumps(BASE)
    assert answer(parse_snapshot, text) == ("refused", "s.json: 3 entries, more than a collector records (2)")


def test_a_hostile_version_nested_deep_is_refused_as_too_deep_not_by_recursion():
    text = json.dumps(dict(BASE, snapshot_version=nested(900, "1.0", "a")))
    assert answer(parse_snapshot, text) == ("refused", f"s.json: {TOO_DEEP}")


def test_a_sound_snapshot_is_read_without_loading_jsonschema():
    """Importing jsonschema is about half of a one-snapshot scan, and is paid again in every worker of a
    fleet audit: a sound snapshot is checked without it, and a faulty one still gets the schema's message."""
    import subprocess
    import sys

    program = (
        "import json, sys\n"
        "from scanner.host.snapshot import SnapshotError, parse_snapshot\n"
        f"base = json.loads({json.dumps(json.dumps(BASE))})\n"
        "parse_snapshot(json.dumps(base), 's.json')\n"
        "print('jsonschema' in sys.modules)\n"
        "try:\n"
        "    parse_snapshot(json.dumps(dict(base, hostname=5)), 's.json')\n"
        "except SnapshotError as exc:\n"
        "    print(exc)\n"
        "print('jsonschema' in sys.modules)\n"
    )
    done = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, check=True)
    assert done.stdout.splitlines() == [
        "False",
        "s.json: does not match schemas/snapshot.schema.json at /hostname: 5 is not of type 'string'",
        "True",
    ]
