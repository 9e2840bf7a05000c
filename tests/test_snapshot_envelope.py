"""The plain-Python check of a snapshot's envelope (scanner/host/snapshot_envelope.py) accepts only
what the snapshot schema accepts, and accepts the collector's own envelopes (else the schema
alone would be checking them, and the tests below would hold nothing)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from scanner.base.schemas import schema_validator
from scanner.host.snapshot import SnapshotHost, parse_snapshot
from scanner.host.snapshot_envelope import envelope_is_plainly_valid

COLLECTED = {"format": "vfio-scan-snapshot", "snapshot_version": "1.1",
             "collector": {"version": "1.0", "python": "3.11.7"}, "collected_at": "2026-12-05T03:21:06+00:00",
             "duration_s": 0.037, "source": "root", "root": "/srv/trees/server-10", "hostname": "node-0001",
             "machine": None, "kernel_release": "6.1.0-56-amd64",
             "kernel_log": {"source": "var/log/dmesg", "text": "[    0.000000] Linux version 6.1.0\n"},
             "notes": [], "entries": {}}
LIVE = dict(COLLECTED, source="live", machine="x86_64", collected_at="2026-12-05T03:21:06.5Z", duration_s=2,
            kernel_log={"source": "dmesg", "reason": "permission denied"}, notes=["entry limit reached"],
            kernel_release=None)
VALUES = st.one_of(
    st.sampled_from(["", "1.1", "1.1\n", "1.x", "2.0", "live", "root", "vfio-scan-snapshot", "2026-12-05T03:21:06Z",
                     "2026-12-05T03:21:06Z\n", "2026-12-05 03:21:06", "dmesg", "text", "reason", "source"]),
    st.integers(min_value=-2, max_value=2), st.floats(), st.booleans(), st.none(),
    st.lists(st.one_of(st.text(max_size=2), st.integers()), max_size=2),
    st.dictionaries(st.sampled_from(["version", "python", "source", "text", "reason", "x"]),
                    st.one_of(st.text(max_size=2), st.integers(), st.none()), max_size=3),
)


def changed(base: dict):
    """``base`` with keys (its own, one level down too, or new ones) set to any value, or dropped."""
    keys = sorted(base) + ["extra", "collector.version", "collector.python", "collector.x", "kernel_log.text",
                           "kernel_log.reason", "kernel_log.source", "kernel_log.x"]

    def apply(changes):
        document = {key: dict(value) if isinstance(value, dict) else value for key, value in base.items()}
        for key, value, drop in changes:
            outer, _, inner = key.partition(".")
            where, name = (document.get(outer), inner) if inner else (document, outer)
            if not isinstance(where, dict):
                continue
            if drop:
                where.pop(name, None)
            else:
                where[name] = value
        return document

    return st.lists(st.tuples(st.sampled_from(keys), VALUES, st.booleans()), max_size=3).map(apply)


def schema_says(document) -> bool:
    return schema_validator("snapshot").is_valid(document)


@settings(max_examples=1500, deadline=None)
@given(st.one_of(changed(COLLECTED), changed(LIVE)))
def test_what_the_plain_check_accepts_the_schema_accepts(document):
    if envelope_is_plainly_valid(document, schema_validator("snapshot").schema):
        assert schema_says(document)


def test_the_collectors_envelopes_are_accepted_plainly():
    schema = schema_validator("snapshot").schema
    for document in (COLLECTED, LIVE, dict(COLLECTED, duration_s=0), {k: v for k, v in COLLECTED.items()
                                                                      if k != "duration_s"}):
        assert schema_says(document) and envelope_is_plainly_valid(document, schema)


def test_a_snapshot_whose_envelope_the_plain_check_refuses_still_gets_the_schemas_word():
    """Valid yet of another shape (a subclass of str, an extra collector key): read all the same."""

    class Name(str):
        pass

    document = dict(COLLECTED, hostname=Name("odd"), collector={"version": "1.0", "python": "3", "os": "x"})
    assert not envelope_is_plainly_valid(document, schema_validator("snapshot").schema)
    assert SnapshotHost(parse_snapshot_document(document)).hostname() == "odd"


def parse_snapshot_document(document):
    import json

    text = json.dumps(document)
    return parse_snapshot(text, "odd.json")
