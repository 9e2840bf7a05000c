"""``vfio-scan groups``: every IOMMU group with its devices and a verdict, as a table or JSON.

What the IOMMU-group loop of every passthrough guide prints::

    for d in /sys/kernel/iommu_groups/*/devices/*; do n=${d#*/iommu_groups/*}; n=${n%%/*}
        printf 'IOMMU Group %s ' "$n"; lspci -nns "${d##*/}"; done

read once through the Host layer (``--root DIR`` works on a captured tree) without spawning
lspci per device. Vendor and device names come from the scanned host's own ``pci.ids`` when one
is installed (``Facts.pci_ids``); without it the numeric ids and the built-in class names are shown.

Each group gets the verdict of :func:`scanner.facts.groups.verdict`: its shape (isolated, one slot,
shared by unrelated devices, bridges only) and whether host drivers hold it.

The table and the stderr lines show host text (names, drivers, group types, a hostile group
directory's name) escaped for the terminal (scanner/base/terminal_text.py); JSON keeps it exact.

Exit codes: 0 groups listed; 1 no IOMMU groups (the IOMMU is not active; one line on stderr, and
in JSON a document with no groups); 3 the groups could not be read (the reason on stderr).

JSON (``--format json``, ``schemas/groups.schema.json``)::

    {"schema_version": "1.0", "tool": {...}, "host": {hostname, kernel, arch, cpu_vendor, source},
     "pci_ids": "/usr/share/misc/pci.ids" | null,
     "groups": [{"group": 1, "type": "DMA" | null, "verdict": "...",
                 "devices": [{"address", "vendor", "device", "class", "class_name",
                              "vendor_name", "device_name", "driver", "bridge"}]}],
     "ungrouped": [device, ...]}          # PCI functions in no IOMMU group (an AMD IOMMU itself...)
"""

from __future__ import annotations

import sys
import textwrap
from typing import List, Optional

from scanner.commands.common import add_host_arguments, make_host
from scanner.engine.groups_document import groups_document
from scanner.base.terminal_text import for_terminal, row_for_terminal

WIDTH = 100
#: Unreadable groups named on stderr one by one; a host (or a hostile snapshot) with thousands of them
#: gets one more line for the rest, not a line per group.
SAID_GROUPS = 20
EXIT_LISTED, EXIT_NO_GROUPS, EXIT_INCOMPLETE = 0, 1, 3
NOT_ACTIVE = ("no IOMMU groups: the IOMMU is not active on this host, so no device can be passed through "
              "(see 'vfio-scan explain VFIO-005'; 'vfio-scan scan' shows why)")


def add_arguments(parser) -> None:
    src = parser.add_argument_group("what to read")
    add_host_arguments(src, kernel_log=False)
    parser.add_argument("--format", choices=("table", "json"), default="table",
                        help="table (default) or json (schemas/groups.schema.json)")


# -- the table -----------------------------------------------------------------------------------

def _ids(entry: dict) -> str:
    if not entry["vendor"] and not entry["device"]:
        return "-"
    return f"{entry['vendor'] or '????'}:{entry['device'] or '????'}"


def _name(entry: dict) -> str:
    """``NVIDIA Corporation GA102 [GeForce RTX 3090]``, or ``... Device 2204`` as lspci says it."""
    if not entry["vendor_name"]:
        return ""
    return f"{entry['vendor_name']} {entry['device_name'] or 'Device ' + (entry['device'] or '????')}"


def _rows(entries: List[dict]) -> List[tuple]:
    """(address, ids, class, driver, name) per device, each cell escaped before widths are measured."""
    return [row_for_terminal((e["address"], _ids(e), e["class_name"], e["driver"] or "-", _name(e))) for e in entries]


def _layout(rows: List[tuple]) -> List[int]:
    heads = ("address", "ids", "class", "driver")
    return [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(heads)]


def _format_row(row: tuple, widths: List[int]) -> List[str]:
    """``address ids class driver`` on one line; the vendor and device name, when known, on the next
    lines under the ids, where it has the width of the table to itself."""
    lines = [("  " + "  ".join(cell.ljust(w) for cell, w in zip(row[:4], widths))).rstrip()]
    if row[4]:
        indent = " " * (2 + widths[0] + 2)
        lines += wrap(row[4], indent, indent + "  ", break_on_hyphens=False)
    return lines


#: What textwrap turns into a space or takes for one: a text with none of it but single-line spaces
#: is wrapped as it is.
_WRAPPED_WHITESPACE = frozenset("\t\n\x0b\x0c\r")


def wrap(text: str, indent: str = "", subsequent_indent: str = "", break_on_hyphens: bool = True) -> List[str]:
    """``textwrap.wrap(text, WIDTH, ...)``, the same lines; a text that fits on its first line as it
    is (most names and titles: a table of ten thousand devices has as many) skips textwrap's
    chunking. It fits when no space is at either end to drop and nothing in it is a tab or a line
    break to replace."""
    if (text and len(indent) + len(text) <= WIDTH and text.strip() == text
            and _WRAPPED_WHITESPACE.isdisjoint(text)):
        return [indent + text]
    return textwrap.wrap(text, WIDTH, initial_indent=indent, subsequent_indent=subsequent_indent,
                         break_on_hyphens=break_on_hyphens)


def render_table(doc: dict) -> str:
    host = doc["host"]
    who = " · ".join(p for p in (host.get("hostname"), f"kernel {host.get('kernel') or '?'}", host.get("source")) if p)
    out = [for_terminal(f"IOMMU groups of {who}")]
    with_names = bool(doc["pci_ids"])
    if with_names:
        out.append(for_terminal(f"Names from {doc['pci_ids']}"))
    else:
        out.append("No pci.ids on this host: numeric ids only (install pciutils or hwdata for names)")
    every = [e for g in doc["groups"] for e in g["devices"]] + doc["ungrouped"]
    all_rows = _rows(every)  # in the order they are shown: each group's slice of them, then the ungrouped
    widths = _layout(all_rows)
    head = ("address", "ids", "class", "driver")
    out.append("")
    out.append(("  " + "  ".join(h.ljust(w) for h, w in zip(head, widths))).rstrip())
    shown = 0
    for group in doc["groups"]:
        title = f"Group {group['group']}" + (f" ({group['type']})" if group["type"] else "") + f": {group['verdict']}"
        out.append("")
        out.extend(wrap(for_terminal(title), subsequent_indent="    "))
        for row in all_rows[shown:shown + len(group["devices"])]:
            out.extend(_format_row(row, widths))
        shown += len(group["devices"])
    if doc["groups"] and doc["ungrouped"]:
        out.append("")
        out.append("In no IOMMU group (cannot be passed through):")
        for row in all_rows[shown:]:
            out.extend(_format_row(row, widths))
    devices = sum(len(g["devices"]) for g in doc["groups"])
    out.append("")
    out.append(f"{len(doc['groups'])} IOMMU groups, {devices} devices in them")
    return "\n".join(out) + "\n"


# -- the command ---------------------------------------------------------------------------------

def _no_groups_line(facts) -> str:
    if facts.xen_dom0:
        return ("no IOMMU groups: this is a Xen dom0, where the Xen hypervisor owns the IOMMU "
                "(assign devices with 'xl pci-assignable-add')")
    return NOT_ACTIVE


def run(options) -> int:
    from scanner.facts import Facts

    facts = Facts(make_host(options.hosts))
    state = facts.iommu
    if state.groups_reason:
        _say(f"error: cannot list /sys/kernel/iommu_groups: {state.groups_reason}")
        return EXIT_INCOMPLETE
    doc = groups_document(facts)
    problem: Optional[str] = None
    code = EXIT_LISTED
    if not doc["groups"]:
        problem, code = _no_groups_line(facts), EXIT_NO_GROUPS
    elif not state.real_groups:
        problem = ("the IOMMU is not active: every IOMMU group is a vfio-noiommu fake, with no DMA isolation "
                   "(see 'vfio-scan explain VFIO-005')")
        code = EXIT_NO_GROUPS
    unreadable = [g for g in state.groups.values() if g.devices_reason]
    if doc["groups"] or options.format == "json":
        _write(render_json(doc) if options.format == "json" else render_table(doc))
    if problem:
        _say(problem)
    for group in unreadable[:SAID_GROUPS]:
        _say(f"error: cannot list /sys/kernel/iommu_groups/{group.number}/devices: {group.devices_reason}")
    if len(unreadable) > SAID_GROUPS:
        _say(f"error: and {len(unreadable) - SAID_GROUPS} more IOMMU groups whose devices cannot be listed "
             "(the JSON output names every group)")
    return EXIT_INCOMPLETE if unreadable else code


def _say(line: str) -> None:
    """One line on stderr; a group's name or a reason read from the host is shown escaped."""
    print(f"vfio-scan groups: {for_terminal(line)}", file=sys.stderr)


def render_json(doc: dict) -> str:
    """Indented JSON, host text kept exact; a lone surrogate (a hostile snapshot's ``\\ud800``) is written
    as its escape, or the text could not be written as UTF-8 at all."""
    from scanner.base.json_text import indented

    return indented(doc, end="\n")


def _write(text: str) -> None:
    try:
        sys.stdout.write(text)
    except UnicodeEncodeError:  # an ASCII-only terminal and a name with an accent in pci.ids
        sys.stdout.write(text.encode("ascii", "replace").decode("ascii"))
    sys.stdout.flush()
