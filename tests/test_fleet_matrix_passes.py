"""The fleet table's hosts x rules matrix and per-rule lines: each host's findings gone through once
(not once per rule and status), with the very lines the cell-by-cell look-up gave (kept below)."""

from __future__ import annotations

import textwrap

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reports import matrix as fleet_table
from scanner.base.terminal_text import for_terminal
from scanner.engine.fleet_summary import fleet_summary, outcome, rules_seen
from scanner.engine.model import STATUSES, Finding
from scanner.engine.report import Report


def reference_matrix(reports, width):
    """``matrix`` as it was: one ``outcome`` look-up per cell, each host's state judged per block."""
    rules = rules_seen(reports)
    ids = [r[0] for r in rules]
    names = [for_terminal(name) for name in fleet_table.column_names(ids)]
    state_w = max([len("state")] + [len(fleet_table.state_of(r)) for r in reports])
    widths = [max(len(n), 4) for n in names]
    hosts = [fleet_table.shown_name(r) for r in reports]
    natural = max([len("host")] + [len(h) for h in hosts])
    fits_all = width - 2 - state_w - sum(w + 1 for w in widths)
    host_w = min(natural, max(fleet_table.MIN_HOST_WIDTH, fits_all), fleet_table.MAX_HOST_WIDTH)
    room = width - host_w - 2 - state_w
    blocks, current, used = [], [], 0
    for index, column_w in enumerate(widths):
        if current and used + column_w + 1 > room:
            blocks.append(current)
            current, used = [], 0
        current.append(index)
        used += column_w + 1
    blocks.append(current)
    lines = []
    for block in blocks:
        head = f"{'host':<{host_w}}  {'state':<{state_w}} " + " ".join(f"{names[i]:>{widths[i]}}" for i in block)
        lines += [head.rstrip(), "-" * len(head.rstrip())]
        for report, host in zip(reports, hosts):
            cells = " ".join(f"{fleet_table.CELL[outcome(report, ids[i])]:>{widths[i]}}" for i in block)
            lines.append(f"{fleet_table.shorten(host, host_w):<{host_w}}  {fleet_table.state_of(report):<{state_w}} "
                         f"{cells}".rstrip())
        lines.append("")
    legend = "  ".join(f"{name}\u00a0{for_terminal(rule)}" for name, (_, rule, _t) in zip(names, rules))
    lines += [line.replace("\u00a0", " ") for line in
              textwrap.wrap("Rules: " + legend, width, subsequent_indent="  ", break_on_hyphens=False)]
    lines += textwrap.wrap("Cells: ok pass, FAIL fail, warn warning, skip skipped, ERR the rule errored, wvd waived, "
                           "- not run", width, subsequent_indent="  ")
    return lines


def reference_per_rule(reports, summary, width):
    lines = []
    total = summary["hosts"]
    for rule in summary["rules"]:
        for status in ("fail", "error", "warn", "waived"):
            count = rule["hosts"][status]
            if not count:
                continue
            who = [fleet_table.host_name(r) for r in reports if outcome(r, rule["rule_id"]) == status]
            shown = ", ".join(who[:8]) + (f" (+{len(who) - 8} more)" if len(who) > 8 else "")
            verb = {"fail": "fail", "error": "error on", "warn": "warn on", "waived": "waive"}[status]
            line = for_terminal(f"{count}/{total} hosts {verb} {rule['rule_id']} {rule['rule']}: {shown}")
            lines += textwrap.wrap(line, width, subsequent_indent="    ", break_on_hyphens=False)
    return lines or ["No rule fails, errors or warns on any host."]


RULE_IDS = ["VFIO-001", "VFIO-004", "VFIO-010", "VFIO-017", "ACME-100", "VFIO-1234"]


@st.composite
def host_reports(draw):
    findings = []
    for _ in range(draw(st.integers(0, 12))):
        rule_id = draw(st.sampled_from(RULE_IDS))
        status = draw(st.sampled_from(STATUSES))
        findings.append(Finding(status=status, message=draw(st.sampled_from(["m", "works now, lost at next boot: x"])),
                                subject=draw(st.sampled_from(["host", "0000:01:00.0", "0000:02:00.0"])),
                                severity=draw(st.sampled_from([None, "low", "high"])), rule_id=rule_id,
                                rule=f"rule-{rule_id.lower()}", title="t",
                                waiver={"justification": "j"} if status == "waived" else None))
    label = draw(st.sampled_from(["a", "b", "node-0001", "gpu-node-0042.rack7.dc1.example.com", "\x1b[2Jx"]))
    return Report(host={"hostname": label, "source": "snapshot", "label": label}, findings=findings,
                  started_at="2024-01-01T00:00:00+00:00", duration_s=0.0, tool={"name": "vfio-scan", "version": "0"},
                  fail_on=draw(st.sampled_from(["fail", "warn", "high"])),
                  notes=draw(st.lists(st.sampled_from(["ssh: timed out"]), max_size=1)))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(reports=st.lists(host_reports(), min_size=1, max_size=12), width=st.sampled_from([100, 80, 60]))
def test_matrix_and_per_rule_lines_are_what_the_cell_by_cell_look_up_gave(reports, width):
    summary = fleet_summary(reports)
    assert fleet_table.matrix(reports, width) == reference_matrix(reports, width)
    assert fleet_table.per_rule(reports, summary, width) == reference_per_rule(reports, summary, width)


class CountedFindings(list):
    """A report's findings that count how often they are gone through."""

    passes = 0

    def __iter__(self):
        CountedFindings.passes += 1
        return super().__iter__()


def test_the_fleet_table_goes_through_each_hosts_findings_a_few_times_however_many_rules():
    def host(label):
        findings = CountedFindings(Finding(status=("fail", "warn", "pass")[n % 3], message="m", rule_id=f"VFIO-{n:03d}",
                                           rule=f"rule-{n}", title="t") for n in range(1, 41))
        return Report(host={"hostname": label, "label": label}, findings=findings, started_at="2024-01-01T00:00:00+00:00",
                      duration_s=0.0)

    reports = [host(f"node-{n}") for n in range(5)]
    CountedFindings.passes = 0
    fleet_table.render_fleet(reports, {})
    assert CountedFindings.passes <= 12 * len(reports)  # 40 rules: a pass per rule would be 40 and more per host


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(reports=st.lists(host_reports(), min_size=1, max_size=8), width=st.sampled_from([100, 60]),
       verbose=st.booleans())
def test_the_fleet_table_is_its_parts_each_made_on_its_own(reports, width, verbose):
    """The table shares each host's outcomes and the rules seen between its parts: the text is the one
    its parts give when each goes through the findings itself."""
    summary = fleet_summary(reports)
    text = fleet_table.render_fleet(reports, {"width": width, "verbose": verbose})
    assert ("\n" + "\n".join(fleet_table.matrix(reports, width)) + "\n") in text
    assert "\n".join("  " + line for line in fleet_table.per_rule(reports, summary, width - 2)) in text
    counts = summary["readiness"]
    assert text.startswith(f"Fleet: {summary['hosts']} hosts: {counts['READY']} ready")


def test_the_fleet_table_makes_each_hosts_outcomes_and_the_rules_seen_once(monkeypatch):
    """Shared by the summary, the matrix and the per-rule lines: made once, not by each part again."""
    from scanner.engine import fleet_summary as summary_module

    calls = {"outcomes": 0, "rules_seen": 0}

    def counted(name, made):
        def count(*args):
            calls[name] += 1
            return made(*args)
        return count

    for module in (fleet_table, summary_module):
        for name in calls:
            monkeypatch.setattr(module, name, counted(name, getattr(summary_module, name)))
    reports = [Report(host={"hostname": f"n{n}"}, started_at="t", duration_s=0.0,
                      findings=[Finding(status="fail", message="m", rule_id="VFIO-001", rule="r", title="t")])
               for n in range(3)]
    fleet_table.render_fleet(reports, {})
    assert calls == {"outcomes": len(reports), "rules_seen": 1}
