"""The plain-Python check of snapshot entries says exactly what the snapshot schema says.

Snapshots are validated entry by entry in Python (scanner/host/snapshot_entries.py) because
jsonschema is too slow for fleets of them; these tests hold the two to the same verdict on every
entry hypothesis can think of, and check that a broken snapshot still gets the schema's message.
"""

from __future__ import annotations

import json

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from scanner.host.snapshot import SnapshotError, parse_snapshot
from scanner.host.snapshot_entries import KEYS, entries_are_valid, entry_is_valid
from scanner.base.schemas import schema_validator

ENTRY_SCHEMA = {"$ref": "#/$defs/entry"}
VALUES = st.one_of(
    st.sampled_from(["file", "dir", "link", "other", "missing", "error", "permission denied", ""]),
    st.integers(min_value=-3, max_value=1 << 40), st.floats(allow_nan=False, allow_infinity=False),
    st.booleans(), st.none(), st.lists(st.sampled_from(["a", "b"]), max_size=3),
    st.lists(st.one_of(st.integers(), st.text(max_size=2)), max_size=3), st.dictionaries(st.text(max_size=2), st.integers(), max_size=2),
)
ENTRIES = st.dictionaries(st.sampled_from(sorted(KEYS) + ["extra"]), VALUES, max_size=5)


def schema_says(entry) -> bool:
    snapshot_schema = schema_validator("snapshot").schema
    validator = schema_validator("snapshot").evolve(schema={**ENTRY_SCHEMA, "$defs": snapshot_schema["$defs"]})
    return validator.is_valid(entry)


@settings(max_examples=1500, deadline=None)
@given(ENTRIES)
def test_an_entry_is_valid_exactly_when_the_schema_says_so(entry):
    assert entry_is_valid(entry) == schema_says(entry)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.one_of(st.sampled_from(["/proc", "/sys/bus", "proc", ""]), st.text(max_size=3)),
                       st.sampled_from([{"type": "dir", "names": []}, {"type": "file", "text": "x"}]), max_size=3))
def test_entry_paths_must_be_absolute_as_the_schema_says(entries):
    document_schema = schema_validator("snapshot").schema
    validator = schema_validator("snapshot").evolve(
        schema={"$defs": document_schema["$defs"], **document_schema["properties"]["entries"]})
    assert entries_are_valid(entries) == validator.is_valid(entries)


#: The shapes nearly every entry of a real snapshot has, checked inline by entries_are_valid: each
#: key kept or swapped for any value, one dropped or one added, so that every inline test is crossed.
COMMON_SHAPES = ({"type": "file", "text": "x", "cap": 4096}, {"type": "link", "target": "../x"},
                 {"type": "dir", "names": ["a"]}, {"type": "file"}, {"type": "missing"})


def near_common(shape: dict):
    values = st.fixed_dictionaries({key: st.one_of(st.just(value), VALUES) for key, value in shape.items()})
    return st.one_of(values, values.flatmap(lambda entry: st.sampled_from(sorted(entry)).map(
        lambda key: {k: v for k, v in entry.items() if k != key})),
        st.tuples(values, st.sampled_from(sorted(KEYS) + ["extra"]), VALUES).map(lambda t: {**t[0], t[1]: t[2]}))


@settings(max_examples=1500, deadline=None)
@given(st.one_of(*map(near_common, COMMON_SHAPES)), st.lists(st.sampled_from(COMMON_SHAPES), max_size=3))
@example({"type": "file", "text": "x", "cap": -1}, []).via("a negative cap")
@example({"type": "file", "text": "x", "cap": True}, []).via("a boolean is no integer")
@example({"type": "file", "text": "x", "cap": 4.0}, []).via("a float without fraction is one")
@example({"type": "file", "text": "x", "cap": 4.5}, []).via("one with a fraction is not")
@example({"type": "dir", "names": ["a", 1]}, []).via("a name that is no string")
@example({"type": "link", "target": 5}, []).via("a target that is no string")
@example({"type": "error"}, []).via("an error without its reason")
@example({"type": "link"}, []).via("a link with neither target nor error")
def test_entries_near_the_common_shapes_are_valid_exactly_when_the_schema_says_so(entry, valid):
    entries = {f"/valid{n}": dict(shape) for n, shape in enumerate(valid)}
    entries["/e"] = entry
    assert entries_are_valid(entries) == schema_says(entry)


def snapshot(entries) -> str:
    return json.dumps({
        "format": "vfio-scan-snapshot", "snapshot_version": "1.0", "collector": {"version": "1.0", "python": "3.11"},
        "collected_at": "2026-11-25T06:30:50+00:00", "source": "root", "root": "/tree", "hostname": "h",
        "machine": None, "kernel_release": None, "kernel_log": {"source": "dmesg", "text": ""}, "notes": [],
        "entries": entries,
    })


def test_a_valid_snapshot_parses():
    assert parse_snapshot(snapshot({"/": {"type": "dir", "names": []}}), "s.json")["hostname"] == "h"


@pytest.mark.parametrize("entries, at, words", [
    ({"/proc/cmdline": {"type": "file", "text": 1}}, "/entries//proc/cmdline/text", "is not of type 'string'"),
    ({"/x": {"type": "link"}}, "/entries//x", "is not valid under any of the given schemas"),
    ({"/x": {"type": "dir", "names": [], "list_error": "denied"}}, "/entries//x", "should not be valid"),
])
def test_a_broken_entry_gets_the_schemas_own_message(entries, at, words):
    with pytest.raises(SnapshotError) as caught:
        parse_snapshot(snapshot(entries), "s.json")
    message = str(caught.value)
    assert message.startswith(f"s.json: does not match schemas/snapshot.schema.json at {at}: ")
    assert words in message


def test_a_broken_envelope_is_still_caught_beside_valid_entries():
    text = snapshot({"/": {"type": "dir", "names": []}}).replace('"hostname": "h"', '"hostname": 7')
    with pytest.raises(SnapshotError, match=r"s\.json: .* at /hostname: 7 is not of type 'string'"):
        parse_snapshot(text, "s.json")
