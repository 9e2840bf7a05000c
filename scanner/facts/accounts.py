"""Who QEMU runs as: accounts from ``/etc/passwd`` and ``/etc/group``, and libvirt's ``qemu.conf``.

Pure parsers of text. Only the local files are read: a user that comes from a directory service
(LDAP, SSSD) is not in them, and a rule says so instead of guessing its uid.
"""

from __future__ import annotations

from typing import Dict, FrozenSet, Optional

from scanner.base.lazyre import lazy_compile
from scanner.base.record import record
from scanner.base.numbers import decimal, is_decimal

#: libvirt's qemu.conf: ``key = value`` lines (virConf), strings in double or single quotes.
_CONF_LINE = lazy_compile(r"""^\s*([A-Za-z_][A-Za-z0-9_]*)\s*=\s*("[^"]*"|'[^']*'|[^\s#]+)""")


@record(frozen=True)
class Account:
    """One ``/etc/passwd`` line: the name, uid and primary gid."""

    name: str
    uid: int
    gid: int


@record(frozen=True)
class Group:
    """One ``/etc/group`` line: the name, gid and the users listed as members."""

    name: str
    gid: int
    members: FrozenSet[str]


ROOT = Account("root", 0, 0)


def _records(text: str):
    """The colon-separated fields of each ``name:x:number:...`` line of an account file (comments and
    NIS ``+``/``-`` lines left out)."""
    for line in text.splitlines():
        fields = line.split(":")
        if len(fields) >= 4 and fields[0] and not line.startswith(("#", "+", "-")) and is_decimal(fields[2]):
            yield fields


def parse_passwd(text: str) -> Dict[str, Account]:
    """name -> Account; lines that are not ``name:x:uid:gid:...`` are skipped (the first of a name wins, as getpwnam)."""
    found: Dict[str, Account] = {}
    for fields in _records(text):
        if is_decimal(fields[3]):
            found.setdefault(fields[0], Account(fields[0], int(fields[2]), int(fields[3])))
    return found


def parse_group(text: str) -> Dict[str, Group]:
    """name -> Group from ``name:x:gid:member,member`` lines."""
    found: Dict[str, Group] = {}
    for fields in _records(text):
        members = frozenset(m.strip() for m in fields[3].split(",") if m.strip())
        found.setdefault(fields[0], Group(fields[0], int(fields[2]), members))
    return found


def groups_of(account: Account, groups: Dict[str, Group]) -> FrozenSet[int]:
    """The gids a process of ``account`` has: its primary group and every group listing it (initgroups)."""
    return frozenset({account.gid} | {g.gid for g in groups.values() if account.name in g.members})


def group_name(gid: int, groups: Dict[str, Group]) -> Optional[str]:
    return next((g.name for g in groups.values() if g.gid == gid), None)


def parse_qemu_conf(text: str) -> Dict[str, str]:
    """``key -> value`` of libvirt's qemu.conf (quotes removed; the last setting of a key wins)."""
    settings: Dict[str, str] = {}
    for line in text.splitlines():
        match = _CONF_LINE.match(line)
        if match:
            value = match.group(2)
            settings[match.group(1)] = value[1:-1] if value[:1] in "\"'" else value
    return settings


def lookup(spec: str, accounts: Dict[str, Account]) -> Optional[Account]:
    """The account ``spec`` names: a name, else ``+UID`` or a bare uid, as qemu.conf allows (uid 0 is root
    even without a passwd line); None when the local files do not have it."""
    if spec in accounts:
        return accounts[spec]
    number = spec[1:] if spec.startswith("+") else spec
    uid = decimal(number)
    if uid is None:
        return None
    return next((a for a in accounts.values() if a.uid == uid), ROOT if uid == 0 else None)


__all__ = ["ROOT", "Account", "Group", "parse_passwd", "parse_group", "groups_of", "group_name", "parse_qemu_conf",
           "lookup"]
