"""Human output: a table per subject (host, then each device), then what to do about each problem.

Readable at 100 columns: long texts wrap inside their column. Evidence is shown with ``-v``.
Every text that comes from the host, a plugin or a policy is escaped for the terminal
(scanner/terminal_text.py) before it is wrapped, so no control character reaches the screen and
no newline of theirs starts a line of ours.
"""

from __future__ import annotations

import textwrap
from functools import lru_cache

from reports.text_table import simple_table
from scanner.terminal_text import for_terminal

WIDTH = 100
CHECK_WIDTH = 30
PROMPT, CONTINUED = "      $ ", "          "  # how a fix command's first line and its continuations begin
HEADERS = ("status", "rule", "check", "result")
LABEL = {"pass": "PASS", "fail": "FAIL", "warn": "WARN", "skip": "SKIP", "error": "ERROR", "waived": "WAIVED"}


def _wrap(text: str, width: int, indent: str = "") -> str:
    """One line of text (host text in it escaped here) wrapped at ``width``, continuation lines indented."""
    text = for_terminal(text)
    if len(indent) + len(text) <= width:  # one line: textwrap would only drop the trailing blanks
        return indent + text.rstrip(" ")
    return _wrapped_lines(text, width, indent)


@lru_cache(maxsize=4096)  # a fix's summary and the message of the same problem repeat from device to device
def _wrapped_lines(text: str, width: int, indent: str) -> str:
    lines = textwrap.wrap(text, width=width, initial_indent=indent, subsequent_indent=indent + "  ",
                          break_long_words=True, break_on_hyphens=False)
    return "\n".join(lines) or indent


def _shell_words(command: str):
    """The words of a one-line shell command, split at unquoted blanks, each kept verbatim.

    None when splitting could change its meaning (a newline, a comment, unbalanced quotes).
    """
    words, current, quote, escaped = [], "", None, False
    for ch in command:
        if escaped:
            current, escaped = current + ch, False
        elif ch == "\\" and quote != "'":
            current, escaped = current + ch, True
        elif quote:
            current += ch
            quote = None if ch == quote else quote
        elif ch in "'\"":
            current, quote = current + ch, ch
        elif ch in " \t":
            if current:
                words.append(current)
            current = ""
        elif ch == "\n" or (ch == "#" and not current):
            return None
        else:
            current += ch
    if quote or escaped:
        return None
    return words + ([current] if current else [])


def _command(command: str, width: int) -> list:
    """A fix command as lines of at most ``width`` columns, continued with `` \\`` at unquoted blanks,
    so that it still pastes into a shell as is. A single word longer than a line stays whole.
    A quoted host value may hold control characters: they are shown escaped, never sent raw."""
    return list(_command_lines(for_terminal(command), width))


@lru_cache(maxsize=4096)  # the same fix commands repeat for every device of a kind
def _command_lines(command: str, width: int) -> tuple:
    if len(PROMPT) + len(command) <= width:
        return (PROMPT + command,)
    words = _shell_words(command)
    if not words:
        return (PROMPT + command,)
    lines, current = [], PROMPT + words[0]
    for i, word in enumerate(words[1:], start=2):
        reserve = 0 if i == len(words) else 2
        if len(current) + 1 + len(word) + reserve <= width:
            current += " " + word
        else:
            lines.append(current + " \\")
            current = CONTINUED + word
    return tuple(lines) + (current,)


def _header(report) -> str:
    h = report.host
    parts = [h.get("hostname") or "?", f"kernel {h.get('kernel') or '?'}", h.get("arch") or "?",
             (h.get("cpu_vendor") or "unknown CPU").upper() if h.get("cpu_vendor") else "unknown CPU", h.get("source")]
    counts = report.counts
    tally = ", ".join(f"{n} {s}" for s, n in counts.items() if n)
    shown = for_terminal(" · ".join(str(p) for p in parts if p))
    return f"Host {shown}\nReadiness: {report.readiness} ({tally})" + _next_boot_line(report)


#: Subjects named on the next-boot line before it says how many there are in all.
NEXT_BOOT_SHOWN = 6


def _next_boot_line(report) -> str:
    """``Next boot: works now, lost at next boot -- VFIO-017 0000:01:00.0, ...``: what a reboot undoes,
    said apart from the other problems, since an operator who sees it working now would not guess."""
    lost = report.lost_at_next_boot
    if not lost:
        return ""
    names = [f"{f.rule_id} {f.subject}" for f in lost[:NEXT_BOOT_SHOWN]]
    more = f" ... ({len(lost)} in all)" if len(lost) > NEXT_BOOT_SHOWN else ""
    return "\nNext boot: works now, lost at next boot — " + for_terminal(", ".join(names)) + more


def _subjects(report):
    """Each subject's findings in report order; the host first, then the devices by address.

    Grouped in one pass: a scan of thousands of devices has thousands of subjects.
    """
    found = {}
    for f in report.findings:
        found.setdefault(f.subject, []).append(f)
    return {s: found[s] for s in sorted(found, key=lambda s: (s != "host", s))}


def _fixes(report, verbose: bool) -> list:
    lines = []
    for f in report.findings:
        wanted = f.status in ("fail", "warn", "error") and (f.remediation or verbose)
        if not wanted and not (verbose and f.evidence):
            continue
        subject = "" if f.subject == "host" else f" {f.subject}"
        lines.append(for_terminal(f"{LABEL[f.status]} {f.rule_id} {f.rule}{subject}"))
        lines.append(_wrap(f.message, WIDTH, "    "))
        if f.observed or f.expected:
            lines.append(_wrap(f"observed: {f.observed or '-'} | expected: {f.expected or '-'}", WIDTH, "    "))
        if verbose:
            for e in f.evidence:
                lines.append(_wrap(f"evidence {e.source}: {e.value}", WIDTH, "    "))
        if f.status in ("fail", "warn", "error"):
            for step in f.remediation:
                flags = [step.phase] + (["manual"] if step.manual else []) + (["reboot"] if step.requires_reboot else [])
                lines.append(_wrap(f"fix [{', '.join(flags)}] {step.summary}", WIDTH, "    "))
                for cmd in step.commands:
                    lines.extend(_command(cmd, WIDTH))
        if f.waiver:
            lines.append(_wrap(f"waived: {f.waiver.get('justification')} (expires {f.waiver.get('expires') or 'never'})",
                               WIDTH, "    "))
        lines.append("")
    return lines


def _result(f) -> str:
    """A row's result: the message, and first for a waived finding what was waived, why and until when."""
    if f.status != "waived" or not f.waiver:
        return for_terminal(f.message)
    w = f.waiver
    until = f"until {w.get('expires')}" if w.get("expires") else "no expiry"
    return for_terminal(f"({f.original_status or 'finding'} waived, {until}: {w.get('justification')}) {f.message}")


def _count(n: int, what: str) -> str:
    return f"{n} {what}{'' if n == 1 else 's'}"


def _policy(report) -> list:
    """The policy used, and the waivers that expired or covered nothing on this host."""
    info = report.policy
    if not info:
        return []
    expired, unused = info.get("expired_waivers") or [], info.get("unused_waivers") or []
    waived = sum(1 for f in report.findings if f.status == "waived")
    lines = [_wrap(f"Policy {info.get('file')} (waivers judged on {info.get('date')}): "
                   f"{_count(waived, 'finding')} waived, {_count(len(expired), 'expired waiver')}, "
                   f"{_count(len(unused), 'unused waiver')}", WIDTH)]

    def what(w):
        subject = f" {w['subject']}" if w.get("subject") else ""
        host = f" on hosts {w['host']}" if w.get("host") else ""
        return f"{w['rule']}{subject}{host} [{w.get('source') or ''}]"

    for w in expired:
        again = ", ".join(w.get("would_cover") or []) or "nothing on this host"
        lines.append(_wrap(f"EXPIRED waiver {what(w)}: last day {w.get('expires')}; counts again: {again}", WIDTH, "  "))
    for w in unused:
        lines.append(_wrap(f"UNUSED waiver {what(w)}: {w.get('reason')}; remove it if the gap is closed", WIDTH, "  "))
    return lines + [""]


def render_one(report, verbose: bool) -> str:
    out = [_header(report), ""]
    out.extend(_policy(report))
    for note in report.notes:
        out.append(_wrap(f"ERROR {note}", WIDTH))
    for subject, findings in _subjects(report).items():
        rows = [(LABEL[f.status], for_terminal(f.rule_id), for_terminal(f.title), _result(f)) for f in findings]
        # a header is padded by 2 and columns are 2 apart (reports/text_table.py): the result gets what is left
        status_w = max([len("status") + 2] + [len(r[0]) for r in rows])
        rule_w = max([len("rule") + 2] + [len(r[1]) for r in rows])
        result_w = max(20, WIDTH - status_w - rule_w - CHECK_WIDTH - 3 * 2)
        out.append(for_terminal(subject))
        out.append(simple_table(HEADERS, rows, [None, None, CHECK_WIDTH, result_w]))
        out.append("")
    fixes = _fixes(report, verbose)
    if fixes:
        out.append("Details and fixes" if verbose else "What to do")
        out.append("")
        out.extend(fixes)
    if any(f.status in ("fail", "warn") for f in report.findings):
        out.append("Apply the fixes above, reboot where marked, then run 'vfio-scan scan' again.")
    return "\n".join(out).rstrip() + "\n"


def render(reports, options) -> str:
    if options.get("fleet") or len(reports) > 1:  # many hosts: one hosts x rules matrix (reports/matrix.py)
        from reports.matrix import render_fleet

        return render_fleet(reports, options)
    return "\n".join(render_one(r, options.get("verbose", False)) for r in reports)
