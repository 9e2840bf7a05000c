"""JUnit XML for CI dashboards (GitLab, Jenkins, Azure DevOps, GitHub actions).

One document with a declaration and a ``<testsuites>`` root; one ``<testsuite>`` per host; one
``<testcase>`` per finding *including passes* (so pass rates mean something).

The text is written here piece by piece, one test case at a time (:func:`pieces`), never as a whole
tree: a scan of 10,000 targets has over 100,000 cases. It is the document CI dashboards have always
been given, with what a generic JUnit builder gets wrong put right:

* text is cleaned first, visibly: ANSI colours stripped, and what XML cannot hold (controls, lone
  surrogates, U+FFFE/U+FFFF) and what such builders delete without trace (C1 controls but NEL, the
  U+FDD0 block, each plane's last two code points) written as ``\\xNN``;
* a failure, error or skip always has a message and the details as output (a failure with neither
  would read as a pass);
* every suite and the root carry ``time`` (the scan's duration, even 0) and ``skipped`` totals;
* test case names are unique in their suite (GitLab keeps only the first of duplicates).

The layout is that of ``xml.etree.ElementTree.indent``: two spaces a level, ``<tag ... />`` for an
element without content, attributes in a fixed order.
"""

from __future__ import annotations

import re
from typing import Dict, Iterator, List, Optional, Tuple

ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b[@-_]")
#: What XML cannot hold (controls, lone surrogates, U+FFFE/U+FFFF), and what JUnit builders delete
#: without trace on top of that (C1 controls but NEL, the U+FDD0 block, each plane's last two
#: code points): all of it is replaced here, visibly.
ILLEGAL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x84\x86-\x9f\ud800-\udfff\ufdd0-\ufddf\ufffe\uffff"
                     + "".join(f"{chr(plane << 16 | 0xfffe)}{chr(plane << 16 | 0xffff)}" for plane in range(1, 17))
                     + "]")
DECLARATION = '<?xml version="1.0" encoding="UTF-8"?>\n'
#: what starts the line of an element at each depth (the root's children are at depth 1)
_LINE = ["\n" + "  " * depth for depth in range(4)]


def _visible(match) -> str:
    code = ord(match.group())
    return "\\x%02x" % code if code < 0x100 else "\\u%04x" % code if code < 0x10000 else "\\U%08x" % code


def clean(text) -> str:
    """Strip colours; replace characters XML cannot hold with a visible ``\\xNN`` (never silently)."""
    text = str(text or "")
    if text.isprintable():  # every character acted on here (ESC starts a colour) is unprintable: nothing to do
        return text
    return ILLEGAL.sub(_visible, ANSI.sub("", text))


def host_slug(host: str) -> str:
    """Jenkins splits classname on dots: ``gpu01.dc1`` becomes ``gpu01_dc1``."""
    return re.sub(r"[^A-Za-z0-9_\-]", "_", host or "host") or "host"


def details(f) -> str:
    lines = [f.message, f"observed: {f.observed or '-'}", f"expected: {f.expected or '-'}"]
    lines += [f"evidence: {e.source}: {e.value}" for e in f.evidence]
    for step in f.remediation:
        tag = f"[{step.phase}{', manual' if step.manual else ''}{', reboot' if step.requires_reboot else ''}]"
        lines.append(f"fix {tag} {step.summary}")
        lines += [f"  $ {c}" for c in step.commands]
    text = "\n".join(lines)
    # a colour code never runs across a line break: lines that are each printable need no cleaning
    return text if all(map(str.isprintable, lines)) else clean(text)


def run_name(report) -> str:
    """The host's name in this run: a fleet's label for it (unique: inventory name, snapshot file), else its hostname."""
    return report.host.get("label") or report.host.get("hostname") or "host"


# -- XML text ---------------------------------------------------------------------------------------

#: what markup means, escaped; then what else an attribute value must escape to survive (line breaks and
#: tabs as character references), and what element text drops (a parser reads a carriage return as a
#: line break anyway). The order matters: ``&`` first.
_MARKUP = (("&", "&amp;"), ("<", "&lt;"), (">", "&gt;"))
_IN_ATTRIBUTE = _MARKUP + (('"', "&quot;"), ("\r", "&#13;"), ("\n", "&#10;"), ("\t", "&#09;"))
_IN_TEXT = _MARKUP + (("\r", ""),)


def _escaped(text: str, table) -> str:
    for char, replacement in table:
        if char in text:
            text = text.replace(char, replacement)
    return text


def attribute(text: str) -> str:
    """An attribute value, quoted for ``"..."``."""
    return _escaped(text, _IN_ATTRIBUTE)


def character_data(text: str) -> str:
    """Element text."""
    return _escaped(text, _IN_TEXT)


def _start(tag: str, attributes: List[Tuple[str, str]]) -> str:
    return "<" + tag + "".join(f' {name}="{attribute(value)}"' for name, value in attributes)


def _leaf(tag: str, attributes: List[Tuple[str, str]], text: Optional[str], depth: int) -> str:
    """An element without children; one whose text is empty is written ``<tag ... />``."""
    body = character_data(text) if text else ""
    return _LINE[depth] + _start(tag, attributes) + (f">{body}</{tag}>" if body else " />")


# -- what each finding becomes ----------------------------------------------------------------------

class Outcome:
    """How one test case reads: its result element (``failure``, ``error``, ``skipped`` or none) with
    message, output and type, and what it prints (``system-out``)."""

    __slots__ = ("kind", "message", "output", "type", "stdout")

    def __init__(self, kind: str = "", message: str = "", output: str = "", type: str = "", stdout: str = ""):
        self.kind, self.message, self.output, self.type, self.stdout = kind, message, output, type, stdout

    @property
    def counted(self) -> str:
        """The suite total it adds to: a result with neither message nor output is none (an empty host note)."""
        return self.kind if self.message or self.output else ""

    def elements(self) -> str:
        text = ""
        if self.counted:
            attributes = [("type", self.type or self.kind)]
            if self.message:
                attributes.append(("message", self.message))
            text = _leaf(self.kind, attributes, self.output, 3)
        if self.stdout:
            text += _leaf("system-out", [], self.stdout, 3)
        return text


def failing_kind(f, fail_on: str) -> str:
    """The result element of a finding, without making its text: ``failure``, ``error``, ``skipped`` or ''."""
    if f.status == "fail" or (f.status == "warn" and fail_on == "warn"):
        return "failure"
    if f.status == "error":
        return "error"
    if f.status in ("skip", "waived"):
        return "skipped"
    return ""


def outcome(f, fail_on: str) -> Outcome:
    kind = failing_kind(f, fail_on)
    text = details(f)
    stdout = text if f.status in ("pass", "warn") else ""
    message = clean(f.message) or f"{f.rule_id} {f.status}"
    if kind == "failure":
        return Outcome(kind, message, text, f.severity or "info", stdout)
    if kind == "error":
        return Outcome(kind, message, text, "error")
    if f.status == "waived":
        w = f.waiver or {}
        why = f"waived: {w.get('justification', '')} (expires {w.get('expires') or 'never'})"
        return Outcome(kind, clean(why), text)
    if kind == "skipped":
        return Outcome(kind, message, text)
    if f.status == "warn":
        return Outcome(stdout=clean("WARNING: " + text))
    return Outcome(stdout=stdout)


def note_outcome(note) -> Outcome:
    """A host that could not be scanned is an error, never a silent gap."""
    text = clean(note)
    return Outcome("error", text, text, "error")


def _case(name: str, classname: str, result: Outcome) -> str:
    start = _start("testcase", [("name", name), ("classname", classname)])
    children = result.elements()
    return _LINE[2] + start + (f">{children}{_LINE[2]}</testcase>" if children else " />")


# -- suites and the document ------------------------------------------------------------------------

class Totals:
    """A suite's (or the document's) counts, known before its first case is written."""

    __slots__ = ("tests", "failure", "error", "skipped")

    def __init__(self):
        self.tests = self.failure = self.error = self.skipped = 0

    def add(self, kind: str) -> None:
        self.tests += 1
        if kind:
            setattr(self, kind, getattr(self, kind) + 1)

    def add_all(self, other: "Totals") -> None:
        for name in self.__slots__:
            setattr(self, name, getattr(self, name) + getattr(other, name))


def totals(report) -> Totals:
    counts = Totals()
    for f in report.findings:
        counts.add(failing_kind(f, report.fail_on))
    for note in report.notes:
        counts.add(note_outcome(note).counted)
    return counts


def properties(report) -> List[Tuple[str, str]]:
    props = {"vfio-scan.version": report.tool.get("version", ""), "kernel": report.host.get("kernel") or "",
             "arch": report.host.get("arch") or "", "cpu_vendor": report.host.get("cpu_vendor") or "",
             "readiness": report.readiness, "source": report.host.get("source") or ""}
    return [(name, clean(value)) for name, value in props.items()]


def suite_pieces(report, index: int, counts: Totals) -> Iterator[str]:
    head, properties_end = _suite_head(report, counts)
    yield head + _suite_id(index) + properties_end
    yield from _suite_cases(report)


def _suite_head(report, counts: Totals) -> Tuple[str, str]:
    """The suite's start tag and properties, in two: before its ``id`` (the suite's place in the
    document, not the report's to know) and after it."""
    host = run_name(report)
    attributes = [("disabled", "0"), ("errors", str(counts.error)), ("failures", str(counts.failure)),
                  ("name", clean(f"vfio-scan:{host}")), ("skipped", str(counts.skipped)), ("tests", str(counts.tests)),
                  ("time", f"{max(report.duration_s, 0.0):.3f}")]
    hostname = clean(report.host.get("hostname") or host)
    if hostname:
        attributes.append(("hostname", hostname))
    return (_LINE[1] + _start("testsuite", attributes),
            f' timestamp="{attribute(report.started_at)}">' + _LINE[2] + "<properties>"
            + "".join(_leaf("property", [("name", name), ("value", value)], None, 3) for name, value in properties(report))
            + _LINE[2] + "</properties>")


def _suite_id(index: int) -> str:
    return f' id="{index}"' if index else ""


def _suite_cases(report) -> Iterator[str]:
    """The suite's test cases and its end tag."""
    slug = host_slug(run_name(report))
    seen: Dict[str, int] = {}
    for f in report.findings:
        name = clean(f"{f.rule_id} {f.title}" + ("" if f.subject == "host" else f" {f.subject}"))
        classname = clean(f"{slug}.{f.rule or 'rule'}")
        yield _case(_unique(seen, classname, name), classname, outcome(f, report.fail_on))
    for note in report.notes:
        yield _case("host scan", f"{slug}.scan", note_outcome(note))
    yield _LINE[1] + "</testsuite>"


def prepare(report) -> Tuple[Totals, str, str]:
    """The report's suite made ahead, where the report was made (scanner/output/formats.py):
    its counts, and its text before and after its ``id``. :func:`pieces` writes it as it writes a
    suite of its own: a fleet's suites are made on every CPU, and the document only put together."""
    counts = totals(report)
    head, properties_end = _suite_head(report, counts)
    return counts, head, properties_end + "".join(_suite_cases(report))


def _unique(seen: Dict[str, int], classname: str, name: str) -> str:
    """GitLab keeps only the first of duplicate names: the second becomes ``name #2``, and so on."""
    key = classname + "\0" + name  # cleaned text holds no NUL: the pair, in one string
    count = seen.get(key, 0) + 1
    seen[key] = count
    return name if count == 1 else f"{name} #{count}"


def pieces(reports, options) -> Iterator[str]:
    """The document of :func:`render`, one suite head and one test case at a time."""
    made = [r.prepared.get(__name__) for r in reports]
    counts = [suite[0] if suite else totals(r) for suite, r in zip(made, reports)]
    if not reports:
        yield DECLARATION + '<testsuites name="vfio-scan" skipped="0" time="0.000" />\n'
        return
    overall = Totals()
    for suite_counts in counts:
        overall.add_all(suite_counts)
    yield DECLARATION + _start("testsuites", [
        ("disabled", "0"), ("errors", str(overall.error)), ("failures", str(overall.failure)),
        ("tests", str(overall.tests)), ("time", f"{sum(r.duration_s for r in reports):.3f}"), ("name", "vfio-scan"),
        ("skipped", str(overall.skipped))]) + ">"
    for index, report in enumerate(reports):
        suite = made[index]
        if suite:
            yield suite[1] + _suite_id(index) + suite[2]
        else:
            yield from suite_pieces(report, index, counts[index])
    yield "\n</testsuites>\n"


def render(reports, options) -> str:
    return "".join(pieces(reports, options))


render.pieces = pieces  # what scanner/output/formats.py streams to the destination instead of the whole text
render.prepare = prepare  # what it has each finished report of a fleet made ahead, where the report was made
