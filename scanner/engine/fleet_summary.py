"""The merged view of many reports: per host a name and a state, per rule how many hosts fail it.

Pure functions of reports, shared by the table's hosts x rules matrix and the JSON fleet
document, so that "12/40 hosts fail VFIO-004" means the same in both. A host's outcome for a
rule is the worst status among that rule's findings on it (a device rule has one finding per
target device): error, fail, warn, waived, skip, pass, in that order.
"""

from __future__ import annotations

from typing import Dict, List, Optional, Sequence

from scanner.engine.model import STATUSES
from scanner.engine.report import combined_exit_code

WORST_FIRST = ("error", "fail", "warn", "waived", "skip", "pass")
READINESS = ("READY", "READY_WITH_WARNINGS", "NOT_READY")


def host_name(report) -> str:
    """How a merged output names a host: the run's label for it (inventory name, snapshot file), else its hostname."""
    return report.host.get("label") or report.host.get("hostname") or "?"


def outcome(report, rule_id: str) -> Optional[str]:
    """The worst status of ``rule_id``'s findings on this host, or None when the rule did not run there."""
    return _worst({f.status for f in report.findings if f.rule_id == rule_id})


def outcomes(report) -> Dict[str, Optional[str]]:
    """:func:`outcome` of every rule that ran on this host, in one pass over its findings (a fleet's
    summary asks for every rule on every host: rule by rule, that was rules x findings per host)."""
    statuses: Dict[str, set] = {}
    for f in report.findings:
        statuses.setdefault(f.rule_id, set()).add(f.status)
    return {rule_id: _worst(seen) for rule_id, seen in statuses.items()}


def _worst(statuses) -> Optional[str]:
    return next((s for s in WORST_FIRST if s in statuses), None)


def rules_seen(reports) -> List[tuple]:
    """(rule_id, rule name, title) of every rule that ran on any host, in rule id order."""
    seen: Dict[str, tuple] = {}
    for report in reports:
        for f in report.findings:
            seen.setdefault(f.rule_id, (f.rule_id, f.rule, f.title))
    return [seen[k] for k in sorted(seen)]


def fleet_summary(reports: Sequence, per_host: Optional[Sequence[dict]] = None) -> dict:
    """The ``summary`` of the fleet document (schemas/fleet.schema.json). ``per_host``: each report's
    :func:`outcomes`, when the caller has them already (the table: a fleet's findings gone through once)."""
    rules = []
    per_host = per_host if per_host is not None else [outcomes(report) for report in reports]
    for rule_id, name, title in rules_seen(reports):
        hosts = {status: 0 for status in STATUSES}
        hosts["not_run"] = 0
        failing = []
        for report, outcome_of in zip(reports, per_host):
            got = outcome_of.get(rule_id)
            hosts[got or "not_run"] += 1
            if got in ("fail", "error"):
                failing.append(host_name(report))
        rules.append({"rule_id": rule_id, "rule": name, "title": title, "hosts": hosts, "failing_hosts": failing})
    states = [r.readiness for r in reports]
    return {
        "hosts": len(reports),
        "readiness": {state: states.count(state) for state in READINESS},
        "incomplete": sum(1 for r in reports if r.incomplete),
        "host_errors": [{"host": host_name(r), "reason": note} for r in reports for note in r.notes],
        "rules": rules,
        "exit_code": combined_exit_code(reports),
    }
