"""The user QEMU runs as, the device nodes it opens, the memory it may lock (VFIO-018, VFIO-019).

A mixin of :class:`scanner.facts.Facts` (it reads through ``self.host`` like every fact). The
device rules can say a device is on vfio-pci in a viable group, and QEMU still stops at start:
``failed to open /dev/vfio/1: Permission denied`` when it runs as a user the node is not open to,
or ``vfio_pin_pages_remote: RLIMIT_MEMLOCK (65536) exceeded`` when that user may not lock the
guest's memory. These facts say who QEMU runs as and what it may do (VFIO-018, VFIO-019).
"""

from __future__ import annotations

from functools import cached_property
from typing import Dict, FrozenSet, List, Optional, Tuple

from scanner.base.record import record
from scanner.host import Read, Stat
from scanner.engine.model import Evidence
from scanner.base.numbers import is_decimal

QEMU_CONF = "/etc/libvirt/qemu.conf"
LIMITS_CONF = "/etc/security/limits.conf"
LIMITS_DIR = "/etc/security/limits.d"
SYSTEM_CONF = "/etc/systemd/system.conf"
SYSTEM_CONF_DIR = "/etc/systemd/system.conf.d"
#: What distributions build libvirt's QEMU user as (Debian, Ubuntu, Arch: libvirt-qemu; Fedora, RHEL,
#: SUSE: qemu); upstream's default is root. Used when qemu.conf sets no ``user``.
LIBVIRT_BUILT_IN_USERS = ("libvirt-qemu", "qemu")
#: Where the user comes from when nothing names one.
DEFAULT_ROOT = "no --vm-user, no libvirt: QEMU started by root"


@record(frozen=True)
class VmUser:
    """The user QEMU runs as, where that was learned, and what libvirt does for it.

    ``account`` is None when the uid cannot be known (``reason`` says why); ``libvirt`` when libvirt
    starts QEMU as this user, ``relabels`` when it also hands each VM's device nodes to it
    (qemu.conf's ``dynamic_ownership``, on by default).
    """

    name: str
    source: str
    account: Optional[Account] = None
    gids: FrozenSet[int] = frozenset()
    group_names: FrozenSet[str] = frozenset()
    libvirt: bool = False
    relabels: bool = False
    reason: Optional[str] = None
    evidence: Tuple[Evidence, ...] = ()

    @property
    def is_root(self) -> bool:
        return self.account is not None and self.account.uid == 0

    @property
    def who(self) -> Who:
        """The account as pam_limits looks it up."""
        from scanner.facts.memlock import Who

        return Who(self.account.name, self.account.uid, self.account.gid, self.gids, self.group_names)

    def label(self) -> str:
        """``libvirt-qemu (uid 64055, user in /etc/libvirt/qemu.conf)``: who, and where that was learned."""
        uid = f"uid {self.account.uid}, " if self.account else ""
        return f"{self.name} ({uid}{self.source})"


def _read_evidence(read: Read, shown: str) -> Evidence:
    return Evidence(read.path, shown if read.ok else f"<{read.reason}>")


class VmAccess:
    """The VM user's side of the facts (``self.host`` is the Host layer)."""

    # -- accounts and libvirt ----------------------------------------------------------------
    @cached_property
    def passwd_read(self) -> Read:
        return self.host.read("/etc/passwd")

    @cached_property
    def accounts(self) -> Dict[str, Account]:
        from scanner.facts.accounts import parse_passwd

        return parse_passwd(self.passwd_read.value())

    @cached_property
    def group_read(self) -> Read:
        return self.host.read("/etc/group")

    @cached_property
    def groups(self) -> Dict[str, Group]:
        from scanner.facts.accounts import parse_group

        return parse_group(self.group_read.value())

    @cached_property
    def qemu_conf_read(self) -> Read:
        return self.host.read(QEMU_CONF)

    @cached_property
    def qemu_conf(self) -> Dict[str, str]:
        from scanner.facts.accounts import parse_qemu_conf

        return parse_qemu_conf(self.qemu_conf_read.value())

    @property
    def has_libvirt(self) -> bool:
        """Is libvirt's QEMU driver configured here (qemu.conf exists, readable or not)?"""
        return not self.qemu_conf_read.missing

    def vm_user(self, requested: Optional[str] = None) -> VmUser:
        """The user QEMU runs as: ``requested`` (``--vm-user``), else libvirt's, else root."""
        memo = self.__dict__.setdefault("_vm_users", {})
        if requested not in memo:
            memo[requested] = self._vm_user(requested)
        return memo[requested]

    def _vm_user(self, requested: Optional[str]) -> VmUser:
        conf = self.qemu_conf_read
        conf_evidence = _read_evidence(conf, self._qemu_conf_lines() or "(sets no user nor group)")
        if requested:
            return self._account(requested, "--vm-user", self._started_by_libvirt(requested), [conf_evidence])
        if not self.has_libvirt:
            return self._account("root", DEFAULT_ROOT, False, [Evidence(QEMU_CONF, f"<{conf.reason}>")])
        if not conf.ok:
            return VmUser("?", QEMU_CONF, reason=f"cannot read {conf.describe()} to tell which user libvirt runs QEMU "
                                                 "as; give it with --vm-user USER", evidence=(conf_evidence,))
        name, source = self._libvirt_user()
        return self._account(name, source, True, [conf_evidence])

    def _qemu_conf_lines(self) -> str:
        settings = self.qemu_conf
        return "; ".join(f'{key} = "{settings[key]}"' for key in ("user", "group", "dynamic_ownership")
                         if key in settings)

    def _libvirt_user(self) -> Tuple[str, str]:
        """(user, where it comes from) of libvirt's QEMU processes, from qemu.conf or the built-in default."""
        if "user" in self.qemu_conf:
            return self.qemu_conf["user"], f"user in {QEMU_CONF}"
        built_in = next((name for name in LIBVIRT_BUILT_IN_USERS if name in self.accounts), "root")
        return built_in, f"libvirt's built-in user: {QEMU_CONF} sets none"

    def _started_by_libvirt(self, name: str) -> bool:
        """Does libvirt start QEMU as ``name``? Its qemu.conf says so, or (unreadable) the name is libvirt's own."""
        if not self.has_libvirt:
            return False
        if not self.qemu_conf_read.ok:
            return name in LIBVIRT_BUILT_IN_USERS
        return self._libvirt_user()[0] == name

    def _account(self, name: str, source: str, libvirt: bool, evidence: List[Evidence]) -> VmUser:
        """The VmUser for ``name``, with its uid and groups from the local account files."""
        from scanner.facts.accounts import ROOT, group_name, lookup

        passwd = self.passwd_read
        account = lookup(name, self.accounts) or (ROOT if name == "root" else None)
        if account is None:
            why = (f"cannot read {passwd.describe()}" if not passwd.ok else
                   f"{name} is not in /etc/passwd (a user of a directory service? this tool reads local files only)")
            return VmUser(name, source, libvirt=libvirt, reason=f"cannot tell the uid of {name}: {why}",
                          evidence=tuple(evidence + [_read_evidence(passwd, "")]))
        evidence.append(Evidence("/etc/passwd", f"{account.name}: uid {account.uid}, gid {account.gid}")
                        if passwd.ok else _read_evidence(passwd, ""))
        group = self.group_read
        if not group.ok and not group.missing and account.uid != 0:
            return VmUser(name, source, account, libvirt=libvirt, evidence=tuple(evidence + [_read_evidence(group, "")]),
                          reason=f"cannot tell the groups of {name}: cannot read {group.describe()}")
        gids = self._process_gids(account, libvirt)
        names = frozenset(n for n in (group_name(g, self.groups) for g in gids) if n)
        evidence.append(Evidence("/etc/group", "groups: " + (", ".join(
            f"{group_name(g, self.groups) or '?'} ({g})" for g in sorted(gids)) or "none")))
        relabels = libvirt and self.qemu_conf.get("dynamic_ownership", "1") != "0"
        return VmUser(account.name, source, account, gids, names, libvirt, relabels, evidence=tuple(evidence))

    def _process_gids(self, account: Account, libvirt: bool) -> FrozenSet[int]:
        """The groups of a QEMU process of ``account``: under libvirt, qemu.conf's ``group`` replaces the
        primary group (the user's other groups stay: libvirt sets them too)."""
        from scanner.facts.accounts import groups_of

        gids = set(groups_of(account, self.groups))
        spec = self.qemu_conf.get("group") if libvirt else None
        if spec:
            number = spec[1:] if spec.startswith("+") else spec
            group = self.groups.get(spec)
            gids.discard(account.gid)
            if group is not None:
                gids.add(group.gid)
            elif is_decimal(number):
                gids.add(int(number))
        return frozenset(gids)

    # -- device nodes ---------------------------------------------------------------------------
    def node(self, path: str) -> Stat:
        """Owner, group and mode of a device node (``/dev/vfio/1``), read once per scan."""
        memo = self.__dict__.setdefault("_nodes", {})
        if path not in memo:
            memo[path] = self.host.stat(path)
        return memo[path]

    def vfio_cdev(self, address: str) -> Optional[str]:
        """The device's own iommufd node ``/dev/vfio/devices/vfioN`` (sysfs ``vfio-dev/``), or None."""
        names = [n for n in self.host.listdir(f"/sys/bus/pci/devices/{address}/vfio-dev").entries()
                 if n.startswith("vfio") and n[4:].isdigit()]
        return f"/dev/vfio/devices/{names[0]}" if names else None

    # -- locked memory ----------------------------------------------------------------------------
    @cached_property
    def limits_files(self) -> Tuple[Read, ...]:
        """``limits.conf``, then each ``limits.d/*.conf`` in name order: what pam_limits reads (a missing
        ``limits.d`` is no file; one that cannot be listed is a failed read in the list)."""
        listing = self.host.listdir(LIMITS_DIR)
        reads = [self.host.read(LIMITS_CONF)]
        if not listing.ok and not listing.missing:
            reads.append(Read(LIMITS_DIR, reason=listing.reason))
        names = sorted(n for n in listing.entries() if n.endswith(".conf") and self._plain_name(n))
        return tuple(reads + [self.host.read(f"{LIMITS_DIR}/{n}") for n in names])

    @cached_property
    def memlock_lines(self) -> Tuple[LimitLine, ...]:
        from scanner.facts.memlock import parse_limits

        return tuple(line for read in self.limits_files if read.ok for line in parse_limits(read.path, read.text))

    @cached_property
    def systemd_memlock(self) -> Optional[Tuple[float, float, str]]:
        """(soft, hard, file) of systemd's ``DefaultLimitMEMLOCK=``, or None when no readable file sets it."""
        from scanner.facts.memlock import parse_systemd_memlock

        listing = self.host.listdir(SYSTEM_CONF_DIR)
        paths = [SYSTEM_CONF] + [f"{SYSTEM_CONF_DIR}/{n}" for n in listing.entries()
                                 if n.endswith(".conf") and self._plain_name(n)]
        reads = [self.host.read(p) for p in paths]
        return parse_systemd_memlock([(r.path, r.text) for r in reads if r.ok])


__all__ = ["VmAccess", "VmUser", "QEMU_CONF", "LIMITS_CONF", "LIMITS_DIR", "LIBVIRT_BUILT_IN_USERS"]
