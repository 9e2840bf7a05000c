"""One host, start to finish: facts, rules, findings, report."""

from __future__ import annotations

import time
from typing import Iterable, Mapping, Optional, Sequence

from scanner import __version__
from scanner.base.record import replace
from scanner.engine.runner import Scan, unreadable_targets, run_rules
from scanner.facts import Facts
from scanner.engine.model import Rule
from scanner.engine.report import Report, local_timestamp


def host_info(facts: Facts) -> dict:
    info = {
        "hostname": facts.hostname,
        "kernel": facts.release,
        "arch": facts.arch,
        "cpu_vendor": facts.cpu.vendor if facts.cpu else None,
        "source": facts.host.source,
    }
    collected = getattr(facts.host, "collected_at", None)  # a snapshot: the verdict is as of then
    if collected:
        info["collected_at"] = collected
    return info


#: The note of a host on which every rule skipped (nothing it needs could be read: a capture of almost nothing,
#: a tree of denied files): no verdict at all, so incomplete (exit 3), never READY.
NOTHING_JUDGED = "every check was skipped (what the rules need could not be read): no rule could judge this host"


def scan_host(host, rules: Iterable[Rule], scan: Scan, selectors: Sequence = (), vfs: Mapping[str, int] = None,
              facts: Optional[Facts] = None) -> Report:
    """Scan one host. ``selectors``/``vfs`` (parsed by :mod:`scanner.facts.targets`) are matched against
    the host's own devices here, so the same request works on every host of a fleet.

    ``facts`` lets a caller keep the very facts the rules judged (``qemu-args`` builds its
    arguments from them); by default they are made here from ``host``.
    """
    started = local_timestamp()
    clock = time.perf_counter()
    facts = facts if facts is not None else Facts(host)
    if selectors or vfs:
        from scanner.facts.targets import resolve  # a scan without targets needs none of it

        targets, unmatched = resolve(selectors, vfs or {}, facts.pci.fields)  # ids and class: no full reads
        scan = replace(scan, targets=tuple(targets), unmatched=tuple(unmatched))
    rules = list(rules)
    # a target whose sysfs state cannot be read (a dangling driver link) is skipped by every device rule:
    # nothing fails, yet nothing judged it, so the report says so and is incomplete (exit 3), never READY
    unreadable = unreadable_targets(facts, scan) \
        if scan.has_targets and any(rule.scope == "device" for rule in rules) else {}
    findings = run_rules(rules, facts, scan, unreadable)
    notes = [f"{address}: its state cannot be read in sysfs ({why}), so no rule could judge it: no verdict on it"
             for address, why in unreadable.items()]
    if findings and all(f.status == "skip" for f in findings):  # READY would mean "nothing was checked"
        notes.append(NOTHING_JUDGED)
    notes += _unmatched_unknown(facts, scan)
    policy_info = None
    if scan.policy is not None:  # severities and waivers: one place, after every rule ran
        findings, policy_info = scan.policy.apply(findings, facts.hostname)
    return Report(
        host=host_info(facts),
        findings=findings,
        started_at=started,
        duration_s=time.perf_counter() - clock,
        targets=[str(t) for t in scan.targets],
        devices=_target_devices(facts, scan.targets),
        topology=_topology(facts) if scan.options.get("topology") else None,
        tool={"name": "vfio-scan", "version": __version__},
        fail_on=scan.fail_on,
        policy=policy_info,
        notes=notes,
    )


def _unmatched_unknown(facts: Facts, scan: Scan) -> list:
    """A selector that matched no device while some device's ids cannot be read: that may be the one, so
    the devices asked for were not all judged (incomplete), never "absent"."""
    if not scan.unmatched:
        return []
    from scanner.facts.targets import unknown_to

    notes = []
    for selector in scan.unmatched:
        unknown = unknown_to(facts.pci.fields, selector)
        if unknown:
            notes.append(f"{selector.text}: matched no device, but the ids or class of {', '.join(unknown[:3])}"
                         f"{' ...' if len(unknown) > 3 else ''} cannot be read: no verdict on it")
    return notes


def _target_devices(facts: Facts, targets) -> list:
    """Each target that sysfs shows, named (ids, class, driver, pci.ids names) for the outputs;
    none without targets, so a host scan does not read pci.ids."""
    if not targets:
        return []
    from scanner.facts.device_identity import device_entry

    return [device_entry(facts, t.address) for t in targets if t.address in facts.pci]


def _topology(facts: Facts) -> list:
    from scanner.facts.topology import pci_tree

    return pci_tree(facts)
