"""Decimal numbers in text a host wrote: a uid in /etc/passwd, a group's number, a memlock limit.

``str.isdigit()`` says yes to "²" and to five thousand digits, and ``int()`` then raises on both; one
such line in a hostile host's file made a rule end in an error instead of reading past the line.
Here garbage is None, never an exception.
"""

from typing import Optional

#: More digits than any number the kernel or a configuration file writes (2**64 has 20).
MAX_DIGITS = 20


def decimal(text: str) -> Optional[int]:
    """The number ``text`` spells in ASCII digits (no sign, no spaces), or None."""
    if text.isascii() and text.isdigit() and len(text) <= MAX_DIGITS:
        return int(text)
    return None


def is_decimal(text: str) -> bool:
    """Does ``text`` spell a number :func:`decimal` reads?"""
    return text.isascii() and text.isdigit() and len(text) <= MAX_DIGITS


__all__ = ["MAX_DIGITS", "decimal", "is_decimal"]
