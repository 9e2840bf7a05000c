"""Records: classes of named fields with the constructor, equality, hash and repr a dataclass has.

A scan defines some thirty such classes at import (reads, facts, the report), and the standard
library's ``dataclasses`` spends about half a millisecond on each one: it compiles six small
functions and inspects every annotation. That was a fifth of a small scan's run. :func:`record`
makes the same methods for a tenth of that: one constructor, compiled when the class is first
instantiated (so that making an instance costs what it costs on a dataclass, and a class never
instantiated costs no compile), and shared functions for equality, hash and repr.

What a record does is what ``@dataclass`` (``eq=True``, ``frozen`` as asked) does with the same
class body: fields in annotation order after the base records' fields, ``field(default=...,
default_factory=..., init=..., repr=..., compare=...)``, ``__post_init__``, a frozen record's
assignments refused with :class:`dataclasses.FrozenInstanceError`, a mutable record unhashable,
methods the class defines itself kept. :func:`replace` is ``dataclasses.replace`` for records
(and hands a dataclass to it). The plugin API's own classes (scanner/engine/model.py) stay
dataclasses: plugins may use ``dataclasses`` functions on them.
"""

from __future__ import annotations

import sys
from _thread import get_ident

#: dataclasses sets ``__match_args__`` from Python 3.10 on, the first with ``match``
_MATCH_ARGS = sys.version_info >= (3, 10)
#: what ``dataclasses.replace`` raises for a field declared ``init=False`` (TypeError from Python 3.13 on)
_INIT_FALSE_ERROR = TypeError if sys.version_info >= (3, 13) else ValueError
_MISSING = object()
#: the constructor's marker for "use the field's default_factory"
_FACTORY = object()
_FIELDS = "__record_fields__"


class Field:
    """One field of a record, as ``dataclasses.field`` describes it."""

    __slots__ = ("name", "default", "default_factory", "init", "repr", "compare")

    def __init__(self, default=_MISSING, default_factory=_MISSING, init=True, repr=True, compare=True):
        if default is not _MISSING and default_factory is not _MISSING:
            raise ValueError("cannot specify both default and default_factory")
        self.name = None
        self.default, self.default_factory = default, default_factory
        self.init, self.repr, self.compare = init, repr, compare


def field(*, default=_MISSING, default_factory=_MISSING, init=True, repr=True, compare=True) -> Field:
    """``dataclasses.field`` for a record."""
    return Field(default, default_factory, init, repr, compare)


def record(cls=None, *, frozen: bool = False):
    """``@dataclass`` / ``@dataclass(frozen=True)``, made cheaply (see the module docstring)."""
    def wrap(cls):
        return _process(cls, frozen)

    return wrap if cls is None else wrap(cls)


def fields(obj) -> tuple:
    """The record's fields (a class or an instance), in order."""
    return getattr(obj, _FIELDS)


def replace(obj, **changes):
    """A copy of ``obj`` with ``changes``: ``dataclasses.replace``, for a record or a dataclass."""
    own = getattr(type(obj), _FIELDS, None)
    if own is None:
        from dataclasses import replace as dataclass_replace

        return dataclass_replace(obj, **changes)
    for f in own:
        if not f.init:
            if f.name in changes:
                raise _INIT_FALSE_ERROR(f"field {f.name} is declared with init=False, it cannot be specified with replace()")
        elif f.name not in changes:
            changes[f.name] = getattr(obj, f.name)
    return obj.__class__(**changes)


def _process(cls, frozen: bool):
    own = []
    namespace = cls.__dict__
    for name in namespace.get("__annotations__", {}):
        value = namespace.get(name, _MISSING)
        f = value if isinstance(value, Field) else Field(default=value)
        f.name = name
        if isinstance(value, Field):  # the class attribute is the default, as on a dataclass
            if f.default is _MISSING:
                delattr(cls, name)
            else:
                setattr(cls, name, f.default)
        own.append(f)
    inherited = {}
    for base in reversed(cls.__mro__[1:]):
        for f in getattr(base, _FIELDS, ()):
            inherited[f.name] = f
    for f in own:
        inherited.pop(f.name, None)
        inherited[f.name] = f
    all_fields = tuple(inherited.values())
    setattr(cls, _FIELDS, all_fields)
    _keep_own(cls, "__init__", _make_init(cls, all_fields, frozen))
    shown = tuple(f.name for f in all_fields if f.repr)
    compared = tuple(f.name for f in all_fields if f.compare)
    _keep_own(cls, "__repr__", _make_repr(shown))
    _keep_own(cls, "__eq__", _make_eq(compared))
    # A class that defines __eq__ gets __hash__ = None from Python itself: that one is not its own.
    explicit_hash = namespace.get("__hash__", _MISSING) is not _MISSING and not (
        namespace["__hash__"] is None and "__eq__" in namespace)
    if not explicit_hash:
        cls.__hash__ = _make_hash(compared) if frozen else None
    if frozen:
        cls.__setattr__, cls.__delattr__ = _frozen_methods(cls, frozenset(f.name for f in all_fields))
    if "__match_args__" not in namespace and _MATCH_ARGS:
        cls.__match_args__ = tuple(f.name for f in all_fields if f.init)
    return cls


def _keep_own(cls, name: str, method) -> None:
    """Set a made method unless the class defines its own (as dataclasses does)."""
    if name not in cls.__dict__:
        method.__qualname__ = f"{cls.__qualname__}.{method.__name__}"
        setattr(cls, name, method)


def _make_init(cls, all_fields, frozen: bool):
    # One compiled function, the shape dataclasses gives it: a required field is a plain argument,
    # a default is bound at definition, a default_factory is called when the argument is left out.
    # Its source is made (and checked) with the class; it is compiled when first called.
    env = {"_FACTORY": _FACTORY, "_set": object.__setattr__}
    params, lines, seen_default = [], [], False
    for i, f in enumerate(all_fields):
        if f.default_factory is not _MISSING:
            env[f"_factory{i}"] = f.default_factory
            if f.init:
                value = f"_factory{i}() if {f.name} is _FACTORY else {f.name}"
                default = "_FACTORY"
            else:
                value, default = f"_factory{i}()", None
        elif f.init:
            value = f.name
            default = None if f.default is _MISSING else f"_default{i}"
            if default:
                env[default] = f.default
        else:
            continue  # init=False with a plain default: the class attribute answers
        if f.init:
            if default:
                seen_default = True
                params.append(f"{f.name}={default}")
            elif seen_default:
                raise TypeError(f"non-default argument {f.name!r} follows default argument")
            else:
                params.append(f.name)
        lines.append((f.name, value) if frozen else f"self.{f.name} = {value}")
    after = ["self.__post_init__()"] if hasattr(cls, "__post_init__") else []
    head = f"def __init__(self, {', '.join(params)}):\n    "

    def source() -> str:
        if not frozen:
            return head + "\n    ".join(lines + after or ["pass"]) + "\n"
        env["_cls"], env["_type"] = cls, type
        body = [f"_set(self, {name!r}, {value})" for name, value in lines]
        if lines and _fields_live_in_dict(cls, [name for name, _ in lines]):
            # what object.__setattr__ does there, without a call per field (a scan makes thousands of reads)
            body = (["if _type(self) is _cls:", "    _d = self.__dict__"]
                    + [f"    _d[{name!r}] = {value}" for name, value in lines] + ["else:"] + ["    " + b for b in body])
        return head + "\n    ".join(body + after or ["pass"]) + "\n"

    def __init__(self, *args, **kwargs):
        # Compiled on first use, then in place on the class: a run pays no compile for the classes
        # it never instantiates (a scan of an x86 host makes no arm64 fact, for one).
        exec(source(), env)
        made = env["__init__"]
        made.__qualname__ = __init__.__qualname__
        if cls.__dict__.get("__init__") is __init__:
            cls.__init__ = made
        made(self, *args, **kwargs)

    return __init__


def _fields_live_in_dict(cls, names) -> bool:
    """Does ``object.__setattr__(instance, name, value)`` only store into the instance's ``__dict__``, for
    every field? So when the instances have one and no class on the way defines a data descriptor
    (a property, a slot) by that name: a frozen record of exactly this class may then be filled in
    by its ``__dict__``, as a frozen dataclass is by ``object.__setattr__``."""
    if not cls.__dictoffset__:
        return False
    for name in names:
        for base in cls.__mro__:
            if name in base.__dict__:
                kind = type(base.__dict__[name])
                if hasattr(kind, "__set__") or hasattr(kind, "__delete__"):
                    return False
                break
    return True


def _make_repr(names):
    def __repr__(self):
        key = (id(self), get_ident())
        if key in _REPR_RUNNING:  # a record that holds itself: "...", as reprlib.recursive_repr says
            return "..."
        _REPR_RUNNING.add(key)
        try:
            return f"{self.__class__.__qualname__}(" + ", ".join(
                f"{name}={getattr(self, name)!r}" for name in names) + ")"
        finally:
            _REPR_RUNNING.discard(key)

    return __repr__


_REPR_RUNNING = set()


def _make_eq(names):
    def __eq__(self, other):
        if other.__class__ is self.__class__:
            return tuple(getattr(self, name) for name in names) == tuple(getattr(other, name) for name in names)
        return NotImplemented

    return __eq__


def _make_hash(names):
    def __hash__(self):
        return hash(tuple(getattr(self, name) for name in names))

    return __hash__


def _frozen_methods(cls, names):
    def __setattr__(self, name, value):
        if type(self) is cls or name in names:
            from dataclasses import FrozenInstanceError

            raise FrozenInstanceError(f"cannot assign to field {name!r}")
        super(cls, self).__setattr__(name, value)

    def __delattr__(self, name):
        if type(self) is cls or name in names:
            from dataclasses import FrozenInstanceError

            raise FrozenInstanceError(f"cannot delete field {name!r}")
        super(cls, self).__delattr__(name)

    for method in (__setattr__, __delattr__):
        method.__qualname__ = f"{cls.__qualname__}.{method.__name__}"
    return __setattr__, __delattr__
