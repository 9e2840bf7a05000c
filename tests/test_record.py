"""A record behaves as the dataclass of the same class body: the standard library is the reference.

For many class bodies (required fields, defaults, default factories, ``init``/``repr``/``compare``
off, frozen or not, a base record) the same body is made once by ``dataclasses.dataclass`` and once
by :func:`scanner.base.record.record`, then both are held to the same constructor, repr, equality,
hash, frozen refusals and ``replace``.
"""

from __future__ import annotations

import dataclasses
import pickle

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from scanner.base import record as rec

values = st.none() | st.integers(-3, 3) | st.text(max_size=3) | st.tuples(st.integers(0, 2))
FACTORIES = (list, dict, tuple, frozenset)


@st.composite
def specs(draw):
    """(fields, frozen): each field (name, kind, value, init, repr, compare); kind: required, default, factory."""
    count = draw(st.integers(0, 5))
    out, defaulted = [], False
    for i in range(count):
        kind = draw(st.sampled_from(["required", "default", "factory"] if not defaulted else ["default", "factory"]))
        init = draw(st.booleans()) if kind != "required" else True
        defaulted = defaulted or (kind != "required" and init)
        value = draw(values) if kind == "default" else draw(st.sampled_from(FACTORIES))
        out.append((f"f{i}", kind, value, init, draw(st.booleans()), draw(st.booleans())))
    return out, draw(st.booleans())


def build(make, spec, frozen, base=None):
    namespace = {"__annotations__": {}}
    for name, kind, value, init, shown, compared in spec:
        namespace["__annotations__"][name] = "object"
        if kind == "default":
            namespace[name] = make.field(default=value, init=init, repr=shown, compare=compared)
        elif kind == "factory":
            namespace[name] = make.field(default_factory=value, init=init, repr=shown, compare=compared)
        elif not (shown and compared):
            namespace[name] = make.field(repr=shown, compare=compared)
    cls = type("Thing", (base,) if base else (), namespace)
    return (make.dataclass if make is dataclasses else make.record)(frozen=frozen)(cls)


def arguments(spec, draw_values):
    return {name: draw_values[i] for i, (name, kind, value, init, *_rest) in enumerate(spec) if init}


def outcome(call):
    """What a call gives: its value's repr, or its exception's type and message."""
    try:
        return ("ok", repr(call()))
    except Exception as exc:  # noqa: BLE001 - the exception is what is compared
        return (type(exc), str(exc))


@settings(max_examples=300, deadline=None)
@given(spec=specs(), data=st.data())
def test_a_record_is_the_dataclass_of_the_same_body(spec, data):
    fields, frozen = spec
    reference, made = build(dataclasses, fields, frozen), build(rec, fields, frozen)
    first = [data.draw(values) for _ in fields]
    second = [data.draw(st.sampled_from([a, data.draw(values)])) for a in first]
    a_ref, a_rec = reference(**arguments(fields, first)), made(**arguments(fields, first))
    b_ref, b_rec = reference(**arguments(fields, second)), made(**arguments(fields, second))
    assert repr(a_rec) == repr(a_ref) and repr(b_rec) == repr(b_ref)
    assert (a_rec == b_rec) == (a_ref == b_ref)
    assert (a_rec == a_ref) is False and a_rec.__eq__(a_ref) is NotImplemented
    assert outcome(lambda: hash(a_rec)) == outcome(lambda: hash(a_ref))
    for name, *_rest in fields:
        assert getattr(a_rec, name) == getattr(a_ref, name)
    assert [f.name for f in rec.fields(made)] == [f.name for f in dataclasses.fields(reference)]
    assert getattr(made, "__match_args__", None) == getattr(reference, "__match_args__", None)
    # frozen: both refuse (the same exception and message) or both accept
    assert outcome(lambda: setattr(a_rec, "f0", 1)) == outcome(lambda: setattr(a_ref, "f0", 1))
    assert outcome(lambda: setattr(a_rec, "other", 1)) == outcome(lambda: setattr(a_ref, "other", 1))
    assert outcome(lambda: delattr(b_rec, "other")) == outcome(lambda: delattr(b_ref, "other"))
    # replace: the same copy, or the same refusal
    changes = {name: 7 for name, *_rest in fields[:2]}
    assert outcome(lambda: rec.replace(b_rec, **changes)) == outcome(lambda: dataclasses.replace(b_ref, **changes))
    # the constructor refuses what the dataclass's refuses, with the same words
    too_many = range(len(fields) + 1)
    assert outcome(lambda: made(*too_many)) == outcome(lambda: reference(*too_many))
    assert outcome(lambda: made()) == outcome(lambda: reference())


def test_defaults_and_factories_are_fresh_per_instance_and_on_the_class_as_on_a_dataclass():
    @rec.record
    class Bag:
        name: str
        items: list = rec.field(default_factory=list)
        size: int = 3
        hidden: dict = rec.field(default_factory=dict, init=False, repr=False, compare=False)

    one, two = Bag("a"), Bag("a")
    one.items.append(1)
    assert two.items == [] and one.hidden is not two.hidden and one != two
    assert Bag.size == 3 and not hasattr(Bag, "items") and Bag.__hash__ is None
    assert repr(Bag("b", [2])).endswith(".Bag(name='b', items=[2], size=3)")


def test_post_init_own_methods_base_fields_and_recursion():
    calls = []

    @rec.record(frozen=True)
    class Base:
        a: int

        def __post_init__(self):
            calls.append(self.a)

    @rec.record(frozen=True)
    class Child(Base):
        b: int = 2

        def __repr__(self):
            return "own"

    assert repr(Child(1)) == "own" and Child(1) == Child(1, 2) and calls == [1, 1, 1]
    assert [f.name for f in rec.fields(Child)] == ["a", "b"]
    with pytest.raises(dataclasses.FrozenInstanceError, match="cannot assign to field 'a'"):
        Child(1).a = 3

    @rec.record
    class Node:
        children: list

    node = Node([])
    node.children.append(node)
    assert repr(node).endswith(".Node(children=[...])")


def test_replace_hands_a_dataclass_to_dataclasses():
    @dataclasses.dataclass(frozen=True)
    class Plain:
        a: int
        b: int = 0

    assert rec.replace(Plain(1), b=5) == Plain(1, 5)


def test_records_pickle_and_copy_as_plain_objects():
    got = pickle.loads(pickle.dumps(Point(1, 2)))
    assert got == Point(1, 2) and got is not Point(1, 2)


@rec.record(frozen=True)
class Point:
    x: int
    y: int = 0


def test_the_constructor_is_compiled_at_the_first_instance_and_kept():
    """A class a run never instantiates costs no compile; once it has been, its instances are made by
    the compiled constructor itself, not through a stand-in."""
    @rec.record(frozen=True)
    class Pair:
        left: int
        right: int = 2

    assert Pair.__init__.__code__.co_varnames[:3] == ("self", "args", "kwargs")
    assert Pair(1) == Pair(1, 2) and Pair(left=3).right == 2
    assert Pair.__init__.__code__.co_varnames[:3] == ("self", "left", "right")
    assert Pair.__init__.__qualname__.endswith("Pair.__init__")


def made_by(make, kind):
    """A frozen class of fields ``x`` and ``y`` made by ``make`` (dataclasses or records), then one of
    ``kind``: itself, a subclass that puts a property or a slot where a field goes, one with slots."""
    decorate = make.dataclass(frozen=True) if make is dataclasses else make.record(frozen=True)
    if kind == "slots":
        return decorate(type("Slotted", (), {"__slots__": ("x", "y"), "__annotations__": {"x": int, "y": int}}))
    if kind == "inherited":  # a base class's property where the record's field goes
        shown = type("Shown", (), {"x": property(lambda self: 7)})
        return decorate(type("OverShown", (shown,), {"__annotations__": {"x": int, "y": int}, "y": 5}))
    base = decorate(type("Plain", (), {"__annotations__": {"x": int, "y": int}, "y": 5}))
    if kind == "property":
        return type("Shown", (base,), {"x": property(lambda self: 7)})
    if kind == "settable":
        return type("Kept", (base,), {"x": property(lambda self: self.kept, lambda self, v: object.__setattr__(
            self, "kept", v * 2))})
    if kind == "subclass":
        return type("Sub", (base,), {})
    return base


def outcome_of(cls):
    try:
        made = cls(1)
    except Exception as exc:
        return type(exc).__name__
    return made.x, made.y, sorted(getattr(made, "__dict__", {}).items())


@pytest.mark.parametrize("kind", ["plain", "subclass", "property", "settable", "inherited"])
def test_a_frozen_record_is_filled_in_as_a_frozen_dataclass_is(kind):
    """Through a property's setter or straight into the instance's dictionary: where
    object.__setattr__ would put each field, and the same refusal where it refuses."""
    assert outcome_of(made_by(rec, kind)) == outcome_of(made_by(dataclasses, kind))
    assert outcome_of(made_by(rec, "settable")) == (2, 5, [("kept", 2), ("y", 5)])
