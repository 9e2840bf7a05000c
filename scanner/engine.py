"""The engine: run every rule over one host's facts and collect findings.

Rules are pure, but plugins can be buggy: a rule that raises becomes an ``error`` finding (the
scan goes on, exit code 3), and a rule that returns something other than findings is caught here,
at the boundary, with the plugin's name.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import Any, FrozenSet, Iterable, List, Optional, Sequence, Tuple

from scanner.model import PHASES, SEVERITIES, STATUSES, Evidence, Finding, Rule, Step


@dataclass(frozen=True)
class Scan:
    """What a scan was asked to do; rules read it beside the facts.

    ``targets`` are the devices the selectors matched (:class:`scanner.targets.Target`, in address
    order); ``unmatched`` the selectors that matched nothing, which rule VFIO-010 reports.
    ``policy`` (:class:`scanner.policy.Policy`) changes severities and applies waivers once the
    rules ran (:func:`scanner.scanning.scan_host`); rules need not look at it.
    """

    targets: Tuple = ()
    unmatched: Tuple = ()
    fail_on: str = "fail"
    options: dict = field(default_factory=dict)
    policy: Optional[Any] = None

    @property
    def has_targets(self) -> bool:
        return bool(self.targets or self.unmatched)

    # Cached, not recomputed: device rules and their helpers ask for these once per target, and a
    # scan may have thousands of targets (a frozen dataclass still has a __dict__ to cache in).
    @cached_property
    def target_addresses(self) -> Tuple[str, ...]:
        return tuple(t.address for t in self.targets)

    @cached_property
    def target_set(self) -> FrozenSet[str]:
        """The targets' addresses as a set, for membership tests (a frozenset keeps its hash)."""
        return frozenset(self.target_addresses)

    @cached_property
    def memo(self) -> dict:
        """What helpers derive from this scan's targets once rather than once per target
        (:func:`scanner.binding._per_scan`); a new Scan (``dataclasses.replace``) starts empty."""
        return {}


def _describe(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


def _usable_subject(subject) -> bool:
    """``host``, a PCI address, a selector: one printable word (it names JUnit cases and script comments)."""
    # split() cuts at exactly the characters isspace() names: one piece, the subject itself, means none
    return isinstance(subject, str) and bool(subject) and subject.isprintable() and subject.split() == [subject]


def _malformed_step(step) -> str:
    if not isinstance(step, Step):
        return f"a remediation step that is a {type(step).__name__}, not a Step"
    if step.phase not in PHASES:
        return f"a remediation step with an unknown phase {step.phase!r}"
    if not isinstance(step.summary, str) or not step.summary.strip():
        return "a remediation step without a summary"
    for name in ("commands", "undo"):
        lines = getattr(step, name)
        if not isinstance(lines, tuple) or not all(isinstance(c, str) for c in lines):
            return f"a remediation step whose {name} are not all strings"
    if not all(isinstance(getattr(step, flag), bool) for flag in ("requires_reboot", "manual", "persistent")):
        return "a remediation step with a flag that is not true or false"
    if step.action is not None and not (isinstance(step.action, Mapping) and isinstance(step.action.get("kind"), str)):
        return "a remediation step whose action is not a mapping with a 'kind'"
    return ""


def _malformed(item) -> str:
    """Why a rule's output cannot be reported as it is, or '' when it is a proper finding.

    Checked here, at the boundary, because a malformed finding would otherwise crash a renderer
    far from the plugin that made it (frozen dataclasses can still be altered with
    ``object.__setattr__``).
    """
    if not isinstance(item, Finding):
        return f"{type(item).__name__}, not a Finding"
    if item.status not in STATUSES:
        return f"a finding with an unknown status {item.status!r}"
    if item.status == "waived" or item.waiver is not None:
        return "a waived finding (waivers come from a policy, never from a rule)"
    if item.severity is not None and item.severity not in SEVERITIES:
        return f"a finding with an unknown severity {item.severity!r}"
    if not isinstance(item.message, str) or not item.message.strip():
        return "a finding without a message"
    if not _usable_subject(item.subject):
        return f"a finding with an unusable subject {item.subject!r}"
    if not isinstance(item.observed, str) or not isinstance(item.expected, str):
        return "a finding whose observed or expected is not text"
    if not isinstance(item.evidence, tuple) or not all(
            isinstance(e, Evidence) and isinstance(e.source, str) and isinstance(e.value, str) for e in item.evidence):
        return "a finding whose evidence is not all Evidence(source, value) text"
    if not isinstance(item.remediation, tuple):
        return "a finding whose remediation is not a list of steps"
    for step in item.remediation:
        problem = _malformed_step(step)
        if problem:
            return problem
    return ""


def _unreadable_targets(facts, scan: Scan) -> dict:
    """Targets whose sysfs state cannot be read (address -> why): no device rule can judge them."""
    reason_of = getattr(facts, "device_reason", None)
    if reason_of is None:
        return {}
    found = {}
    for target in scan.targets:
        why = reason_of(target.address)
        if why:
            found[target.address] = why
    return found


def run_rule(rule: Rule, facts, scan: Scan) -> List[Finding]:
    if rule.scope == "device" and not scan.has_targets:
        return [Finding.skip("no device targets given (select devices with --device or --class)").bind(rule)]
    unreadable = _unreadable_targets(facts, scan) if rule.scope == "device" else {}
    skipped: List[Finding] = []
    if unreadable:  # judged by no rule: a missing driver link does not mean "unbound"
        skipped = [Finding.skip(f"cannot read this device's state in sysfs ({why})", subject=address).bind(rule)
                   for address, why in unreadable.items()]
        scan = replace(scan, targets=tuple(t for t in scan.targets if t.address not in unreadable))
    who = f"rule {rule.id} from plugin {rule.plugin or '?'}"
    try:
        produced = rule.check(facts, scan) or ()
        if isinstance(produced, (str, bytes, Mapping, Finding)):  # iterable, but not findings
            return skipped + [Finding.error(f"{who} returned a {type(produced).__name__}, not a list of findings"
                                            ).bind(rule)]
        produced = list(produced)
    except (Exception, SystemExit) as exc:  # a plugin's exit() is its failure, not the end of the scan
        return skipped + [Finding.error(f"{who} failed: {_describe(exc)}").bind(rule)]
    findings: List[Finding] = list(skipped)
    refused: dict = {}  # subject -> what was wrong: one error per subject, however many bad items
    for item in produced:
        problem = _malformed(item)
        if not problem:
            try:
                findings.append(item.bind(rule))
                continue
            except Exception as exc:  # whatever _malformed did not foresee: still this plugin's error
                problem = f"an unusable finding ({_describe(exc)})"
        subject = item.subject if isinstance(item, Finding) and _usable_subject(item.subject) else "host"
        refused.setdefault(subject, []).append(problem)
    for subject, problems in refused.items():
        more = f" (and {len(problems) - 1} more malformed item(s))" if len(problems) > 1 else ""
        findings.append(Finding.error(f"{who} returned {problems[0]}{more}", subject=subject).bind(rule))
    if not findings and rule.scope == "device" and not scan.targets:
        findings.append(Finding.skip("no selected device exists on this host (see VFIO-010)").bind(rule))
    elif not findings:
        findings.append(Finding.error(f"rule {rule.id} from plugin {rule.plugin or '?'} produced no finding").bind(rule))
    return findings


def run_rules(rules: Iterable[Rule], facts, scan: Scan) -> List[Finding]:
    findings: List[Finding] = []
    for rule in sorted(rules, key=lambda r: r.id):
        findings.extend(run_rule(rule, facts, scan))
    return findings


def select_rules(rules: Sequence[Rule], only: Sequence[str] = (), skip: Sequence[str] = ()) -> List[Rule]:
    """Rules to run: all, or those named by ``only``, minus ``skip`` (ids or names)."""
    wanted = set(only)
    unwanted = set(skip)
    return [r for r in rules if (not wanted or r.id in wanted or r.name in wanted)
            and r.id not in unwanted and r.name not in unwanted]
