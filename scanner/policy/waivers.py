"""Waivers: a policy's accepted gaps, and how they apply to findings (semantics: :mod:`scanner.policy.model`).

Apart from :mod:`scanner.policy.model` so that a scan without waivers imports neither these two
classes nor fnmatch; ``scanner.policy.model`` still exports every name defined here.
"""

from __future__ import annotations

import fnmatch
from typing import TYPE_CHECKING, List, Optional, Sequence

from scanner.base.record import field, record, replace
from scanner.engine.model import Finding

if TYPE_CHECKING:
    from datetime import date

WAIVABLE = ("fail", "warn")


@record(frozen=True)
class Waiver:
    """One waiver of a policy file (see :mod:`scanner.policy.model` for what it covers)."""

    rule: str
    justification: str
    subject: Optional[str] = None  # "host", an address or a glob (lower case); None: every subject
    host: Optional[str] = None  # hostname glob; None: every host
    expires: Optional[date] = None  # the last day it applies
    owner: Optional[str] = None
    source: str = ""  # where it is written: "policy.toml: waivers[2] (line 31)"

    def applies_to_host(self, hostname: Optional[str]) -> bool:
        if self.host is None:
            return True
        name = (hostname or "").lower()
        pattern = self.host.lower()
        return fnmatch.fnmatchcase(name, pattern) or fnmatch.fnmatchcase(name.split(".", 1)[0], pattern)

    def covers(self, finding: Finding) -> bool:
        """Same rule and subject (status and expiry are judged by :func:`apply_waivers`)."""
        if finding.rule_id != self.rule:
            return False
        return self.subject is None or fnmatch.fnmatchcase(finding.subject.lower(), self.subject)

    def expired(self, today: date) -> bool:
        return self.expires is not None and today > self.expires

    def to_dict(self) -> dict:
        data = {"rule": self.rule, "subject": self.subject, "host": self.host,
                "justification": self.justification, "expires": self.expires.isoformat() if self.expires else None}
        if self.owner:
            data["owner"] = self.owner
        if self.source:
            data["source"] = self.source
        return data


@record
class WaiverResult:
    """Findings after waivers, and the waivers that expired or covered nothing."""

    findings: List[Finding]
    expired: List[dict] = field(default_factory=list)  # waiver + "would_cover": ["RULE subject", ...]
    unused: List[dict] = field(default_factory=list)  # waiver + "reason"


def _label(finding: Finding) -> str:
    return f"{finding.rule_id} {finding.subject}"


def apply_waivers(findings: Sequence[Finding], waivers: Sequence[Waiver], hostname: Optional[str],
                  today: date) -> WaiverResult:
    """Waive the ``fail``/``warn`` findings that a current waiver for this host covers. Pure:
    the date is given (``today``), nothing is read."""
    here = [(i, w) for i, w in enumerate(waivers) if w.applies_to_host(hostname)]
    active = [(i, w) for i, w in here if not w.expired(today)]
    used = set()
    out: List[Finding] = []
    for finding in findings:
        if finding.status in WAIVABLE:
            hit = next(((i, w) for i, w in active if w.covers(finding)), None)
            if hit:
                used.add(hit[0])
                finding = replace(finding, status="waived", original_status=finding.status, waiver=hit[1].to_dict())
        out.append(finding)
    result = WaiverResult(out)
    for i, w in here:
        if w.expired(today):
            result.expired.append(dict(w.to_dict(), would_cover=[_label(f) for f in findings
                                                                  if f.status in WAIVABLE and w.covers(f)]))
        elif i not in used:
            result.unused.append(dict(w.to_dict(), reason=_unused_reason(w, findings)))
    return result


def _unused_reason(waiver: Waiver, findings: Sequence[Finding]) -> str:
    of_rule = [f for f in findings if f.rule_id == waiver.rule]
    if not of_rule:
        return f"rule {waiver.rule} did not run"
    if any(f.status in WAIVABLE and waiver.covers(f) for f in findings):
        return "an earlier waiver already covers the same findings"
    where = f" for subject {waiver.subject}" if waiver.subject else ""
    return f"no failing or warning {waiver.rule} finding{where} on this host"
