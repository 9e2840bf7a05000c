"""Human output: the verdict, a table per subject (host, then each device), then what to do about each problem.

Laid out for where it goes (scanner/output/formats.py): a terminal's width (``$COLUMNS``, else the
terminal's; readable from 80 columns), with the statuses and the verdict in colour on a colour
terminal (``NO_COLOR`` honoured); a file gets 100 columns and no colour. Long texts wrap inside
their column. The verdict comes first. Each problem is said once: its message in the table, its
fix steps under "What to do" (with ``-v``, everything there, evidence too). A device's table is
headed with what it is (ids, the host's pci.ids name, its driver). A scan without device targets
shows the device rules as one line that says how to name devices, not a row of SKIPs each.
Every text that comes from the host, a plugin or a policy is escaped for the terminal
(scanner/base/terminal_text.py) before it is wrapped, so no control character reaches the screen and
no newline of theirs starts a line of ours.
"""

from __future__ import annotations

import textwrap
from functools import lru_cache
from typing import Iterator

from reports.text_table import simple_table
from scanner.engine.runner import NO_TARGETS
from scanner.base.terminal_text import for_terminal

WIDTH = 100
CHECK_WIDTH = 30  # at 100 columns; narrower terminals give the check column less
MIN_CHECK_WIDTH = 16
PROMPT, CONTINUED = "      $ ", "          "  # how a fix command's first line and its continuations begin
HEADERS = ("status", "rule", "check", "result")
LABEL = {"pass": "PASS", "fail": "FAIL", "warn": "WARN", "skip": "SKIP", "error": "ERROR", "waived": "WAIVED"}
COLOR = {"PASS": "32", "FAIL": "1;31", "WARN": "33", "SKIP": "2", "ERROR": "1;35", "WAIVED": "34",
         "READY": "1;32", "READY_WITH_WARNINGS": "1;33", "NOT_READY": "1;31"}


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


def _header(report, color: bool = False) -> str:
    """The verdict first (with what a reboot would undo), then which host and, for a snapshot, as of when."""
    h = report.host
    source = h.get("source")
    if h.get("collected_at"):
        source = f"{source} collected {h['collected_at']}"
    parts = [h.get("hostname") or "?", f"kernel {h.get('kernel') or '?'}", h.get("arch") or "?",
             (h.get("cpu_vendor") or "unknown CPU").upper() if h.get("cpu_vendor") else "unknown CPU", source]
    counts = report.counts
    tally = ", ".join(f"{n} {s}" for s, n in counts.items() if n)
    shown = for_terminal(" · ".join(str(p) for p in parts if p))
    return f"Readiness: {_paint(report.readiness, color)} ({tally})" + _next_boot_line(report) + f"\nHost {shown}"


def _paint(word: str, color: bool) -> str:
    return f"\x1b[{COLOR[word]}m{word}\x1b[0m" if color and word in COLOR else word


def _paint_rows(table: str, color: bool) -> str:
    """The status word that begins each row in colour; the layout is made before, so widths stay."""
    if not color:
        return table
    lines = table.split("\n")
    for i, line in enumerate(lines):
        word = line.split(" ", 1)[0]
        if word in LABEL.values():
            lines[i] = _paint(word, True) + line[len(word):]
    return "\n".join(lines)


def _device_entries(report) -> dict:
    """The report's device entries by address (the first of each), looked up once per device section."""
    entries: dict = {}
    for d in report.devices:
        entries.setdefault(d.get("address"), d)
    return entries


def _device_title(report, subject: str, entries=None) -> str:
    """``0000:01:00.0 · 10de:2204 NVIDIA Corporation GA102 [GeForce RTX 3090] · driver nvidia``.

    ``entries``: :func:`_device_entries` of the report, made once for all its device sections."""
    entry = (entries if entries is not None else _device_entries(report)).get(subject)
    if entry is None:
        return for_terminal(subject)
    ids = f"{entry.get('vendor') or '????'}:{entry.get('device') or '????'}"
    if entry.get("vendor_name"):
        name = f"{entry['vendor_name']} {entry.get('device_name') or 'Device ' + (entry.get('device') or '????')}"
    else:
        name = entry.get("class_name") or ""
    parts = [subject, f"{ids} {name}".strip(), f"driver {entry.get('driver') or 'none'}"]
    return for_terminal(" · ".join(parts))


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


def _fixes(report, verbose: bool, width: int = WIDTH, color: bool = False) -> Iterator[str]:
    """Each problem's fix steps, headed by what it is, as one piece per finding; its message is the
    table's (said once). With ``-v``, every finding with evidence, its message, observed and
    expected, and the evidence too."""
    for f in report.findings:
        wanted = f.status in ("fail", "warn", "error") and (f.remediation or verbose)
        if not wanted and not (verbose and f.evidence):
            continue
        subject = "" if f.subject == "host" else f" {f.subject}"
        lines = [_paint(LABEL[f.status], color) + for_terminal(f" {f.rule_id} {f.rule}{subject}")]
        if verbose:
            lines.append(_wrap(f.message, width, "    "))
            if f.observed or f.expected:
                lines.append(_wrap(f"observed: {f.observed or '-'} | expected: {f.expected or '-'}", width, "    "))
            for e in f.evidence:
                lines.append(_wrap(f"evidence {e.source}: {e.value}", width, "    "))
        if f.status in ("fail", "warn", "error"):
            for step in f.remediation:
                flags = [step.phase] + (["manual"] if step.manual else []) + (["reboot"] if step.requires_reboot else [])
                lines.append(_wrap(f"fix [{', '.join(flags)}] {step.summary}", width, "    "))
                for cmd in step.commands:
                    lines.extend(_command(cmd, width))
        if f.waiver:
            lines.append(_wrap(f"waived: {f.waiver.get('justification')} (expires {f.waiver.get('expires') or 'never'})",
                               width, "    "))
        lines.append("")
        yield "\n".join(lines)


@lru_cache(maxsize=4096)  # a rule's id and title are on every device's table
def _rule_text(text: str) -> str:
    return for_terminal(text)


def _result(f) -> str:
    """A row's result: the message, and first for a waived finding what was waived, why and until when."""
    if f.status != "waived" or not f.waiver:
        return for_terminal(f.message)
    w = f.waiver
    until = f"until {w.get('expires')}" if w.get("expires") else "no expiry"
    return for_terminal(f"({f.original_status or 'finding'} waived, {until}: {w.get('justification')}) {f.message}")


def _count(n: int, what: str) -> str:
    return f"{n} {what}{'' if n == 1 else 's'}"


def _policy(report, width: int = WIDTH) -> list:
    """The policy used, and the waivers that expired or covered nothing on this host."""
    info = report.policy
    if not info:
        return []
    expired, unused = info.get("expired_waivers") or [], info.get("unused_waivers") or []
    waived = sum(1 for f in report.findings if f.status == "waived")
    lines = [_wrap(f"Policy {info.get('file')} (waivers judged on {info.get('date')}): "
                   f"{_count(waived, 'finding')} waived, {_count(len(expired), 'expired waiver')}, "
                   f"{_count(len(unused), 'unused waiver')}", width)]

    def what(w):
        subject = f" {w['subject']}" if w.get("subject") else ""
        host = f" on hosts {w['host']}" if w.get("host") else ""
        return f"{w['rule']}{subject}{host} [{w.get('source') or ''}]"

    for w in expired:
        again = ", ".join(w.get("would_cover") or []) or "nothing on this host"
        lines.append(_wrap(f"EXPIRED waiver {what(w)}: last day {w.get('expires')}; counts again: {again}", width, "  "))
    for w in unused:
        lines.append(_wrap(f"UNUSED waiver {what(w)}: {w.get('reason')}; remove it if the gap is closed", width, "  "))
    return lines + [""]


def _sections(report, verbose: bool, width: int, color: bool):
    """The text of :func:`render_one` in pieces, joined by newlines: the header, then one piece per
    subject's table (its column widths depend on its own rows only), then each fix."""
    yield _header(report, color)
    yield ""
    yield from _policy(report, width)
    for note in report.notes:
        yield _wrap(f"ERROR {note}", width)
    check_w = CHECK_WIDTH if width >= WIDTH else max(MIN_CHECK_WIDTH, CHECK_WIDTH * width // WIDTH)
    entries = _device_entries(report)
    for subject, findings in _subjects(report).items():
        yield _subject_section(report, subject, findings, width, check_w, color, entries)
    fixes = _fixes(report, verbose, width, color)
    first = next(fixes, None)
    if first is not None:
        yield "Details and fixes" if verbose else "What to do"
        yield ""
        yield first
        yield from fixes
    if any(f.status in ("fail", "warn") for f in report.findings):
        yield "Apply the fixes above, reboot where marked, then run 'vfio-scan scan' again."


def _subject_section(report, subject: str, findings: list, width: int, check_w: int, color: bool,
                     entries: dict) -> str:
    """One subject's title, its table and (for the host without targets) the line about the device rules."""
    out = []
    untargeted = [f for f in findings if f.status == "skip" and f.message == NO_TARGETS] if subject == "host" else []
    if len(untargeted) > 1:
        findings = [f for f in findings if not (f.status == "skip" and f.message == NO_TARGETS)]
    rows = [(LABEL[f.status], _rule_text(f.rule_id), _rule_text(f.title), _result(f)) for f in findings]
    # a header is padded by 2 and columns are 2 apart (reports/text_table.py): the result gets what is left
    status_w = max([len("status") + 2] + [len(r[0]) for r in rows])
    rule_w = max([len("rule") + 2] + [len(r[1]) for r in rows])
    result_w = max(20, width - status_w - rule_w - check_w - 3 * 2)
    out.append("host" if subject == "host" else _device_title(report, subject, entries))
    if rows:
        out.append(_paint_rows(simple_table(HEADERS, rows, [None, None, check_w, result_w]), color))
    if len(untargeted) > 1:
        out.append(_wrap(f"Device rules not run ({', '.join(f.rule_id for f in untargeted)}): no device "
                         "targets. Name the devices to pass through with --device or --class; "
                         "'vfio-scan groups' lists every device and its IOMMU group.", width))
    out.append("")
    return "\n".join(out)


def _stripped_end(lines) -> Iterator[str]:
    """``"\\n".join(lines).rstrip() + "\\n"`` in pieces: the blanks at the end are held back until
    more text follows them, so the last piece ends the text with one newline, as the whole text did."""
    pending = ""
    for i, line in enumerate(lines):
        piece = line if i == 0 else "\n" + line
        kept = piece.rstrip()
        if kept:
            yield pending + kept
            pending = piece[len(kept):]
        else:
            pending += piece
    yield "\n"


def pieces_one(report, verbose: bool, width: int = WIDTH, color: bool = False) -> Iterator[str]:
    """One host's table text, one subject's section at a time (never the whole text at once)."""
    return _stripped_end(_sections(report, verbose, width, color))


def render_one(report, verbose: bool, width: int = WIDTH, color: bool = False) -> str:
    return "".join(pieces_one(report, verbose, width, color))
