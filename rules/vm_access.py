"""VFIO-018 vm-access: the user QEMU runs as can open the device nodes of each target.

What: the user QEMU runs as may open, read and write, ``/dev/vfio/vfio`` (the container) and
``/dev/vfio/<group>`` of the target's IOMMU group: what ``-device vfio-pci,host=ADDR`` opens. Where
the kernel offers them, ``/dev/iommu`` and the device's own ``/dev/vfio/devices/vfioN`` (what QEMU's
iommufd backend opens instead) are judged too, as a second way in. The user is ``--vm-user USER``;
without it, the ``user`` (and ``group``) of libvirt's ``/etc/libvirt/qemu.conf`` where libvirt is
installed (with no ``user`` set there, libvirt's built-in user: ``libvirt-qemu`` on Debian, Ubuntu
and Arch, ``qemu`` on Fedora, RHEL and SUSE); else root.

Why: a device on vfio-pci in a viable group still does not start the VM when the node is not open
to QEMU's user: ``vfio: failed to open /dev/vfio/1: Permission denied``. The kernel makes
``/dev/vfio/<group>`` root's alone (0600) and the container open to all (0666); a QEMU run as a
plain user, or a distribution's udev rules, change the picture.

How: the owner, group and mode of each node (``stat``, never opened), against the user's uid
and groups from ``/etc/passwd`` and ``/etc/group`` (under libvirt, qemu.conf's ``group`` replaces
the primary group), by the mode bits: the owner's bits if the user owns the node, else the group's
if it is in the node's group, else the others'. Root opens every node. libvirt with
``dynamic_ownership`` (its default) hands ``/dev/vfio/<group>`` to the VM's user itself when it
starts the VM, so that node passes under libvirt. ACLs are not read. The result is a pass when the
container and the group's node are open; a warning when only the iommufd nodes are (QEMU then needs
``iommufd=``); a fail otherwise. A target whose group node does not exist yet follows from VFIO-013;
a user whose uid or groups cannot be read (qemu.conf is often root's alone) is a skip saying so.

Fix: a udev rule giving one of the user's groups (``kvm`` where the user is in it) the nodes it
cannot open, e.g. ``SUBSYSTEM=="vfio", GROUP="kvm", MODE="0660"`` in
``/etc/udev/rules.d/70-vfio-scan-access.rules`` (merged into that file, never clobbering it), then
``udevadm control --reload`` and ``udevadm trigger --action=change --subsystem-match=vfio`` to apply
it now. Or run QEMU through libvirt, or as root.
"""

from typing import List, Optional, Sequence

from scanner import hookimpl
from scanner.base.record import record
from scanner.host import Stat
from scanner.engine.model import Evidence, Finding, Rule, Step

RULE_ID = "VFIO-018"
EXPECTED = "the VM's user can open /dev/vfio/vfio and /dev/vfio/GROUP (read-write)"


@hookimpl
def vfio_scan_register_rules(register):
    register(Rule(id=RULE_ID, name="vm-access", scope="device", severity="high",
                  title="The VM's user can open the vfio device nodes", check=check, docs=__doc__))


@record(frozen=True)
class Node:
    """One device node QEMU opens: its kind (``container``, ``group``, ``iommu``, ``cdev``), path and stat."""

    kind: str
    path: str
    stat: Stat


def check(facts, scan):
    user = facts.vm_user(scan.vm_user)
    for target in scan.targets:
        device = facts.pci.get(target.address)
        if device is None:
            yield Finding.skip("follows from VFIO-010: the device is not there", subject=target.address)
        elif not target.for_passthrough:
            yield Finding.skip(target.stays_on_host_reason(device), subject=target.address)
        else:
            yield judge(facts, user, device)


def judge(facts, user, device) -> Finding:
    address, group = device.address, device.iommu_group
    unjudged = _no_group_node(facts, group)
    if unjudged:
        return Finding.skip(unjudged, subject=address)
    legacy = [_node(facts, "container", "/dev/vfio/vfio"), _node(facts, "group", f"/dev/vfio/{group}")]
    iommufd = _iommufd_nodes(facts, address)
    evidence = list(user.evidence) + [Evidence(n.path, _describe(facts, n.stat)) for n in legacy + iommufd]
    if user.is_root:
        hint = "" if user.source == "--vm-user" else "; give --vm-user USER to check another user"
        return Finding.passed(f"QEMU runs as root ({user.source}): root opens every node{hint}", subject=address,
                              observed="root", expected=EXPECTED, evidence=evidence)
    if user.reason:
        return Finding.skip(user.reason, subject=address, evidence=evidence)
    unread = [n for n in legacy + iommufd if not n.stat.ok and not n.stat.missing]
    if unread:
        return Finding.skip(f"cannot read the owner and mode of {unread[0].path} ({unread[0].stat.reason})",
                            subject=address, evidence=evidence)
    return _verdict(facts, user, address, legacy, iommufd, evidence)


def _no_group_node(facts, group) -> Optional[str]:
    """Why there is no group node to judge yet (VFIO-013's business), or None."""
    listing = facts.dev_vfio
    if not group:
        return "follows from VFIO-013: the device is in no IOMMU group, so there is no /dev/vfio node to open"
    if not listing.ok and not listing.missing:
        return f"cannot list {listing.path} ({listing.reason})"
    if group not in facts.dev_vfio_names:
        return (f"follows from VFIO-013: /dev/vfio/{group} does not exist yet (it appears once the device is on "
                "vfio-pci)")
    return None


def _node(facts, kind: str, path: str) -> Node:
    return Node(kind, path, facts.node(path))


def _iommufd_nodes(facts, address: str) -> List[Node]:
    """/dev/iommu and the device's cdev, where the kernel offers them (both, or nothing)."""
    cdev = facts.vfio_cdev(address)
    iommu = _node(facts, "iommu", "/dev/iommu")
    if cdev is None or iommu.stat.missing:
        return []
    return [iommu, _node(facts, "cdev", cdev)]


def _verdict(facts, user, address: str, legacy: Sequence[Node], iommufd: Sequence[Node], evidence) -> Finding:
    closed = [n for n in legacy if not _opens(n, user)]
    closed_fd = [n for n in iommufd if not _opens(n, user)]
    observed = "; ".join(f"{n.path} {_describe(facts, n.stat)}" for n in list(legacy) + list(iommufd))
    who = user.label()
    if not closed:
        return Finding.passed(f"{who} can open {' and '.join(n.path for n in legacy)}{_relabel_note(user)}"
                              f"{_iommufd_note(iommufd, closed_fd)}", subject=address, observed=observed,
                              expected=EXPECTED, evidence=evidence)
    why = "; ".join(_closed_reason(facts, n) for n in closed)
    if iommufd and not closed_fd:
        return Finding.warn(f"{who} cannot open {why}, but can open /dev/iommu and {iommufd[1].path}: QEMU must use "
                            f"iommufd (-object iommufd,id=fd0 -device vfio-pci,host={address},iommufd=fd0)",
                            subject=address, observed=observed, expected=EXPECTED, evidence=evidence,
                            remediation=_steps(facts, user, closed))
    return Finding.fail(f"{who} cannot open {why}: QEMU started as {user.name} stops with \"failed to open "
                        f"{closed[0].path}: Permission denied\"", subject=address, observed=observed,
                        expected=EXPECTED, evidence=evidence, remediation=_steps(facts, user, closed + closed_fd))


def _opens(node: Node, user) -> bool:
    """Can ``user`` open the node read-write? Mode bits only: the owner's, else the group's, else the others'."""
    if node.kind == "group" and user.relabels:
        return True  # libvirt's dynamic_ownership hands it to the VM's user at VM start
    found = node.stat
    if not found.ok:
        return False
    if found.uid == user.account.uid:
        bits = found.mode >> 6
    elif found.gid in user.gids:
        bits = found.mode >> 3
    else:
        bits = found.mode
    return bits & 0o6 == 0o6


def _relabel_note(user) -> str:
    return ("; libvirt hands /dev/vfio/<group> to it when it starts the VM (dynamic_ownership)"
            if user.relabels else "")


def _iommufd_note(iommufd: Sequence[Node], closed_fd: Sequence[Node]) -> str:
    if not iommufd:
        return ""
    if not closed_fd:
        return "; the iommufd nodes too"
    return f"; not {' nor '.join(n.path for n in closed_fd)} (only QEMU's iommufd= backend needs them)"


def _closed_reason(facts, node: Node) -> str:
    if node.stat.missing:
        return f"{node.path} (it does not exist)"
    return f"{node.path} ({_describe(facts, node.stat)})"


def _describe(facts, found: Stat) -> str:
    """``mode 0600, owner root, group kvm`` (numbers where the account files have no name)."""
    from scanner.facts.accounts import group_name

    if not found.ok:
        return f"<{found.reason}>"
    owner = next((a.name for a in facts.accounts.values() if a.uid == found.uid), f"uid {found.uid}")
    group = group_name(found.gid, facts.groups) or f"gid {found.gid}"
    return f"mode {found.mode:04o}, owner {owner}, group {group}"


def _steps(facts, user, closed: Sequence[Node]) -> List[Step]:
    """A udev rule opening the closed kinds of node to one of the user's groups; manual where none can."""
    from scanner.remediation.vm_access import ACCESS_RULES_FILE, access_step, kind_names

    if any(n.kind == "container" and n.stat.missing for n in closed):
        return [Step(summary="This kernel offers no VFIO container (/dev/vfio/vfio): QEMU must use iommufd "
                             "(-object iommufd), or boot a kernel with CONFIG_VFIO_CONTAINER or "
                             "CONFIG_IOMMUFD_VFIO_CONTAINER", phase="access", manual=True,
                     action={"kind": "see-rule", "rules": ["VFIO-003"]})]
    group = _access_group(facts, user)
    kinds = [n.kind for n in closed if not n.stat.missing]
    if group is None:
        return [Step(summary=f"Give a group of {user.name} read-write access to {', '.join(kind_names(kinds))} (a "
                             "udev rule GROUP=..., MODE=\"0660\"); none of its groups has a name this tool can write",
                     phase="access", manual=True)]
    return [access_step(kinds, group, user.name, facts.etc_file(ACCESS_RULES_FILE))]


def _access_group(facts, user) -> Optional[str]:
    """The group to open the nodes to: ``kvm`` where the user is in it, else its primary group, else another."""
    from scanner.facts.accounts import group_name
    from scanner.remediation.vm_access import ACCOUNT_NAME

    names = sorted(user.group_names)
    primary = group_name(user.account.gid, facts.groups)
    for name in ["kvm", primary] + names:
        if name and name in user.group_names and ACCOUNT_NAME.match(name):
            return name
    return None
