"""scanner/base/cached.py's ``cached_property`` answers as ``functools.cached_property`` does: the
value made once and kept in the instance, the descriptor itself on the class, an exception kept
nowhere, and the same errors for a class without ``__dict__`` or one name given twice."""

from __future__ import annotations

import functools

import pytest

from scanner.base.cached import cached_property
from scanner.facts import Facts
from scanner.facts.pci_devices import PciFields


def made_with(decorator):
    class Thing:
        def __init__(self):
            self.calls = 0

        @decorator
        def value(self):
            """The value's own words."""
            self.calls += 1
            if self.calls == 1:
                raise ValueError("not yet")
            return [self.calls]

    return Thing


def behaviour(decorator):
    cls = made_with(decorator)
    thing = cls()
    with pytest.raises(ValueError, match="not yet"):
        thing.value
    first, again = thing.value, thing.value
    seen = [thing.calls, first, again is first, "value" in vars(thing), cls.value.__doc__, cls.value.attrname,
            isinstance(cls.value, functools.cached_property)]
    del thing.value  # dropped from the instance: made again on the next look-up
    seen += [thing.value, thing.calls]
    thing.value = "set"
    seen.append(thing.value)
    return seen


def test_it_makes_keeps_and_forgets_as_functools_does():
    assert behaviour(cached_property) == behaviour(functools.cached_property)
    assert behaviour(cached_property)[:3] == [2, [2], True]


def errors(decorator):
    class Slotted:
        __slots__ = ()

        @decorator
        def value(self):
            return 1

    said = []
    try:
        Slotted().value
    except TypeError as exc:
        said.append(str(exc))
    shared = decorator(lambda self: 1)
    try:
        type("Twice", (), {"a": shared, "b": shared})
    except (TypeError, RuntimeError) as exc:  # 3.11 wraps an error of __set_name__ in a RuntimeError
        said.append(str(exc.__cause__ or exc))
    loose = decorator(lambda self: 1)
    try:
        loose.__get__(object())
    except TypeError as exc:
        said.append(str(exc))
    return said


def test_it_refuses_as_functools_does():
    said = errors(cached_property)
    assert said == errors(functools.cached_property) and len(said) == 3


def test_the_facts_read_on_first_use_are_kept_without_a_lock():
    """What a fleet's scan asks of every host and device is made by this descriptor (else the tests
    above hold a class nothing uses)."""
    assert type(vars(Facts)["pci"]) is cached_property
    assert {type(vars(PciFields)[name]) for name in ("vendor", "device", "pci_class")} == {cached_property}
