"""The rule model: what a rule is, what it finds, and how a fix is described.

Rules are pure: they receive parsed facts and yield :class:`Finding` objects. A finding carries
the evidence it was based on and the remediation steps that would close the gap, so every output
format (table, JSON, JUnit, the remediation script) is built from the same objects.

May import: scanner.base.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from typing import Any, Callable, Iterable, Mapping, Optional, Sequence

from scanner.base.lazyre import lazy_compile

SEVERITIES = ("info", "low", "medium", "high", "critical")
STATUSES = ("pass", "fail", "warn", "skip", "error", "waived")
PHASES = ("firmware", "kernel", "boot", "modules", "sriov", "binding", "access")
SCOPES = ("host", "device")

#: Built-in rules are ``VFIO-NNN``; third-party plugins use their own prefix (``ACME-100``).
RULE_ID_PATTERN = lazy_compile(r"^[A-Z][A-Z0-9]{1,15}-[0-9]{3,4}\Z")  # \Z: "$" would let "ACME-100\n" through
RULE_NAME_PATTERN = lazy_compile(r"^[a-z][a-z0-9]*(-[a-z0-9]+)*\Z")

#: How a finding that holds now but not after a reboot begins its message (VFIO-016, VFIO-017):
#: the report counts them apart, since READY must also mean "after the next boot".
LOST_AT_NEXT_BOOT = "works now, lost at next boot"

#: How bad each status is when several problems are folded into one finding.
_STATUS_WEIGHT = {"pass": 0, "skip": 1, "waived": 1, "warn": 2, "fail": 3, "error": 4}


def severity_rank(severity: str) -> int:
    """Position of a severity in :data:`SEVERITIES` (higher is worse)."""
    return SEVERITIES.index(severity)


def worst_status(statuses: Iterable[str]) -> str:
    """The most serious of several statuses; ``pass`` when there are none."""
    return max(statuses, key=_STATUS_WEIGHT.__getitem__, default="pass")


class RuleDefinitionError(ValueError):
    """A rule's metadata is invalid; raised at registration so a bad plugin is caught early."""


@dataclass(frozen=True)
class Evidence:
    """One thing that was read: the path or command (``source``) and what it said."""

    source: str
    value: str

    def to_dict(self) -> dict:
        return {"source": self.source, "value": self.value}


@dataclass(frozen=True)
class Step:
    """One remediation step.

    ``commands`` are shell lines for a person to read and run; every value interpolated into
    them has been validated and quoted. ``action`` is the same step in machine form, which the
    remediation-script export turns into a guarded, idempotent block.
    """

    summary: str
    phase: str
    commands: tuple = ()
    requires_reboot: bool = False
    manual: bool = False
    persistent: bool = False
    undo: tuple = ()
    action: Optional[Mapping[str, Any]] = None

    def __post_init__(self):
        if self.phase not in PHASES:
            raise ValueError(f"unknown remediation phase {self.phase!r}; one of {', '.join(PHASES)}")
        object.__setattr__(self, "commands", tuple(self.commands))
        object.__setattr__(self, "undo", tuple(self.undo))

    def to_dict(self) -> dict:
        data = {
            "summary": self.summary,
            "commands": list(self.commands),
            "phase": self.phase,
            "requires_reboot": self.requires_reboot,
            "manual": self.manual,
            "persistent": self.persistent,
        }
        if self.undo:
            data["undo"] = list(self.undo)
        if self.action is not None:
            data["action"] = dict(self.action)
        return data


def _check_finding(status: str, severity: Optional[str]) -> None:
    """What every finding is checked for, however it is made (its constructor or a rule's maker)."""
    if status not in STATUSES:
        raise ValueError(f"unknown finding status {status!r}")
    if severity is not None and severity not in SEVERITIES:
        raise ValueError(f"unknown severity {severity!r}")


@dataclass(frozen=True)
class Finding:
    """What one rule concluded about one subject (``host`` or a PCI address).

    Rules build findings with :meth:`passed`, :meth:`fail`, :meth:`warn` and :meth:`skip`; the
    engine then stamps them with the rule's id, name and default severity via :meth:`bind`.
    """

    status: str
    message: str
    subject: str = "host"
    observed: str = ""
    expected: str = ""
    evidence: tuple = ()
    remediation: tuple = ()
    severity: Optional[str] = None
    rule_id: str = ""
    rule: str = ""
    title: str = ""
    waiver: Optional[Mapping[str, Any]] = None
    original_status: Optional[str] = None

    def __post_init__(self):
        _check_finding(self.status, self.severity)
        object.__setattr__(self, "evidence", tuple(self.evidence))
        object.__setattr__(self, "remediation", tuple(self.remediation))

    # -- constructors used by rules -------------------------------------------------------
    @classmethod
    def _make(cls, status: str, message: str, **kw) -> "Finding":
        """``cls(status=status, message=message, **kw)``: the same finding, or the same error.

        Why not the dataclass's own ``__init__``: a scan of thousands of targets makes over a hundred
        thousand findings, and a frozen dataclass sets each of its thirteen fields through
        ``object.__setattr__``. The model's own Finding is filled in one step here, checked as
        :meth:`__post_init__` checks it; a subclass, or an argument ``__init__`` would refuse, goes
        the ordinary way."""
        if cls is not Finding or not _OPTIONAL_FIELDS.issuperset(kw):
            return cls(status=status, message=message, **kw)
        _check_finding(status, kw.get("severity"))
        finding = object.__new__(Finding)
        state = finding.__dict__
        state.update(_DEFAULTS)  # every field, in the order __init__ sets them, names shared
        state.update(kw)
        state["status"], state["message"] = status, message
        if type(state["evidence"]) is not tuple:
            state["evidence"] = tuple(state["evidence"])
        if type(state["remediation"]) is not tuple:
            state["remediation"] = tuple(state["remediation"])
        return finding

    @classmethod
    def passed(cls, message: str, **kw) -> "Finding":
        return cls._make("pass", message, **kw)

    @classmethod
    def fail(cls, message: str, **kw) -> "Finding":
        return cls._make("fail", message, **kw)

    @classmethod
    def warn(cls, message: str, **kw) -> "Finding":
        return cls._make("warn", message, **kw)

    @classmethod
    def skip(cls, message: str, **kw) -> "Finding":
        """A rule that could not judge: ``message`` must say why (not applicable, unreadable...)."""
        return cls._make("skip", message, **kw)

    @classmethod
    def error(cls, message: str, **kw) -> "Finding":
        return cls._make("error", message, **kw)

    # -- engine side ----------------------------------------------------------------------
    def bind(self, rule: "Rule") -> "Finding":
        """Stamp the rule's identity on the finding (its own severity wins when it set one)."""
        return replace(
            self,
            rule_id=rule.id,
            rule=rule.name,
            title=rule.title,
            severity=self.severity or rule.severity,
        )

    def to_dict(self) -> dict:
        data = {
            "rule_id": self.rule_id,
            "rule": self.rule,
            "title": self.title,
            "subject": self.subject,
            "status": self.status,
            "severity": self.severity or "info",
            "message": self.message,
            "observed": self.observed,
            "expected": self.expected,
            "evidence": [e.to_dict() for e in self.evidence],
            "remediation": [s.to_dict() for s in self.remediation],
        }
        if self.waiver is not None:
            data["waiver"] = dict(self.waiver)
            data["original_status"] = self.original_status
        return data


#: every field of a Finding with its default, as a finding's own attributes: copied from a finding made by
#: ``__init__``, each new finding shares its attribute names with every other (a plain dict of the same
#: fields would give each finding a table of its own, three times the size)
_DEFAULTS = Finding(status="pass", message="").__dict__
_OPTIONAL_FIELDS = frozenset(f.name for f in fields(Finding)) - {"status", "message"}

CheckFunction = Callable[[Any, Any], Iterable[Finding]]


@dataclass(frozen=True)
class Rule:
    """One requirement of the passthrough chain.

    ``check(facts, scan)`` yields findings: one per subject (the host, or each target device).
    ``docs`` is the long explanation shown by ``vfio-scan explain``; a rule without it is
    rejected at registration.
    """

    id: str
    name: str
    title: str
    scope: str
    severity: str
    check: CheckFunction
    docs: str
    plugin: str = field(default="", compare=False)

    def validate(self) -> None:
        problems = []
        if not isinstance(self.id, str) or not RULE_ID_PATTERN.match(self.id):
            problems.append(f"id {self.id!r} does not match {RULE_ID_PATTERN.pattern}")
        if not isinstance(self.name, str) or not RULE_NAME_PATTERN.match(self.name):
            problems.append(f"name {self.name!r} is not lower-case words joined by '-'")
        if not isinstance(self.title, str) or not self.title.strip():
            problems.append("title is empty")
        if self.scope not in SCOPES:
            problems.append(f"scope {self.scope!r} is not one of {', '.join(SCOPES)}")
        if self.severity not in SEVERITIES:
            problems.append(f"severity {self.severity!r} is not one of {', '.join(SEVERITIES)}")
        if not callable(self.check):
            problems.append("check is not callable")
        if not isinstance(self.docs, str) or not self.docs.strip():
            problems.append("docs are empty (give the rule a docstring: what, why, how, fix)")
        if problems:
            raise RuleDefinitionError(f"rule {self.id!r}: " + "; ".join(problems))


def fold(findings: Sequence[Finding], subject: str = "host") -> Finding:
    """Fold several partial findings about one subject into one finding.

    A rule that notices several problems (an invalid token *and* a security downgrade) still
    reports one finding per subject, so that JUnit test names stay unique. The folded finding
    has the worst status, the messages joined, and all evidence and remediation.
    """
    if len(findings) == 1:
        return findings[0]
    status = worst_status(f.status for f in findings)
    leading = [f for f in findings if f.status == status]
    others = [f for f in findings if f.status != status and f.status != "pass"]
    message = "; ".join(f.message for f in leading + others)
    evidence, remediation = [], []
    for f in findings:
        evidence.extend(e for e in f.evidence if e not in evidence)
        remediation.extend(s for s in f.remediation if s not in remediation)
    severities = [f.severity for f in leading if f.severity]
    return Finding(
        status=status,
        message=message,
        subject=subject,
        observed="; ".join(f.observed for f in leading + others if f.observed),
        expected="; ".join(f.expected for f in leading + others if f.expected),
        evidence=evidence,
        remediation=remediation,
        severity=max(severities, key=severity_rank) if severities else None,
    )
