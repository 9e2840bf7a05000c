"""A report: one host's findings plus what a dashboard needs around them.

Readiness and the exit code are computed here and nowhere else, so every subcommand and
every output format agree (DESIGN: 0 ready, 1 not ready, 2 usage error, 3 incomplete).
"""

from __future__ import annotations

from operator import attrgetter
from typing import List, Optional, Sequence

from scanner.base.record import field, record
from scanner.engine.model import LOST_AT_NEXT_BOOT, SEVERITIES, STATUSES, Finding, severity_rank

SCHEMA_VERSION = "1.1"
FAIL_ON_CHOICES = ("warn", "fail") + SEVERITIES

EXIT_READY, EXIT_NOT_READY, EXIT_USAGE, EXIT_INCOMPLETE = 0, 1, 2, 3
_STATUS = attrgetter("status")


def is_blocking(finding: Finding, fail_on: str = "fail") -> bool:
    """Does this finding fail the run under ``--fail-on``?

    ``fail`` (default): any ``fail``. ``warn``: any ``fail`` or ``warn``. A severity: a ``fail``
    of that severity or worse. Waived findings never block.
    """
    if fail_on == "warn":
        return finding.status in ("fail", "warn")
    if finding.status != "fail":
        return False
    if fail_on == "fail":
        return True
    return severity_rank(finding.severity or "info") >= severity_rank(fail_on)


@record
class Report:
    """One host's scan: its findings, and what the outputs show around them."""

    host: dict
    findings: List[Finding]
    started_at: str
    duration_s: float
    targets: List[str] = field(default_factory=list)
    tool: dict = field(default_factory=dict)
    fail_on: str = "fail"
    notes: List[str] = field(default_factory=list)  # host-level problems (unreadable snapshot, ...)
    policy: Optional[dict] = None  # {file, date, waivers, expired_waivers, unused_waivers} with --policy
    devices: List[dict] = field(default_factory=list)  # each target as scanner/facts/device_identity.py names it
    #: every PCI function with its parent bridge and group (scanner/facts/topology.py), for the HTML
    #: picture; gathered only when an HTML output is asked for, and never part of the JSON
    topology: Optional[List[dict]] = None
    #: parts of outputs made ahead from the finished report, where it was made (a worker process
    #: of a fleet scan), by the renderer's module: never part of any output by themselves
    prepared: dict = field(default_factory=dict, repr=False, compare=False)

    @property
    def counts(self) -> dict:
        counts = {s: 0 for s in STATUSES}
        for f in self.findings:
            counts[f.status] += 1
        return counts

    @property
    def blocking(self) -> List[Finding]:
        if self.fail_on == "fail":  # is_blocking's answer for the default, without a call per finding
            return [f for f in self.findings if f.status == "fail"]
        return [f for f in self.findings if is_blocking(f, self.fail_on)]

    @property
    def lost_at_next_boot(self) -> List[Finding]:
        """Failing or warning findings that hold now but not after the next reboot."""
        return [f for f in self.findings if f.status in ("fail", "warn") and f.message.startswith(LOST_AT_NEXT_BOOT)]

    @property
    def incomplete(self) -> bool:
        # a fleet's table and exit code ask this of every host several times: the statuses compared in C
        return bool(self.notes) or "error" in map(_STATUS, self.findings)

    @property
    def readiness(self) -> str:
        if self.blocking or self.incomplete:
            return "NOT_READY"
        if any(f.status in ("warn", "fail") for f in self.findings):
            return "READY_WITH_WARNINGS"
        return "READY"

    @property
    def exit_code(self) -> int:
        """3 when the scan is incomplete (its verdict cannot be trusted), else 1 or 0."""
        if self.incomplete:
            return EXIT_INCOMPLETE
        return EXIT_NOT_READY if self.blocking else EXIT_READY

    def to_dict(self) -> dict:
        return self.to_dict_with([f.to_dict() for f in self.findings])

    def to_dict_with(self, findings) -> dict:
        """The report's document with ``findings`` in the place of its findings' list: a writer that
        streams the document passes one that makes each finding's dict only when it is written."""
        summary = dict(self.counts)
        summary["readiness"] = self.readiness
        summary["fail_on"] = self.fail_on
        summary["lost_at_next_boot"] = len(self.lost_at_next_boot)
        data = {
            "schema_version": SCHEMA_VERSION,
            "tool": self.tool,
            "host": self.host,
            "started_at": self.started_at,
            "duration_s": round(self.duration_s, 3),
            "targets": list(self.targets),
            **({"devices": [dict(d) for d in self.devices]} if self.devices else {}),
            "summary": summary,
            "findings": findings,
        }
        if self.notes:
            data["notes"] = list(self.notes)
        if self.policy is not None:
            data["policy"] = dict(self.policy)
        return data


def local_timestamp(ns: Optional[int] = None) -> str:
    """Now (or ``ns`` since the epoch) in local time with its UTC offset, to the second: exactly what
    ``datetime.now(timezone.utc).astimezone().isoformat(timespec="seconds")`` writes, from :mod:`time`,
    because importing datetime is a noticeable part of a lone scan's start-up."""
    import time

    secs = (time.time_ns() if ns is None else ns) // 1_000_000_000  # what isoformat(timespec="seconds") keeps
    local = time.localtime(secs)
    sign = "-" if local.tm_gmtoff < 0 else "+"
    minutes, seconds = divmod(abs(local.tm_gmtoff), 60)
    hours, minutes = divmod(minutes, 60)
    text = (f"{local.tm_year:04d}-{local.tm_mon:02d}-{local.tm_mday:02d}T{local.tm_hour:02d}:{local.tm_min:02d}:"
            f"{min(local.tm_sec, 59):02d}{sign}{hours:02d}:{minutes:02d}")  # datetime clamps a leap second
    return text + (f":{seconds:02d}" if seconds else "")


def combined_exit_code(reports: Sequence[Report]) -> int:
    codes = [r.exit_code for r in reports] or [EXIT_READY]
    return EXIT_INCOMPLETE if EXIT_INCOMPLETE in codes else max(codes)


def severity_filter(findings: Sequence[Finding], minimum: Optional[str]) -> List[Finding]:
    if not minimum:
        return list(findings)
    return [f for f in findings if severity_rank(f.severity or "info") >= severity_rank(minimum)]
