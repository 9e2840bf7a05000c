"""Policies: what a host must look like, and the waivers that accept a known gap until a date.

A :class:`Policy` is read from a file by :mod:`scanner.policy.file` (TOML or JSON, validated by
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

from typing import TYPE_CHECKING, Dict, List, Mapping, Optional, Sequence, Tuple

from scanner.base.record import field, record, replace
from scanner.engine.model import Finding

if TYPE_CHECKING:  # datetime is imported only when a date is needed: a scan without a policy has none
    from datetime import date

    from scanner.policy.waivers import Waiver, WaiverResult, apply_waivers  # noqa: F401 (exported lazily, below)

#: Defined in scanner/policy/waivers.py, imported from there only when a policy has waivers (a plain
#: scan needs neither their classes nor fnmatch), and still importable from here.
_FROM_WAIVERS = ("WAIVABLE", "Waiver", "WaiverResult", "apply_waivers")


def __getattr__(name):
    if name in _FROM_WAIVERS:
        from scanner.policy import waivers

        return getattr(waivers, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def apply_severities(findings: Sequence[Finding], overrides: Mapping[str, str]) -> List[Finding]:
    """Every finding of a rule named in ``overrides`` gets that severity."""
    return [replace(f, severity=overrides[f.rule_id]) if f.rule_id in overrides else f for f in findings]


@record(frozen=True)
class Policy:
    """A policy file merged with the command line (an empty one when no file was given)."""

    file: Optional[str] = None
    description: str = ""
    targets: Tuple = ()  # scanner.facts.targets.Selector, in file order
    only: Tuple[str, ...] = ()  # run only these rules (ids); empty: all
    skip: Tuple[str, ...] = ()
    severity: Mapping[str, str] = field(default_factory=dict)
    fail_on: Optional[str] = None
    waivers: Tuple[Waiver, ...] = ()
    today: Optional[date] = None  # the date expiry is judged against; None: the local date when applied

    def apply(self, findings: Sequence[Finding], hostname: Optional[str]) -> Tuple[List[Finding], Optional[dict]]:
        """Severities, then waivers: (findings, the report's ``policy`` object or None without a file)."""
        findings = apply_severities(findings, self.severity)
        if self.file is None and not self.waivers:  # nothing to date: what apply_waivers would return
            return list(findings), None
        from datetime import date

        from scanner.policy.waivers import apply_waivers

        today = self.today or date.today()
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
