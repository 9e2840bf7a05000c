"""A host's PCI tree as an SVG picture, its IOMMU groups drawn as boxes around their members.

Why a picture: "which devices go to the VM together" is a question of boxes, and a list of group
numbers hides it. Each function is one row, indented under the bridge it sits on (lines join
them); the functions of one IOMMU group sit together under their bridge and a box is drawn around
each run of them, labelled with the group's number and coloured by its shape: one endpoint
(isolated), the functions of one slot, or endpoints of several slots (shared: pass them all or
move the card). Targets are bold, functions on a vfio driver marked so. Drawn by the tool from
the report's topology (scanner/facts/topology.py): no library, no script, no external asset.
Every text is escaped; a host's names cannot become markup.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Dict, List, Optional, Tuple

from reports.html_text import esc
from scanner.base.numbers import decimal

ROW, INDENT, WIDTH, PAD = 22, 18, 980, 8
#: Rows drawn at most: a host with thousands of VFs gets its first rows and a line saying how many more.
MAX_ROWS = 400
NAME_CHARS = 64


def svg_tree(topology: List[dict], targets=(), blocked_groups=()) -> str:
    """The SVG element for one host; ``blocked_groups`` are groups a target cannot be passed in."""
    rows = _rows(topology)
    hidden = max(0, len(rows) - MAX_ROWS)
    rows = rows[:MAX_ROWS]
    targets, blocked = set(targets), {str(g) for g in blocked_groups}
    shapes = _group_shapes(topology)
    height = (len(rows) + (1 if hidden else 0)) * ROW + 2 * PAD
    out = [f'<svg class="pcitree" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {height}" '
           f'width="{WIDTH}" height="{height}" role="img" aria-label="PCI tree and IOMMU groups">']
    out += _group_boxes(rows, shapes, blocked)
    out += _connectors(rows)
    for index, (device, depth) in enumerate(rows):
        out.append(_row(device, depth, index, device["address"] in targets))
    if hidden:
        y = PAD + len(rows) * ROW + 15
        out.append(f'<text class="more" x="{PAD}" y="{y}">… {hidden} more functions not drawn '
                   f'(vfio-scan groups lists them all)</text>')
    out.append("</svg>")
    return "\n".join(out)


def _rows(topology: List[dict]) -> List[Tuple[dict, int]]:
    """Depth-first under each bridge; siblings ordered by group, then address, so a group's members are adjacent."""
    by_address = {d["address"]: d for d in topology}
    children: Dict[Optional[str], List[dict]] = defaultdict(list)
    for device in topology:
        parent = device.get("parent")
        children[parent if parent in by_address else None].append(device)
    rows: List[Tuple[dict, int]] = []
    stack = [(d, 0) for d in reversed(_ordered(children[None]))]
    seen = set()
    while stack:
        device, depth = stack.pop()
        if device["address"] in seen:  # a loop in a hostile topology: drawn once
            continue
        seen.add(device["address"])
        rows.append((device, depth))
        stack += [(c, depth + 1) for c in reversed(_ordered(children.get(device["address"], [])))]
    return rows


def _ordered(devices: List[dict]) -> List[dict]:
    return sorted(devices, key=lambda d: (_group_key(d.get("group")), d["address"]))


def _group_key(group) -> Tuple[int, str]:
    text = str(group) if group is not None else ""
    value = decimal(text)
    return (value, "") if value is not None else (1 << 64, text)


def _group_shapes(topology: List[dict]) -> Dict[str, str]:
    endpoints = defaultdict(list)
    for device in topology:
        if device.get("group") is not None and not device.get("bridge"):
            endpoints[str(device["group"])].append(device["address"])
    shapes = {}
    for group, members in endpoints.items():
        slots = {a.rsplit(".", 1)[0] for a in members}
        shapes[group] = "isolated" if len(members) == 1 else "slot" if len(slots) == 1 else "shared"
    return shapes


def _group_boxes(rows, shapes: Dict[str, str], blocked) -> List[str]:
    out, start = [], 0
    for index in range(1, len(rows) + 1):
        group = rows[start][0].get("group")
        if index < len(rows) and rows[index][0].get("group") == group:
            continue
        if group is not None:
            group = str(group)
            depth = min(depth for _, depth in rows[start:index])
            x, y = PAD + depth * INDENT - 4, PAD + start * ROW + 1
            w, h = WIDTH - x - PAD, (index - start) * ROW - 2
            kind = "blocked" if group in blocked else shapes.get(group, "bridges")
            out.append(f'<g class="group g-{kind}"><rect x="{x}" y="{y}" width="{w}" height="{h}" rx="5"/>'
                       f'<text class="glabel" x="{x + w - 6}" y="{y + 15}" text-anchor="end">'
                       f'IOMMU group {esc(group)}</text></g>')
        start = index
    return out


def _connectors(rows) -> List[str]:
    """Elbows from each bridge down to its children."""
    index_of = {device["address"]: i for i, (device, _) in enumerate(rows)}
    out = []
    for i, (device, depth) in enumerate(rows):
        parent = device.get("parent")
        if depth == 0 or parent not in index_of:
            continue
        px = PAD + (depth - 1) * INDENT + 6
        y0, y1 = PAD + index_of[parent] * ROW + ROW - 5, PAD + i * ROW + ROW // 2
        out.append(f'<path class="link" d="M{px} {y0} V{y1} H{px + INDENT - 8}"/>')
    return out


def _row(device: dict, depth: int, index: int, target: bool) -> str:
    x, y = PAD + depth * INDENT + 4, PAD + index * ROW + 15
    name = _name(device)
    driver = device.get("driver") or "no driver"
    classes = ["dev"] + (["target"] if target else []) + (["vfio"] if _is_vfio(device.get("driver")) else [])
    ids = f'{device.get("vendor") or "????"}:{device.get("device") or "????"}'
    return (f'<text class="{" ".join(classes)}" x="{x}" y="{y}">'
            f'<tspan class="addr">{esc(device["address"])}</tspan> '
            f'<tspan class="ids">{esc(ids)}</tspan> {esc(name)} '
            f'<tspan class="drv">[{esc(driver)}]</tspan>{" ◀ target" if target else ""}</text>')


def _name(device: dict) -> str:
    if device.get("vendor_name"):
        name = f'{device["vendor_name"]} {device.get("device_name") or "Device " + (device.get("device") or "?")}'
    else:
        name = device.get("class_name") or ""
    return name if len(name) <= NAME_CHARS else name[:NAME_CHARS - 1] + "…"


def _is_vfio(driver) -> bool:
    from scanner.facts.pci import is_vfio_driver

    return is_vfio_driver(driver)
