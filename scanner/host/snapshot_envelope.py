"""The snapshot schema's envelope (everything but ``entries``) checked in plain Python, where it is sure.

Why: jsonschema spends about a tenth of a millisecond on the envelope of each snapshot, a few
percent of a fleet's scan, though nearly every envelope has one shape: the collector's. This
says True only when every rule of ``schemas/snapshot.schema.json`` outside ``entries`` holds,
checked strictly (exact types, the schema's own patterns); anything else -- an odd but valid
envelope included -- is left to jsonschema, whose verdict and message stand. The tests hold
this to the schema: whatever it accepts, the schema accepts.
"""

from __future__ import annotations

import re

#: the ``kernel_log`` object's keys; exactly one of text and reason (the schema's oneOf)
_LOG_KEYS = frozenset(("source", "text", "reason"))
_SCHEMA: list = []


def snapshot_schema() -> dict:
    """The snapshot schema itself, read once per process.

    Why not the validator's copy: importing jsonschema (with referencing and attrs) takes about
    60 ms, half of a one-snapshot scan and as much again in every worker of a fleet audit; only an
    envelope this module does not accept needs the validator.
    """
    if not _SCHEMA:
        from scanner.base.schemas import load_schema

        _SCHEMA.append(load_schema("snapshot"))
    return _SCHEMA[0]


def envelope_is_plainly_valid(document: dict, schema: dict) -> bool:
    """Does the schema surely accept ``document``, a snapshot with its ``entries`` emptied (they are
    checked elsewhere)? ``schema`` is the snapshot schema: its required keys, properties and patterns
    are the ones used."""
    properties = schema["properties"]
    if not (properties.keys() >= document.keys() and document.keys() >= set(schema["required"])):
        return False
    text = str
    version, collector, log, notes = (document["snapshot_version"], document["collector"], document["kernel_log"],
                                      document["notes"])
    collected, duration = document["collected_at"], document.get("duration_s", 0)
    if not (type(document["format"]) is text and document["format"] == properties["format"]["const"]
            and type(version) is text and re.search(properties["snapshot_version"]["pattern"], version)
            and type(collected) is text and re.search(properties["collected_at"]["pattern"], collected)
            and type(document["source"]) is text and document["source"] in properties["source"]["enum"]
            and type(document["root"]) is text and type(document["hostname"]) is text
            and (document["machine"] is None or type(document["machine"]) is text)
            and (document["kernel_release"] is None or type(document["kernel_release"]) is text)
            and type(document["entries"]) is dict and not document["entries"]
            and type(duration) in (int, float) and duration >= 0):
        return False
    if not (type(collector) is dict and type(collector.get("version")) is text
            and type(collector.get("python")) is text):
        return False
    if not (type(log) is dict and _LOG_KEYS.issuperset(log) and type(log.get("source")) is text
            and ("text" in log) != ("reason" in log) and type(log.get("text", log.get("reason"))) is text):
        return False
    return type(notes) is list and all([type(note) is text for note in notes])
