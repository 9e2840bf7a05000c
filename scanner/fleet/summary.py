"""The merged view of many reports: per host a name and a state, per rule how many hosts fail it.

Pure functions of reports, shared by the table's hosts x rules matrix and the JSON fleet
document, so that "12/40 hosts fail VFIO-004" means the same in both. A host's outcome for a
rule is the worst status among that rule's findings on it (a device rule has one finding per
target device): error, fail, warn, waived, skip, pass, in that order.
"""

from __future__ import annotations

from typing import Dict, List, Optional, Sequence

from scanner.model import STATUSES
from scanner.report import combined_exit_code

WORST_FIRST = ("error", "fail", "warn", "waived", "skip", "pass")
READINESS = ("READY", "READY_WITH_WARNINGS", "NOT_READY")


def host_name(report) -> str:
    """How a merged output names a host: the run's label for it (inventory name, snapshot file), else its hostname."""
    return report.host.get("label") or report.host.get("hostname") or "?"


def outcome(report, rule_id: str) -> Optional[str]:
    """The worst status of ``rule_id``'s findings on this host, or None when the rule did not run there."""
    statuses = {f.status for f in report.findings if f.rule_id == rule_id}
    return next((s for s in WORST_FIRST if s in statuses), None)


def rules_seen(reports) -> List[tuple]:
    """(rule_id, rule name, title) of every rule that ran on any host, in rule id order."""
    seen: Dict[str, tuple] = {}
    for report in reports:
        for f in report.findings:
            seen.setdefault(f.rule_id, (f.rule_id, f.rule, f.title))
    return [seen[k] for k in sorted(seen)]


def fleet_summary(reports: Sequence) -> dict:
    """The ``summary`` of the fleet document (schemas/fleet.schema.json)."""
    rules = []
    for rule_id, name, title in rules_seen(reports):
        hosts = {status: 0 for status in STATUSES}
        hosts["not_run"] = 0
        failing = []
        for report in reports:
            got = outcome(report, rule_id)
            hosts[got or "not_run"] += 1
            if got in ("fail", "error"):
                failing.append(host_name(report))
        rules.append({"rule_id": rule_id, "rule": name, "title": title, "hosts": hosts, "failing_hosts": failing})
    return {
        "hosts": len(reports),
        "readiness": {state: sum(1 for r in reports if r.readiness == state) for state in READINESS},
        "incomplete": sum(1 for r in reports if r.incomplete),
        "host_errors": [{"host": host_name(r), "reason": note} for r in reports for note in r.notes],
        "rules": rules,
        "exit_code": combined_exit_code(reports),
    }
