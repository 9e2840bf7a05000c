"""The table for many hosts: a hosts x rules matrix, a per-rule summary, then what could not be scanned.

Why a matrix: with forty hosts, forty one-host tables hide the answer to "which hosts are ready,
and what blocks the others". Each row is a host, each column a rule (ids shortened to their
number when every rule shares the ``VFIO-`` prefix), each cell the host's worst outcome for that
rule. Laid out at the terminal's width (100 columns in a file), readable from 80: long host names
are shortened in the middle, and when the rules do not fit even then in one row the matrix
continues in another block with the host column repeated. ``-v`` appends every host's own table,
evidence and fixes.

Host names, rule names and the reasons a host could not be scanned (ssh's or the collector's own
words) come from outside: each is escaped for the terminal (scanner/base/terminal_text.py) before it
is measured, shortened or wrapped.
"""

from __future__ import annotations

import textwrap

from reports.table import render_one
from scanner.engine.fleet_summary import fleet_summary, host_name, outcomes, rules_seen
from scanner.base.terminal_text import for_terminal

WIDTH = 100
MIN_HOST_WIDTH, MAX_HOST_WIDTH = 16, 40  # the host column shrinks (to 16) before the rules wrap into a new block
CELL = {"pass": "ok", "fail": "FAIL", "warn": "warn", "skip": "skip", "error": "ERR", "waived": "wvd", None: "-"}
STATE = {"READY": "ready", "READY_WITH_WARNINGS": "warnings", "NOT_READY": "NOT READY"}


def shorten(text: str, width: int) -> str:
    """``gpu-node-0042.rack7.dc1.example.com`` -> ``gpu-node-0042.r…example.com`` (both ends kept)."""
    if len(text) <= width:
        return text
    head = (width - 1) // 2 + (width - 1) % 2
    return text[:head] + "…" + text[len(text) - (width - 1 - head):]


def shown_name(report) -> str:
    """The host's name as the table prints it: its label or hostname, escaped for the terminal."""
    return for_terminal(host_name(report))


def column_names(rule_ids) -> list:
    prefixes = {r.split("-", 1)[0] for r in rule_ids}
    if len(prefixes) == 1 and all("-" in r for r in rule_ids):
        return [r.split("-", 1)[1] for r in rule_ids]
    return list(rule_ids)


def state_of(report) -> str:
    if report.notes:
        return "UNSCANNED"
    if report.incomplete:
        return "INCOMPLETE"
    return STATE.get(report.readiness, report.readiness)


def matrix(reports, width: int = WIDTH, per_host=None, rules=None) -> list:
    """The hosts x rules lines. ``per_host``: each report's :func:`outcomes`, and ``rules``: their
    :func:`rules_seen`, when the caller has them (each host's findings are gone through once, not once
    per rule; each state is judged once)."""
    rules = rules if rules is not None else rules_seen(reports)
    ids = [r[0] for r in rules]
    names = [for_terminal(name) for name in column_names(ids)]
    per_host = per_host if per_host is not None else [outcomes(r) for r in reports]
    states = [state_of(r) for r in reports]
    state_w = max([len("state")] + [len(state) for state in states])
    widths = [max(len(n), 4) for n in names]
    hosts = [shown_name(r) for r in reports]
    natural = max([len("host")] + [len(h) for h in hosts])
    fits_all = width - 2 - state_w - sum(w + 1 for w in widths)  # what is left for the host column
    host_w = min(natural, max(MIN_HOST_WIDTH, fits_all), MAX_HOST_WIDTH)
    room = width - host_w - 2 - state_w  # each rule column takes its width and the blank before it
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
        for host, state, outcome_of in zip(hosts, states, per_host):
            cells = " ".join(f"{CELL[outcome_of.get(ids[i])]:>{widths[i]}}" for i in block)
            lines.append(f"{shorten(host, host_w):<{host_w}}  {state:<{state_w}} {cells}".rstrip())
        lines.append("")
    legend = "  ".join(f"{name}\u00a0{for_terminal(rule)}" for name, (_, rule, _t) in zip(names, rules))  # pairs whole
    lines += [line.replace("\u00a0", " ") for line in
              textwrap.wrap("Rules: " + legend, width, subsequent_indent="  ", break_on_hyphens=False)]
    lines += textwrap.wrap("Cells: ok pass, FAIL fail, warn warning, skip skipped, ERR the rule errored, wvd waived, "
                           "- not run", width, subsequent_indent="  ")
    return lines


def per_rule(reports, summary: dict, width: int = WIDTH, per_host=None) -> list:
    lines = []
    total = summary["hosts"]
    per_host = per_host if per_host is not None else [outcomes(r) for r in reports]
    for rule in summary["rules"]:
        for status in ("fail", "error", "warn", "waived"):
            count = rule["hosts"][status]
            if not count:
                continue
            who = [host_name(r) for r, outcome_of in zip(reports, per_host) if outcome_of.get(rule["rule_id"]) == status]
            shown = ", ".join(who[:8]) + (f" (+{len(who) - 8} more)" if len(who) > 8 else "")
            verb = {"fail": "fail", "error": "error on", "warn": "warn on", "waived": "waive"}[status]
            line = for_terminal(f"{count}/{total} hosts {verb} {rule['rule_id']} {rule['rule']}: {shown}")
            lines += textwrap.wrap(line, width, subsequent_indent="    ", break_on_hyphens=False)
    return lines or ["No rule fails, errors or warns on any host."]


def render_fleet(reports, options) -> str:
    per_host = [outcomes(r) for r in reports]
    summary = fleet_summary(reports, per_host)
    counts = summary["readiness"]
    width = options.get("width", WIDTH)  # the terminal's (scanner/output/formats.py), 100 in a file
    verdict = (f"Fleet: {summary['hosts']} hosts: {counts['READY']} ready, {counts['READY_WITH_WARNINGS']} ready with "
               f"warnings, {counts['NOT_READY']} not ready"
               + (f" ({len([r for r in reports if r.notes])} could not be scanned)" if summary["host_errors"] else ""))
    out = textwrap.wrap(verdict, width, subsequent_indent="  ") + [""]
    out += matrix(reports, width, per_host, [(rule["rule_id"], rule["rule"], rule["title"]) for rule in summary["rules"]])
    out += ["", "Per rule"]
    out += ["  " + line for line in per_rule(reports, summary, width - 2, per_host)]
    if summary["host_errors"]:
        out += ["", "Could not be scanned"]
        for item in summary["host_errors"]:
            out += textwrap.wrap(for_terminal(f"{item['host']}: {item['reason']}"), width, initial_indent="  ",
                                 subsequent_indent="      ", break_on_hyphens=False)
    if options.get("verbose"):
        for report in reports:
            out += ["", "=" * width, f"[{shown_name(report)}]", render_one(report, True, width).rstrip()]
    else:
        out += ["", "Each host's findings and fixes: add -v, or use --format json."]
    return "\n".join(out).rstrip() + "\n"
