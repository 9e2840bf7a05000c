"""Remediation steps for VM start: open the vfio device nodes to the VM's user, let it lock the guest's memory.

Both change configuration files the same way every fix does (scanner/remediation/confedit.py): merged into
what the file holds, never clobbered, our own lines replaced when a value changes. Each step has
the human commands and an ``action`` the remediation script turns into a guarded block:

* ``{"kind": "udev-vfio-access", "file", "group", "nodes", "files"}``: a udev rule per kind of node
  (``group`` /dev/vfio/N, ``container`` /dev/vfio/vfio, ``iommu`` /dev/iommu, ``cdev``
  /dev/vfio/devices/vfioN), applied now by re-running udev's rules on those devices.
* ``{"kind": "limits-memlock", "file", "user", "kib", "files"}``: ``USER soft|hard memlock KIB`` in a
  limits.d file of this tool's own.
"""

from __future__ import annotations

from typing import List, Optional, Sequence, Tuple

from scanner.remediation.confedit import edit_commands, file_state, own_limits, own_rule
from scanner.base.lazyre import lazy_compile
from scanner.engine.model import Step
from scanner.remediation.shell import UnsafeValue, checked

ACCESS_RULES_FILE = "/etc/udev/rules.d/70-vfio-scan-access.rules"
MEMLOCK_FILE = "/etc/security/limits.d/95-vfio-scan-memlock.conf"
#: A user or group name as shadow-utils accepts it (what a udev rule and a limits line may name).
ACCOUNT_NAME = lazy_compile(r"^[A-Za-z_][A-Za-z0-9_.-]{0,31}\Z")

#: The udev match of each kind of node QEMU opens: the group's node and the container are what
#: ``-device vfio-pci,host=...`` opens; /dev/iommu and the device's cdev what ``iommufd=`` opens.
NODE_MATCH = {
    "container": 'SUBSYSTEM=="misc", KERNEL=="vfio"',
    "group": 'SUBSYSTEM=="vfio"',
    "iommu": 'SUBSYSTEM=="misc", KERNEL=="iommu"',
    "cdev": 'SUBSYSTEM=="vfio-dev"',
}
#: Re-applying udev's rules to the nodes there are now (permissions are set on "change" events too).
TRIGGERS = {
    "group": "udevadm trigger --action=change --subsystem-match=vfio",
    "cdev": "udevadm trigger --action=change --subsystem-match=vfio-dev",
    "container": "udevadm trigger --action=change --subsystem-match=misc --sysname-match=vfio",
    "iommu": "udevadm trigger --action=change --subsystem-match=misc --sysname-match=iommu",
}


def access_rule(kind: str, group: str) -> str:
    """The rule for one kind of node. The container gets the kernel's own mode back, 0666: opening it
    gives access to no device by itself; every other node goes to ``group``, read-write."""
    if kind not in NODE_MATCH:
        raise UnsafeValue(f"refusing an unknown kind of vfio node {kind!r}")
    if kind == "container":
        return f'{NODE_MATCH[kind]}, MODE="0666"'
    return f'{NODE_MATCH[kind]}, GROUP="{checked(group, ACCOUNT_NAME, "group name")}", MODE="0660"'


def merged_access_rules(text: Optional[str], kinds: Sequence[str], group: str) -> str:
    """The rules file with one rule per kind (an older rule of ours for that kind, another group, replaced)."""
    for kind in kinds:
        text = own_rule(text, access_rule(kind, group), NODE_MATCH[kind] + ",")
    return text or ""


def trigger_commands(kinds: Sequence[str]) -> List[str]:
    return [TRIGGERS[kind] for kind in NODE_MATCH if kind in kinds]


def access_step(kinds: Sequence[str], group: str, user: str,
                current: Tuple[str, Optional[str], Optional[str]]) -> Step:
    """Give ``group`` (one of the VM user's groups) read-write access to the kinds of node it cannot open."""
    state = file_state(*current)
    new = merged_access_rules(state["text"], kinds, group)
    nodes = ", ".join(kind_names(kinds))
    return Step(summary=(f"Open {nodes} to group {group} (which {user} is in) with a udev rule ({ACCESS_RULES_FILE}), "
                         "applied now and at every boot; any member of that group can then use every device on vfio"),
                phase="access", persistent=True,
                commands=edit_commands(ACCESS_RULES_FILE, state["text"], new) + ["udevadm control --reload"]
                + trigger_commands(kinds),
                undo=[f"rm -f {ACCESS_RULES_FILE}", "udevadm control --reload"] + trigger_commands(kinds),
                action={"kind": "udev-vfio-access", "file": ACCESS_RULES_FILE, "group": group, "nodes": list(kinds),
                        "files": [state]})


def kind_names(kinds: Sequence[str]) -> List[str]:
    names = {"group": "/dev/vfio/<group>", "container": "/dev/vfio/vfio", "iommu": "/dev/iommu",
             "cdev": "/dev/vfio/devices/vfioN"}
    return [names[kind] for kind in NODE_MATCH if kind in kinds]


def memlock_lines(user: str, kib: int) -> List[str]:
    checked(user, ACCOUNT_NAME, "user name")
    if isinstance(kib, bool) or not isinstance(kib, int) or kib <= 0:
        raise UnsafeValue(f"refusing memlock size {kib!r}: not a number of KiB")
    return [f"{user} soft memlock {kib}", f"{user} hard memlock {kib}"]


def merged_memlock(text: Optional[str], user: str, kib: int) -> str:
    return own_limits(text, user, "memlock", memlock_lines(user, kib))


def memlock_step(user: str, kib: int, current: Tuple[str, Optional[str], Optional[str]]) -> Step:
    """Let ``user`` lock ``kib`` KiB: soft and hard, in a limits.d file read after limits.conf."""
    state = file_state(*current)
    new = merged_memlock(state["text"], user, kib)
    return Step(summary=(f"Let {user} lock {kib} KiB of memory ({MEMLOCK_FILE}: soft and hard memlock); pam_limits "
                         f"applies it at {user}'s next login. QEMU started by a systemd unit needs LimitMEMLOCK= in "
                         "the unit instead"),
                phase="access", persistent=True, commands=edit_commands(MEMLOCK_FILE, state["text"], new),
                undo=[f"rm -f {MEMLOCK_FILE}"],
                action={"kind": "limits-memlock", "file": MEMLOCK_FILE, "user": user, "kib": kib, "files": [state]})


__all__ = ["ACCESS_RULES_FILE", "MEMLOCK_FILE", "ACCOUNT_NAME", "NODE_MATCH", "access_rule", "merged_access_rules",
           "trigger_commands", "access_step", "kind_names", "memlock_lines", "merged_memlock", "memlock_step"]
