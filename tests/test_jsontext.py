"""The report's JSON writer gives the very text of ``json.dumps(doc, indent=2, ensure_ascii=False)``."""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from reports.jsontext import dumps

SCALARS = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=6))
KEYS = st.one_of(st.text(max_size=4), st.integers(-3, 3), st.booleans(), st.none())
DOCS = st.recursive(SCALARS, lambda inner: st.one_of(
    st.lists(inner, max_size=10), st.dictionaries(KEYS, inner, max_size=6),
    st.lists(st.text(max_size=3), min_size=8, max_size=12).map(lambda shared: [shared, {"again": shared}, shared])),
    max_leaves=40)


def standard(doc):
    try:
        return json.dumps(doc, indent=2, ensure_ascii=False)
    except (TypeError, ValueError) as exc:
        return type(exc)


def ours(doc):
    try:
        return dumps(doc)
    except (TypeError, ValueError) as exc:
        return type(exc)


@settings(max_examples=800, deadline=None)
@given(DOCS)
def test_the_text_is_the_standard_librarys(doc):
    assert ours(doc) == standard(doc)


def test_a_list_shared_by_many_findings_is_written_each_time_it_appears():
    shared = [f"0000:11:{n:02x}.0" for n in range(20)]
    doc = {"findings": [{"ids": shared, "n": n} for n in range(5)], "tuple": ("a", 1), "nan": float("nan")}
    assert dumps(doc) == json.dumps(doc, indent=2, ensure_ascii=False)


def test_a_cycle_is_refused_as_the_standard_library_refuses_it():
    loop = []
    loop.append(loop)
    assert ours({"x": loop}) == standard({"x": loop}) == ValueError
