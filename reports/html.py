"""``--format html``: one self-contained page for a host or a fleet, to read and to hand on.

What an auditor needs, in the order they need it: the verdict at a glance (one badge a host, or
the count of hosts per state); the hosts x rules matrix as a coloured grid, each host linking to
its section; then each host's problems with their evidence and their fix commands (each block
with a Copy button), its other findings folded away, and a picture of its PCI tree with the
IOMMU groups drawn as boxes (reports/html_tree.py) when the scan gathered the topology.

One file, no network: the style sheet, the script and the pictures are inline, and the page's
Content-Security-Policy (reports/html_assets.py) forbids every request and every other script.
All host text is escaped (reports/html_text.py).
"""

from __future__ import annotations

from itertools import count
from typing import List

from reports.html_assets import CSP, SCRIPT, STYLE
from reports.html_text import esc, esc_lines
from reports.matrix import CELL
from scanner.engine.fleet_summary import host_name, outcomes, rules_seen

PROBLEMS = ("fail", "error", "warn", "waived")
LABEL = {"READY": "READY", "READY_WITH_WARNINGS": "READY WITH WARNINGS", "NOT_READY": "NOT READY",
         "UNSCANNED": "UNSCANNED", "INCOMPLETE": "INCOMPLETE"}


def render(reports, options) -> str:
    ids = count(1)
    title = (f"vfio-scan: {host_name(reports[0])}" if len(reports) == 1 else f"vfio-scan: {len(reports)} hosts")
    body = [f"<h1>{esc(title)}</h1>", _meta(reports), _verdict(reports), _matrix(reports), "<h2>Hosts</h2>"]
    for index, report in enumerate(reports):
        body.append(_host(report, index, open_=len(reports) == 1, ids=ids))
    return "\n".join([
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{esc(title)}</title>",
        f"<style>{STYLE}</style>",
        "</head><body>",
        *body,
        f"<script>{SCRIPT}</script>",
        "</body></html>",
    ]) + "\n"


def state(report) -> str:
    if report.notes and not report.findings:
        return "UNSCANNED"
    if report.incomplete:
        return "INCOMPLETE"
    return report.readiness


def _meta(reports) -> str:
    first = reports[0]
    version = first.tool.get("version", "") if first.tool else ""
    when = min(r.started_at for r in reports)
    return f'<p class="meta">Scanned {esc(when)} by vfio-scan {esc(version)}</p>'


def _verdict(reports) -> str:
    if len(reports) == 1:
        report = reports[0]
        s = state(report)
        counts = report.counts
        detail = ", ".join(f"{n} {status}" for status, n in counts.items() if n)
        return (f'<section class="verdict"><div class="big {s}">{LABEL[s]}</div>'
                f'<p>{esc(detail)}{_targets(report)}</p></section>')
    totals = {}
    for report in reports:
        totals[state(report)] = totals.get(state(report), 0) + 1
    badges = "".join(f'<div class="big {s}">{totals[s]} {LABEL[s]}</div>'
                     for s in ("READY", "READY_WITH_WARNINGS", "NOT_READY", "INCOMPLETE", "UNSCANNED") if totals.get(s))
    return f'<section class="verdict">{badges}</section>'


def _targets(report) -> str:
    if not report.targets:
        return " · host rules only (no device targets)"
    return " · targets: " + esc(", ".join(report.targets))


def _matrix(reports) -> str:
    rules = rules_seen(reports)
    if not rules:
        return ""
    head = "".join(f'<th class="rule" title="{esc(title)}">{esc(rule_id)} {esc(name)}</th>'
                   for rule_id, name, title in rules)
    rows = []
    for index, report in enumerate(reports):
        outcome_of = outcomes(report)  # one pass over the host's findings, not one per rule
        cells = "".join(_cell(outcome_of.get(rule_id)) for rule_id, _, _ in rules)
        s = state(report)
        rows.append(f'<tr><td class="host"><a href="#host-{index}">{esc(host_name(report))}</a></td>'
                    f'<td class="st-{_state_class(s)}">{LABEL[s]}</td>{cells}</tr>')
    return ('<h2>Hosts × rules</h2><div class="scroll"><table class="matrix"><thead><tr><th>host</th><th>state</th>'
            f'{head}</tr></thead><tbody>{"".join(rows)}</tbody></table></div>'
            '<p class="legend">Each cell: the host\'s worst outcome for that rule (ok, FAIL, warn, skip, '
            'ERR the rule errored, wvd waived, - not run).</p>')


def _cell(status) -> str:
    return f'<td class="st-{status or "none"}">{CELL[status]}</td>'


def _state_class(s: str) -> str:
    return {"READY": "pass", "READY_WITH_WARNINGS": "warn", "NOT_READY": "fail"}.get(s, "error")


def _host(report, index: int, open_: bool, ids) -> str:
    s = state(report)
    out = [f'<details class="host" id="host-{index}"{" open" if open_ else ""}>',
           f'<summary>{esc(host_name(report))} <span class="badge {_state_class(s)}">{LABEL[s]}</span> '
           f'<span class="meta">{esc(_who(report))}</span></summary>']
    for note in report.notes:
        out.append(f"<p><strong>Not scanned:</strong> {esc(note)}</p>")
    problems = [f for f in report.findings if f.status in PROBLEMS]
    others = [f for f in report.findings if f.status not in PROBLEMS]
    if problems:
        out.append(f"<h3>Problems ({len(problems)})</h3>")
        out += [_finding(f, ids) for f in problems]
    elif report.findings:
        out.append("<p>No problems.</p>")
    if others:
        out.append(f'<details class="others"><summary>Passed and skipped ({len(others)})</summary>')
        out += [_finding(f, ids) for f in others]
        out.append("</details>")
    if report.topology:
        from reports.html_tree import svg_tree

        blocked = _blocked_groups(report)
        out.append("<h3>PCI tree and IOMMU groups</h3>")
        out.append('<p class="legend">Boxes are IOMMU groups: green one endpoint, blue one slot\'s functions, '
                   'orange endpoints of several slots, red a group a target cannot be passed in.</p>')
        out.append(svg_tree(report.topology, report.targets, blocked))
    out.append("</details>")
    return "\n".join(out)


def _who(report) -> str:
    host = report.host
    parts = [host.get("hostname"), host.get("kernel") and f"kernel {host['kernel']}", host.get("arch"),
             host.get("source")]
    return " · ".join(p for p in parts if p)


def _blocked_groups(report) -> List[str]:
    """Groups of targets whose group rule (VFIO-012) fails: read from the topology, not guessed."""
    group_of = {d["address"]: d.get("group") for d in report.topology or ()}
    return [str(group_of[f.subject]) for f in report.findings
            if f.rule_id == "VFIO-012" and f.status == "fail" and group_of.get(f.subject) is not None]


def _finding(finding, ids) -> str:
    subject = "" if finding.subject == "host" else f" — {esc(finding.subject)}"
    out = [f'<article class="finding {finding.status}">',
           f'<p><span class="badge {finding.status}">{finding.status.upper()}</span>'
           f'<span class="rule">{esc(finding.rule_id)} {esc(finding.title or finding.rule)}</span>{subject}</p>',
           f"<p>{esc(finding.message)}</p>"]
    if finding.observed or finding.expected:
        out.append(f'<p class="oe">observed: {esc(finding.observed)} · expected: {esc(finding.expected)}</p>')
    if finding.waiver:
        out.append(f'<p class="oe">waived: {esc(finding.waiver.get("justification", ""))} '
                   f'(until {esc(finding.waiver.get("expires", "?"))})</p>')
    if finding.evidence:
        items = "".join(f"<li>{esc(e.source)}: {esc_lines(e.value)}</li>" for e in finding.evidence)
        out.append(f'<details><summary>Evidence ({len(finding.evidence)})</summary>'
                   f'<ul class="evidence">{items}</ul></details>')
    if finding.status in PROBLEMS:
        out += [_step(step, ids) for step in finding.remediation]
    out.append("</article>")
    return "\n".join(out)


def _step(step, ids) -> str:
    tags = "".join(f'<span class="tag">{t}</span>' for t, on in
                   ((esc(step.phase), True), ("manual", step.manual), ("reboot", step.requires_reboot)) if on)
    out = [f'<div class="step"><p>{esc(step.summary)}{tags}</p>']
    if step.commands:
        block = f"cmd-{next(ids)}"
        out.append(f'<div class="cmd"><button class="copy" type="button" data-for="{block}">Copy</button>'
                   f'<pre id="{block}"><code>{esc_lines(chr(10).join(step.commands))}</code></pre></div>')
    out.append("</div>")
    return "".join(out)
