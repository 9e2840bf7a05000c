"""The ``diff`` document as a table for a terminal, or as JSON (``schemas/diff.schema.json``).

The table says the verdict first, then each host with changes, regressions before other changes;
hosts without changes are one line at the end. Host text (names, drivers, messages that quote
them) is escaped for the terminal (scanner/base/terminal_text.py); JSON keeps it exact.
"""

from __future__ import annotations

import textwrap
from typing import List

from scanner.base.terminal_text import for_terminal

WIDTH = 100
KIND_WIDTH = 10


def render_json(document: dict) -> str:
    """Indented JSON, host text kept exact; a lone surrogate (a hostile snapshot's ``\\ud800``, a file
    name that is not UTF-8) is written as its escape, or the text could not be written at all."""
    from scanner.base.json_text import indented

    return indented(document, end="\n")


def render_table(document: dict) -> str:
    summary = document["summary"]
    out = [for_terminal(f"{_verdict(summary)}: {document['old']} -> {document['new']}")]
    quiet = []
    for host in document["hosts"]:
        if host["status"] == "unchanged":
            quiet.append(host["host"])
            continue
        out.append("")
        out += _host_lines(host)
    if quiet:
        out.append("")
        out += textwrap.wrap(for_terminal(f"Unchanged: {', '.join(quiet)}"), WIDTH, subsequent_indent="  ",
                             break_on_hyphens=False)
    return "\n".join(out) + "\n"


def _verdict(summary: dict) -> str:
    hosts = summary["hosts"]
    many = f" of {hosts} hosts" if hosts != 1 else ""
    if summary["unreadable"]:
        return f"INCOMPLETE: {summary['unreadable']}{many or ' host'} could not be compared"
    if summary["regressions"]:
        bad = summary["regressed"] + summary["gone"]
        return f"REGRESSED: {summary['regressions']} regression(s) on {bad}{many or ' host'}"
    if summary["changed"] or summary["new"]:
        return "CHANGED, no regression"
    return "UNCHANGED"


def _host_lines(host: dict) -> List[str]:
    regressions = [c for c in host["changes"] if c["regression"]]
    head = f"{host['host']}: {host['status'].upper()}"
    if host["changes"]:
        head += f" ({len(regressions)} regression(s), {len(host['changes']) - len(regressions)} other change(s))"
    if host.get("reason"):
        head += f": {host['reason']}"
    lines = textwrap.wrap(for_terminal(head), WIDTH, subsequent_indent="    ", break_on_hyphens=False)
    ordered = regressions + [c for c in host["changes"] if not c["regression"]]
    for change in ordered:
        mark = "REGRESSION" if change["regression"] else "change"
        first = f"  {mark:<10}  {change['kind']:<{KIND_WIDTH}}  "
        lines += textwrap.wrap(for_terminal(change["message"]), WIDTH, initial_indent=first,
                               subsequent_indent=" " * len(first), break_on_hyphens=False) or [first.rstrip()]
    return lines
