"""Policies: what a host must look like, and the waivers that accept a known gap until a date.

A :class:`Policy` is read from a file by :mod:`scanner.policy_file` (TOML or JSON, validated by
``schemas/policy.schema.json``) and merged with the command line by :func:`merge_cli`. It gives
the scan its targets, which rules run, their severities and ``fail_on``; after the rules ran,
:meth:`Policy.apply` changes severities and applies the waivers, in this one place.

Waiver semantics (README "Policy files"):

* A waiver names a rule id, optionally a ``subject`` (``host``, a PCI address or a glob of them)
  and a ``host`` glob (matched, without regard to case, against the scanned host's hostname or
  its short name). It covers a ``fail`` or ``warn`` finding of that rule and subject on that host:
  the finding becomes ``waived``, keeps its evidence and remediation, records ``original_status``
  and the waiver, and no longer counts toward readiness or the exit code. ``pass``, ``skip`` and
  ``error`` are never waived: a rule that could not judge is not an accepted gap.
* ``expires`` is the **last day** on which the waiver applies, in the local date of the machine
  running vfio-scan: valid through that whole day, expired from the next. (InSpec's early waiver
  code compared ``expiration_date < Date.today`` — the same meaning; its current code turns the
  date into midnight at its *start* and compares with the clock, so there the date itself is
  already expired. We keep the calendar meaning: a date names a whole day.)
* An expired waiver covers nothing; the report lists it with the findings it would have covered.
  A waiver for this host that is not expired and covers nothing is listed as unused, so stale
  waivers get cleaned up. The first matching waiver in file order wins.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field, replace
from datetime import date
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

from scanner.model import Finding

WAIVABLE = ("fail", "warn")


@dataclass(frozen=True)
class Waiver:
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


@dataclass
class WaiverResult:
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


def apply_severities(findings: Sequence[Finding], overrides: Mapping[str, str]) -> List[Finding]:
    """Every finding of a rule named in ``overrides`` gets that severity."""
    return [replace(f, severity=overrides[f.rule_id]) if f.rule_id in overrides else f for f in findings]


@dataclass(frozen=True)
class Policy:
    """A policy file merged with the command line (an empty one when no file was given)."""

    file: Optional[str] = None
    description: str = ""
    targets: Tuple = ()  # scanner.targets.Selector, in file order
    only: Tuple[str, ...] = ()  # run only these rules (ids); empty: all
    skip: Tuple[str, ...] = ()
    severity: Mapping[str, str] = field(default_factory=dict)
    fail_on: Optional[str] = None
    waivers: Tuple[Waiver, ...] = ()
    today: Optional[date] = None  # the date expiry is judged against; None: the local date when applied

    def apply(self, findings: Sequence[Finding], hostname: Optional[str]) -> Tuple[List[Finding], Optional[dict]]:
        """Severities, then waivers: (findings, the report's ``policy`` object or None without a file)."""
        today = self.today or date.today()
        findings = apply_severities(findings, self.severity)
        result = apply_waivers(findings, self.waivers, hostname, today)
        if self.file is None:
            return result.findings, None
        info = {"file": self.file, "date": today.isoformat(), "waivers": len(self.waivers),
                "expired_waivers": result.expired, "unused_waivers": result.unused}
        if self.description:
            info["description"] = self.description
        return result.findings, info


def merge_cli(policy: Optional[Policy], only: Sequence[str] = (), skip: Sequence[str] = (),
              severity: Optional[Mapping[str, str]] = None, fail_on: Optional[str] = None) -> Policy:
    """The command line over the policy: ``--rule`` replaces its ``only`` list (and runs a rule it
    skips), ``--skip-rule`` adds to ``skip``, ``--severity`` and ``--fail-on`` win. Rule names are
    expected as ids here (the command maps names to ids)."""
    base = policy or Policy()
    merged_skip = tuple(r for r in base.skip if r not in only) + tuple(r for r in skip if r not in base.skip)
    merged_severity: Dict[str, str] = dict(base.severity)
    merged_severity.update(severity or {})
    return replace(base, only=tuple(only) or base.only, skip=merged_skip, severity=merged_severity,
                   fail_on=fail_on or base.fail_on)


__all__ = ["Waiver", "WaiverResult", "Policy", "apply_waivers", "apply_severities", "merge_cli"]
