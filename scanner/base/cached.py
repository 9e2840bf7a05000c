"""``functools.cached_property`` without the lock Python 3.11 and older take on every first use.

Why: a fact is computed on first use and kept (the facts of a host never change); a fleet's scan
makes some 150 such first uses per host (the ids and class of every PCI function, matched against
the targets), and before Python 3.12 each one acquired and released a lock shared by every
instance of the class -- a lock that 3.12 dropped as useless (it serialised every instance, and
kept nothing consistent that one instance needed). This is the 3.12 descriptor: the value made by
the function is stored in the instance's ``__dict__`` under the attribute's name, where the next
look-up finds it without calling anything; an exception stores nothing. It is a subclass, so that
whatever tells a cached fact from a plain attribute by ``isinstance`` still does.
"""

from __future__ import annotations

import functools

_NOT_FOUND = object()


class cached_property(functools.cached_property):  # noqa: N801 (named as the class it stands in for)
    """``functools.cached_property``, answering, storing and refusing as it does (3.12's words)."""

    def __init__(self, func):  # no lock
        self.func = func
        self.attrname = None
        self.__doc__ = func.__doc__

    def __get__(self, instance, owner=None):
        if instance is None:
            return self
        if self.attrname is None:
            raise TypeError("Cannot use cached_property instance without calling __set_name__ on it.")
        try:
            cache = instance.__dict__
        except AttributeError:  # not all objects have __dict__ (e.g. class defines slots)
            raise TypeError(f"No '__dict__' attribute on {type(instance).__name__!r} instance to cache "
                            f"{self.attrname!r} property.") from None
        value = cache.get(self.attrname, _NOT_FOUND)
        if value is _NOT_FOUND:
            value = self.func(instance)
            try:
                cache[self.attrname] = value
            except TypeError:
                raise TypeError(f"The '__dict__' attribute on {type(instance).__name__!r} instance does not "
                                f"support item assignment for caching {self.attrname!r} property.") from None
        return value
