"""The hosts of two sides paired, compared, and summed up into the ``diff`` document and exit code.

Two single files are one host at two times, whatever its name says (a renamed host is a
change). Otherwise hosts pair by label (the snapshot's file name, the fleet report's label). A
host only in OLD is a regression: it can no longer be shown ready. A host only in NEW is a
change. A host either side could not read is *incomplete* (exit 3, as a scan that could not
reach a host), and the other hosts are still compared.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import List, Optional

from scanner.drift.compare import Change, compare_hosts
from scanner.drift.sides import HostState, Side

SCHEMA_VERSION = "1.0"
EXIT_SAME, EXIT_REGRESSED, EXIT_INCOMPLETE = 0, 1, 3


@dataclass
class HostDiff:
    host: str
    status: str  # regressed | changed | unchanged | gone | new | unreadable
    changes: List[Change] = field(default_factory=list)
    reason: Optional[str] = None
    compared: List[str] = field(default_factory=list)  # kinds of input each side was: ["snapshot", "report"]

    @property
    def regressions(self) -> List[Change]:
        return [c for c in self.changes if c.regression]

    def to_dict(self) -> dict:
        out = {"host": self.host, "status": self.status, "compared": self.compared,
               "changes": [c.to_dict() for c in self.changes]}
        if self.reason:
            out["reason"] = self.reason
        return out


def pair_sides(old: Side, new: Side) -> List[HostDiff]:
    if old.single and new.single:
        now = new.hosts[0]
        return [host_diff(now.hostname or now.label, old.hosts[0], now)]
    before = {h.label: h for h in old.hosts}
    after = {h.label: h for h in new.hosts}
    diffs = []
    for label in sorted(set(before) | set(after)):
        was, now = before.get(label), after.get(label)
        if now is None:
            diffs.append(HostDiff(label, "gone", reason=f"in {old.path} but not in {new.path}: it can no longer be "
                                                        "shown ready", compared=[was.kind]))
        elif was is None:
            diffs.append(HostDiff(label, "new", reason=f"in {new.path} only", compared=[now.kind]))
        else:
            diffs.append(host_diff(label, was, now))
    return diffs


def host_diff(label: str, old: HostState, new: HostState) -> HostDiff:
    kinds = [old.kind, new.kind]
    if old.error or new.error:
        reason = "; ".join(f"{side}: {state.error}" for side, state in (("OLD", old), ("NEW", new)) if state.error)
        return HostDiff(label, "unreadable", reason=reason, compared=kinds)
    changes = compare_hosts(old, new)
    status = "regressed" if any(c.regression for c in changes) else "changed" if changes else "unchanged"
    return HostDiff(label, status, changes, compared=kinds)


def exit_code(diffs: List[HostDiff]) -> int:
    """3 when a host could not be compared, else 1 on any regression (a host gone is one), else 0."""
    if any(d.status == "unreadable" for d in diffs):
        return EXIT_INCOMPLETE
    if any(d.status in ("regressed", "gone") for d in diffs):
        return EXIT_REGRESSED
    return EXIT_SAME


def diff_document(old: Side, new: Side, diffs: List[HostDiff]) -> dict:
    from scanner import __version__

    counts = {status: sum(d.status == status for d in diffs)
              for status in ("regressed", "changed", "unchanged", "gone", "new", "unreadable")}
    return {
        "schema_version": SCHEMA_VERSION,
        "tool": {"name": "vfio-scan", "version": __version__},
        "old": old.path,
        "new": new.path,
        "hosts": [d.to_dict() for d in diffs],
        "summary": dict(hosts=len(diffs), **counts,
                        regressions=sum(len(d.regressions) for d in diffs) + counts["gone"],
                        exit_code=exit_code(diffs)),
    }
