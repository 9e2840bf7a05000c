"""How much memory a user may lock: ``limits.conf`` as pam_limits reads it, systemd's default, sizes.

Pure parsers of text. VFIO pins every page of guest memory, and the kernel counts pinned pages
against the QEMU process's ``RLIMIT_MEMLOCK`` (its soft limit; root's CAP_IPC_LOCK skips the
check). A login session gets that limit from pam_limits: ``/etc/security/limits.conf`` first, then
``/etc/security/limits.d/*.conf`` in name order, as if concatenated. A line for the user itself
outranks one for a group it is in, which outranks ``*``; among lines of the same rank the last
one wins (Linux-PAM's ``process_limit``). Where no line applies, the session keeps what its login
daemon had: systemd's ``DefaultLimitMEMLOCK=`` (8 MiB by default since systemd 253, 64 KiB before).
"""

from __future__ import annotations

import re
from typing import Dict, FrozenSet, List, Optional, Sequence, Tuple

from scanner.base.lazyre import lazy_compile
from scanner.base.record import record
from scanner.base.numbers import decimal, is_decimal

KIB, MIB, GIB = 1 << 10, 1 << 20, 1 << 30
UNLIMITED = float("inf")
#: systemd's DefaultLimitMEMLOCK when none is configured (systemd 253 and later).
SYSTEMD_DEFAULT = 8 * MIB

_SIZE = lazy_compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGTP]?)(?:I?B)?\s*\Z", re.I | re.A)  # ASCII digits: "١٦G" is none
_UNITS = {"": MIB, "K": KIB, "M": MIB, "G": GIB, "T": 1 << 40, "P": 1 << 50}
_SYSTEMD_UNITS = {"": 1, "K": KIB, "M": MIB, "G": GIB, "T": 1 << 40, "P": 1 << 50, "E": 1 << 60}

#: pam_limits ranks (a lower number outranks a higher one): LIMITS_DEF_USER, _GROUP, _ALLGROUP, _ALL, _DEFAULT.
USER, GROUP, ALLGROUP, ALL, DEFAULT = range(5)


def parse_size(text: str) -> int:
    """Bytes of a guest memory size as QEMU's ``-m`` takes it: ``16G``, ``16GiB``, ``512M``; a bare
    number is MiB, as for ``-m``. ValueError with the reason otherwise."""
    match = _SIZE.match(text or "")
    if not match:
        raise ValueError(f"{text!r} is not a size (examples: 16G, 16384M, 512MiB)")
    size = int(float(match.group(1)) * _UNITS[match.group(2).upper()])
    if size <= 0:
        raise ValueError(f"{text!r}: a guest needs some memory")
    return size


def format_size(size: float) -> str:
    """``16 GiB``, ``8 MiB``, ``64 KiB``, ``unlimited``: the largest unit that says it exactly (or to a tenth)."""
    if size == UNLIMITED:
        return "unlimited"
    for unit, name in ((1 << 40, "TiB"), (GIB, "GiB"), (MIB, "MiB"), (KIB, "KiB")):
        if size >= unit:
            value = size / unit
            return f"{int(value)} {name}" if value == int(value) else f"{value:.1f} {name}"
    return f"{int(size)} bytes"


@record(frozen=True)
class LimitLine:
    """One ``memlock`` line of a limits file: ``domain type memlock value`` (``value`` in bytes), or a
    ``domain -`` line that tells pam_limits to set no limit at all for who it names (``kind`` ``none``)."""

    path: str
    number: int
    domain: str
    kind: str  # soft, hard, - (both), or none
    value: float
    text: str

    @property
    def where(self) -> str:
        return f"{self.path} line {self.number}"


def _limit_value(text: str) -> Optional[float]:
    if text in ("unlimited", "infinity", "-1"):
        return UNLIMITED
    number = decimal(text)
    return number * KIB if number is not None else None


def parse_limits(path: str, text: str) -> List[LimitLine]:
    """The lines of a limits file that set ``memlock`` (or set no limits at all), in order."""
    found = []
    for number, raw in enumerate(text.splitlines(), 1):
        words = raw.split("#", 1)[0].split()
        if len(words) == 2 and words[1] == "-":
            found.append(LimitLine(path, number, words[0], "none", UNLIMITED, raw.strip()))
            continue
        if len(words) < 4 or words[2].lower() != "memlock" or words[1].lower() not in ("soft", "hard", "-"):
            continue
        value = _limit_value(" ".join(words[3:]).lower())
        if value is not None:
            found.append(LimitLine(path, number, words[0], words[1].lower(), value, raw.strip()))
    return found


@record(frozen=True)
class Who:
    """The account a limit is looked up for: name, uid, primary gid, every gid, and the names of those groups."""

    name: str
    uid: int
    gid: int
    gids: FrozenSet[int]
    group_names: FrozenSet[str]


def _range(text: str) -> Optional[Tuple[Optional[int], Optional[int]]]:
    """``min:max``, ``:exact``, ``min:`` -> (min, max) (min None: exactly max); None when not a range."""
    low, sep, high = text.partition(":")
    if not sep or not (is_decimal(low) or not low) or not (is_decimal(high) or not high) or not (low or high):
        return None
    return (int(low) if low else None, int(high) if high else None)


def _in_range(value: int, bounds: Tuple[Optional[int], Optional[int]], any_of: FrozenSet[int] = frozenset()) -> bool:
    low, high = bounds
    if low is None:
        return high == value or high in any_of
    return value >= low and (high is None or value <= high)


def rank(domain: str, who: Who) -> Optional[int]:
    """The pam_limits rank of a line's domain for ``who``, or None when the line is not about them."""
    if domain == who.name:
        return USER
    if domain == "*":
        return DEFAULT
    if domain == "%":
        return ALL
    if domain[:1] in "@%":
        name = domain[1:]
        bounds = _range(name)
        if bounds is None:
            member = name in who.group_names
        elif domain[0] == "%":
            member = bounds[0] is None and bounds[1] in who.gids
        else:
            member = _in_range(who.gid, bounds, who.gids)
        return (GROUP if domain[0] == "@" else ALLGROUP) if member else None
    bounds = _range(domain)
    return USER if bounds is not None and _in_range(who.uid, bounds) else None


@record(frozen=True)
class Memlock:
    """What pam_limits gives ``who``: the lines that set the soft and hard limits (None: no line applies);
    ``ignored`` is a ``domain -`` line that made pam_limits set nothing at all."""

    soft_from: Optional[LimitLine] = None
    hard_from: Optional[LimitLine] = None
    ignored: Optional[LimitLine] = None

    @property
    def soft(self) -> Optional[float]:
        return self.soft_from.value if self.soft_from else None

    @property
    def hard(self) -> Optional[float]:
        return self.hard_from.value if self.hard_from else None


#: A limit no line has set yet (LIMITS_DEF_NONE): any line outranks it.
NOT_SET = DEFAULT + 1
_SETS = {"soft": ("soft",), "hard": ("hard",), "-": ("soft", "hard")}


def memlock_for(lines: Sequence[LimitLine], who: Who) -> Memlock:
    """Replay pam_limits over ``lines`` (every file's, in reading order) for ``who``."""
    ranks = {"soft": NOT_SET, "hard": NOT_SET}
    chosen: Dict[str, LimitLine] = {}
    for line in lines:
        found = rank(line.domain, who)
        if found is None:
            continue
        if line.kind == "none":
            return Memlock(ignored=line)
        for kind in _SETS[line.kind]:
            if ranks[kind] < found:
                break  # outranked: pam_limits returns here, so a '-' line's hard part is dropped too
            ranks[kind], chosen[kind] = found, line
    return Memlock(chosen.get("soft"), chosen.get("hard"))


def parse_systemd_memlock(files: Sequence[Tuple[str, str]]) -> Optional[Tuple[float, float, str]]:
    """(soft, hard, file) of the ``DefaultLimitMEMLOCK=`` that takes effect in systemd's ``system.conf`` and
    its drop-ins (read in that order, the last setting wins), or None when none sets it."""
    found = None
    for path, text in files:
        section = ""
        for raw in text.splitlines():
            line = raw.strip()
            if line.startswith("[") and line.endswith("]"):
                section = line[1:-1].strip()
            elif section == "Manager" and line.startswith("DefaultLimitMEMLOCK="):
                values = _systemd_limit(line.split("=", 1)[1].strip())
                found = (values[0], values[1], path) if values else found
    return found


def _systemd_limit(text: str) -> Optional[Tuple[float, float]]:
    parts = text.split(":")
    values = [_systemd_size(p) for p in parts]
    if not text or len(parts) > 2 or None in values:
        return None
    return (values[0], values[-1])


def _systemd_size(text: str) -> Optional[float]:
    if text == "infinity":
        return UNLIMITED
    match = re.match(r"^(\d+)\s*([KMGTPE]?)\Z", text)
    return int(match.group(1)) * _SYSTEMD_UNITS[match.group(2)] if match else None


__all__ = ["UNLIMITED", "SYSTEMD_DEFAULT", "GIB", "KIB", "parse_size", "format_size", "LimitLine", "parse_limits",
           "Who", "rank", "Memlock", "memlock_for", "parse_systemd_memlock"]
