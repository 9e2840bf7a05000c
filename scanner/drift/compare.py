"""Two states of one host into the changes an operator must hear about, each marked a regression or not.

A **regression** is a change that can break a VM that worked before, or a READY that no longer
holds:

* the verdict got worse (READY -> READY_WITH_WARNINGS -> NOT_READY), or a finding did
  (pass -> warn -> fail), or a finding fails that was not there before;
* devices that were in separate IOMMU groups now share one (the GPU moved into the boot NVMe's
  group), a device lost its group, or the host lost its IOMMU groups altogether;
* a device vanished, or moved to another address (a ``<hostdev>``, a driverctl override or a
  Proxmox mapping still names the old one);
* a device left its vfio driver for a host driver.

Everything else that differs (a new kernel, another command line, a renumbered group, a group
that split, a device that appeared, another host driver, a fixed finding) is a change, shown
but not failing. Many equal changes (the 256 VFs a reboot did not recreate) are one line.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple

from scanner.drift.sides import STATUS_RANK, Device, HostState
from scanner.base.numbers import decimal

READINESS_RANK = {"READY": 0, "READY_WITH_WARNINGS": 1, "NOT_READY": 2}
#: More equal changes than this (same kind, same before and after) are reported as one.
COLLAPSE_OVER = 3
#: Addresses a collapsed change names before it says how many more there are.
NAMED = 4


@dataclass(frozen=True)
class Change:
    kind: str  # readiness | kernel | cmdline | hostname | iommu | group | device | driver | finding
    subject: str  # "host", a PCI address, "group 14", a rule id and subject, "256 devices"
    old: Optional[str]
    new: Optional[str]
    regression: bool
    message: str

    def to_dict(self) -> dict:
        return {"kind": self.kind, "subject": self.subject, "old": self.old, "new": self.new,
                "regression": self.regression, "message": self.message}


def compare_hosts(old: HostState, new: HostState) -> List[Change]:
    """What changed from ``old`` to ``new``, in the order a reader wants it: verdict, kernel, groups,
    devices, drivers, findings."""
    changes = _host_changes(old, new)
    if old.devices is not None and new.devices is not None:
        changes += group_changes(old, new)
        moved, device_lines = device_changes(old.devices, new.devices)
        changes += device_lines
        changes += driver_changes(old.devices, new.devices, moved)
    if old.findings is not None and new.findings is not None:
        changes += finding_changes(old.findings, new.findings)
    return changes


def _host_changes(old: HostState, new: HostState) -> List[Change]:
    changes = []
    if old.readiness and new.readiness and old.readiness != new.readiness:
        worse = READINESS_RANK.get(new.readiness, 2) > READINESS_RANK.get(old.readiness, 2)
        changes.append(Change("readiness", "host", old.readiness, new.readiness, worse,
                              f"{old.readiness} -> {new.readiness}"))
    for kind, before, after in (("hostname", old.hostname, new.hostname), ("kernel", old.kernel, new.kernel),
                                ("cmdline", old.cmdline, new.cmdline)):
        if before is not None and after is not None and before != after:
            changes.append(Change(kind, "host", before, after, False, f"{before} -> {after}"))
    return changes


# -- IOMMU groups ----------------------------------------------------------------------------------

def _endpoints_by_group(devices: Dict[str, Device]) -> Dict[str, List[str]]:
    groups: Dict[str, List[str]] = defaultdict(list)
    for address in sorted(devices):
        device = devices[address]
        if device.group is not None and not device.bridge:
            groups[device.group].append(address)
    return groups


def group_changes(old: HostState, new: HostState) -> List[Change]:
    """Devices brought together, split apart, renumbered or left without a group."""
    if old.groups_reason or new.groups_reason:
        return []  # one side could not list its groups: nothing to compare, and nothing guessed
    before, after = _endpoints_by_group(old.devices), _endpoints_by_group(new.devices)
    if before and not after:
        return [Change("iommu", "host", f"{len(before)} groups", "no groups", True,
                       f"no IOMMU groups any more (there were {len(before)}): the IOMMU is off, so no device "
                       "can be passed through")]
    changes = []
    for number, members in sorted(after.items(), key=lambda item: _group_key(item[0])):
        changes += _new_group_changes(number, members, old.devices)
    for number, members in sorted(before.items(), key=lambda item: _group_key(item[0])):
        moved_to = {new.devices[a].group for a in members if a in new.devices and new.devices[a].group is not None}
        if len(moved_to) > 1:
            places = ", ".join(f"group {g}" for g in sorted(moved_to, key=_group_key))
            changes.append(Change("group", f"group {number}", f"group {number}", places, False,
                                  f"group {number} split into {places}: its devices are isolated from each other now"))
    lost = [a for a in sorted(old.devices) if old.devices[a].group is not None and not old.devices[a].bridge
            and a in new.devices and new.devices[a].group is None]
    for address in lost:
        changes.append(Change("group", address, f"group {old.devices[address].group}", None, True,
                              f"{address} is in no IOMMU group now (was group {old.devices[address].group}): "
                              "it cannot be passed through"))
    return changes


def _new_group_changes(number: str, members: List[str], before: Dict[str, Device]) -> List[Change]:
    origins: Dict[Optional[str], List[str]] = defaultdict(list)
    for address in members:
        device = before.get(address)
        origins[device.group if device is not None else None].append(address)
    old_groups = [g for g in origins if g is not None]
    if len(origins) > 1 and old_groups:
        parts = "; ".join(_origin(group, addresses) for group, addresses in
                          sorted(origins.items(), key=lambda item: _group_key(item[0])))
        return [Change("group", f"group {number}", ", ".join(f"group {g}" for g in sorted(old_groups, key=_group_key)),
                       f"group {number}", True,
                       f"group {number} now holds devices that were apart ({parts}): none of them can be passed "
                       "through without the others")]
    if old_groups:  # all from one group: the same group, maybe under another number
        was = old_groups[0]
        previous = sorted(a for a, d in before.items() if d.group == was and not d.bridge)
        if was != number and previous == members:
            return [Change("group", f"group {number}", f"group {was}", f"group {number}", False,
                           f"group {was} is now group {number} ({_named(members)}): configurations that name the "
                           "group number need the new one")]
    return []


def _origin(group: Optional[str], addresses: List[str]) -> str:
    where = f"were group {group}" if group is not None else "new, or in no group before"
    if len(addresses) == 1:
        where = where.replace("were", "was")
    return f"{_named(addresses)} {where}"


def _group_key(number: Optional[str]) -> Tuple[int, str]:
    if number is None:
        return (-1, "")
    value = decimal(number)
    return (value, "") if value is not None else (1 << 64, number)


# -- devices and drivers ---------------------------------------------------------------------------

def device_changes(before: Dict[str, Device], after: Dict[str, Device]) -> Tuple[Dict[str, str], List[Change]]:
    """Vanished, moved and appeared devices; returns ({old address: new address} of moves, changes)."""
    gone = [a for a in sorted(before) if a not in after]
    came = [a for a in sorted(after) if a not in before]
    gone_by_ids, came_by_ids = defaultdict(list), defaultdict(list)
    for address in gone:
        gone_by_ids[before[address].ids].append(address)
    for address in came:
        came_by_ids[after[address].ids].append(address)
    moved: Dict[str, str] = {}
    for ids, addresses in gone_by_ids.items():
        if len(addresses) == 1 and len(came_by_ids.get(ids, ())) == 1 and "?" not in ids:
            moved[addresses[0]] = came_by_ids[ids][0]
    changes = [Change("device", old, old, new, True,
                      f"{_described(before[old])} moved from {old} to {new}: configurations that name {old} "
                      "no longer find it") for old, new in sorted(moved.items())]
    arrived = set(moved.values())
    changes += collapse([Change("device", a, before[a].ids, None, True, f"{_described(before[a])} at {a} is gone")
                         for a in gone if a not in moved], "are gone")
    changes += collapse([Change("device", a, None, after[a].ids, False, f"{_described(after[a])} appeared at {a}")
                         for a in came if a not in arrived], "appeared")
    return moved, changes


def driver_changes(before: Dict[str, Device], after: Dict[str, Device], moved: Dict[str, str]) -> List[Change]:
    from scanner.facts.pci import is_vfio_driver

    pairs = [(a, a) for a in sorted(before) if a in after] + sorted(moved.items())
    changes = []
    for old_address, new_address in pairs:
        was, now = before[old_address].driver, after[new_address].driver
        if was == now:
            continue
        regression = is_vfio_driver(was) and not is_vfio_driver(now)
        consequence = f": {new_address} is no longer ready for a VM" if regression and now else ""
        changes.append(Change("driver", new_address, was, now, regression,
                              f"{new_address} driver {was or 'none'} -> {now or 'none'}{consequence}"))
    return collapse(changes, "changed driver")


def _described(device: Device) -> str:
    return f"{device.ids}" + (f" ({device.name})" if device.name else "")


# -- findings --------------------------------------------------------------------------------------

def finding_changes(before: Dict[Tuple[str, str], dict], after: Dict[Tuple[str, str], dict]) -> List[Change]:
    """Findings whose status moved, failing findings that are new, failing findings no longer reported."""
    changes = []
    for key in sorted(set(before) | set(after)):
        was, now = before.get(key), after.get(key)
        rule_id, subject = key
        label = f"{rule_id} {subject}"
        if was is not None and now is not None:
            if was["status"] == now["status"]:
                continue
            worse = STATUS_RANK.get(now["status"], 0) > STATUS_RANK.get(was["status"], 0)
            changes.append(Change("finding", label, was["status"], now["status"], worse,
                                  f"{label} {was['status']} -> {now['status']}: {now['message']}"))
        elif now is not None and STATUS_RANK.get(now["status"], 0) > 0:
            changes.append(Change("finding", label, None, now["status"], True,
                                  f"{label} {now['status']} (not reported before): {now['message']}"))
        elif was is not None and STATUS_RANK.get(was["status"], 0) > 0:
            changes.append(Change("finding", label, was["status"], None, False,
                                  f"{label} no longer reported (was {was['status']})"))
    return collapse(changes, "changed", key=lambda c: (c.kind, c.subject.split(" ", 1)[0], c.old, c.new,
                                                       c.regression))


# -- many equal changes as one ---------------------------------------------------------------------

def collapse(changes: List[Change], verb: str, key=None) -> List[Change]:
    """More than :data:`COLLAPSE_OVER` changes alike (same kind, before and after) become one line
    that names the first few subjects and counts the rest; fewer stay as they are, in order."""
    key = key or (lambda c: (c.kind, c.old, c.new, c.regression))
    alike: Dict[tuple, List[Change]] = defaultdict(list)
    for change in changes:
        alike[key(change)].append(change)
    out, done = [], set()
    for change in changes:
        k = key(change)
        group = alike[k]
        if len(group) <= COLLAPSE_OVER:
            out.append(change)
        elif k not in done:
            done.add(k)
            subjects = [c.subject.split(" ", 1)[1] if change.kind == "finding" else c.subject for c in group]
            head = f"{change.subject.split(' ', 1)[0]} on " if change.kind == "finding" else ""
            out.append(Change(change.kind, f"{len(group)} devices", change.old, change.new, change.regression,
                              f"{head}{len(group)} devices {verb} ({_before_after(change)}): {_named(subjects)}"))
    return out


def _before_after(change: Change) -> str:
    return f"{change.old or 'none'} -> {change.new or 'none'}"


def _named(addresses: List[str]) -> str:
    if len(addresses) <= NAMED:
        return ", ".join(addresses)
    return ", ".join(addresses[:NAMED]) + f" and {len(addresses) - NAMED} more"
