"""The engine: run every rule over one host's facts and collect findings.

Rules are pure, but plugins can be buggy: a rule that raises becomes an ``error`` finding (the
scan goes on, exit code 3), and a rule that returns something other than findings is caught here,
at the boundary, with the plugin's name.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, List, Sequence, Tuple

from scanner.model import Finding, Rule


@dataclass(frozen=True)
class Scan:
    """What a scan was asked to do; rules read it beside the facts.

    ``targets`` are the devices the selectors matched (:class:`scanner.targets.Target`, in address
    order); ``unmatched`` the selectors that matched nothing, which rule VFIO-010 reports.
    """

    targets: Tuple = ()
    unmatched: Tuple = ()
    fail_on: str = "fail"
    options: dict = field(default_factory=dict)

    @property
    def has_targets(self) -> bool:
        return bool(self.targets or self.unmatched)

    @property
    def target_addresses(self) -> Tuple[str, ...]:
        return tuple(t.address for t in self.targets)


def _describe(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


def _malformed(item) -> str:
    """Why a rule's output cannot be reported as it is, or '' when it is a proper finding."""
    if not isinstance(item, Finding):
        return f"{type(item).__name__}, not a Finding"
    if not isinstance(item.message, str) or not item.message.strip():
        return "a finding without a message"
    if not isinstance(item.subject, str) or not item.subject.strip() or any(c.isspace() for c in item.subject):
        return f"a finding with an unusable subject {item.subject!r}"
    return ""


def run_rule(rule: Rule, facts, scan: Scan) -> List[Finding]:
    if rule.scope == "device" and not scan.has_targets:
        return [Finding.skip("no device targets given (select devices with --device or --class)").bind(rule)]
    try:
        produced = list(rule.check(facts, scan) or ())
    except Exception as exc:
        return [Finding.error(f"rule {rule.id} from plugin {rule.plugin or '?'} failed: {_describe(exc)}").bind(rule)]
    findings: List[Finding] = []
    for item in produced:
        problem = _malformed(item)
        if problem:
            findings.append(Finding.error(f"rule {rule.id} from plugin {rule.plugin or '?'} returned {problem}",
                                          subject=getattr(item, "subject", "host") if isinstance(item, Finding)
                                          and isinstance(item.subject, str) and item.subject else "host").bind(rule))
            continue
        findings.append(item.bind(rule))
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
