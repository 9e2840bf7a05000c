"""One side of ``vfio-scan diff``: what each host looked like, read from whatever was kept of it.

Operators keep different things: the snapshots ``collect`` and ``fleet --save-snapshots`` write,
the JSON reports of ``scan`` and ``fleet``, or ``groups --format json``. Each becomes one
:class:`HostState` per host, holding what that input knows: a snapshot knows everything (it is
scanned here, so it also has findings); a report knows the findings and the kernel but not the
device list; a groups document knows the devices and groups but not the findings. The
comparison then compares what both sides know.

Every file is hostile input: read through scanner/host/inputfile.py (regular files only, capped,
never blocking), its JSON bounded in depth, and checked against the project's own schema before
a field of it is used. A broken file given alone is an input error (exit 2); a broken file in a
directory is that host's error, and the other hosts are still compared.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Tuple

from scanner.host.inputfile import InputFileError, read_input_text

#: The largest input file read: a fleet report of a thousand hosts with device targets fits.
MAX_INPUT_BYTES = 256 << 20
STATUS_RANK = {"pass": 0, "skip": 0, "waived": 0, "warn": 1, "error": 2, "fail": 3}
KNOWN_KINDS = "a vfio-scan snapshot, JSON report, fleet report or 'groups --format json' document"


class SideError(Exception):
    """A file or directory that cannot be read as a side of the comparison: one line naming it."""


@dataclass(frozen=True)
class Device:
    """One PCI function as both sides can tell it."""

    address: str
    ids: str  # vendor:device, "????:????" when unreadable
    driver: Optional[str]
    group: Optional[str]  # None: in no IOMMU group
    bridge: bool
    name: str = ""  # vendor and device name from the host's pci.ids, when it had one


@dataclass
class HostState:
    """What one input says about one host; ``None`` marks what that kind of input does not know."""

    label: str
    kind: str  # snapshot | report | groups
    hostname: Optional[str] = None
    kernel: Optional[str] = None
    cmdline: Optional[str] = None
    devices: Optional[Dict[str, Device]] = None
    groups_reason: Optional[str] = None  # why the IOMMU groups could not be listed
    readiness: Optional[str] = None
    findings: Optional[Dict[Tuple[str, str], dict]] = None  # (rule_id, subject) -> {status, rule, message}
    targets: List[str] = field(default_factory=list)
    error: Optional[str] = None  # the host could not be read at all


@dataclass
class Side:
    """OLD or NEW: the path given, its hosts, and whether it stands for one host (a single file)."""

    path: str
    hosts: List[HostState]
    single: bool


#: Scans one snapshot host: (host, facts) -> the report's JSON dict.
ScanFunction = Callable[[object, object], dict]


def read_side(path: str, scan: ScanFunction) -> Side:
    """The hosts of ``path``; a directory stands for its ``*.json`` files, one host each (or many,
    for a fleet report). Raises :class:`SideError` when ``path`` itself is unusable."""
    if os.path.isdir(path):
        return Side(path, _directory_hosts(path, scan), single=False)
    if not os.path.lexists(path):
        raise SideError(f"{path}: no such file or directory")
    hosts = _file_hosts(path, _file_label(path, set()), scan)
    return Side(path, hosts, single=len(hosts) == 1 and hosts[0].kind != "fleet")


def _directory_hosts(directory: str, scan: ScanFunction) -> List[HostState]:
    try:
        names = sorted(n for n in os.listdir(directory) if n.endswith(".json"))
    except OSError as exc:
        raise SideError(f"{directory}: cannot list this directory: {exc.strerror or exc}") from None
    if not names:
        raise SideError(f"{directory}: no *.json files in this directory")
    hosts: List[HostState] = []
    taken: set = set()
    for name in names:
        path = os.path.join(directory, name)
        label = _file_label(path, taken)
        try:
            hosts += _file_hosts(path, label, scan)
        except SideError as exc:
            hosts.append(HostState(label, "unreadable", error=str(exc)))
    return hosts


def _file_label(path: str, taken: set) -> str:
    from scanner.engine.snapshots import label_for

    return label_for(path, taken)


def _file_hosts(path: str, label: str, scan: ScanFunction) -> List[HostState]:
    """The hosts one file describes (one, or a fleet report's many)."""
    from scanner.host.snapshot import SnapshotError, decode_bounded

    try:
        text = read_input_text(path, MAX_INPUT_BYTES)
        document = decode_bounded(text, path)
    except InputFileError as exc:
        raise SideError(f"{path}: {exc}") from None
    except SnapshotError as exc:
        raise SideError(str(exc)) from None
    if not isinstance(document, dict):
        raise SideError(f"{path}: not {KNOWN_KINDS}")
    if document.get("format") == "vfio-scan-snapshot":
        return [_snapshot_state(text, path, label, scan)]
    if "findings" in document:
        _check(document, "report", path)
        return [report_state(document, label)]
    if "hosts" in document and "summary" in document:
        _check(document, "fleet", path)
        return fleet_states(document)
    if "groups" in document and "ungrouped" in document:
        _check(document, "groups", path)
        return [groups_state(document, label)]
    raise SideError(f"{path}: not {KNOWN_KINDS}")


def _check(document: dict, schema: str, path: str) -> None:
    """Refuse a document that breaks its schema, naming where (a hostile file is never half used)."""
    from scanner.base.schemas import schema_validator

    error = min(schema_validator(schema).iter_errors(document), key=lambda e: list(map(str, e.absolute_path)),
                default=None)
    if error is not None:
        where = "/" + "/".join(str(p) for p in error.absolute_path)
        message = error.message if len(error.message) <= 200 else error.message[:200] + "..."
        raise SideError(f"{path}: does not match schemas/{schema}.schema.json at {where[:200]}: {message}")


# -- each kind of input --------------------------------------------------------------------------

def _snapshot_state(text: str, path: str, label: str, scan: ScanFunction) -> HostState:
    from scanner.engine.snapshots import host_of_snapshot
    from scanner.facts import Facts
    from scanner.host.snapshot import SnapshotError, parse_snapshot

    try:
        host = host_of_snapshot(parse_snapshot(text, path), path)
    except SnapshotError as exc:
        raise SideError(str(exc)) from None
    facts = Facts(host)
    state = groups_state(_groups_document(facts), label, kind="snapshot")
    state.cmdline = facts.cmdline.raw if facts.cmdline is not None else None
    state.groups_reason = facts.iommu.groups_reason
    _add_findings(state, scan(host, facts))
    return state


def _groups_document(facts) -> dict:
    from scanner.engine.groups_document import groups_document

    return groups_document(facts)


def report_state(report: dict, label: Optional[str] = None, kind: str = "report") -> HostState:
    host = report["host"]
    state = HostState(label or host.get("label") or host["hostname"], kind, hostname=host["hostname"],
                      kernel=host["kernel"])
    _add_findings(state, report)
    return state


def fleet_states(fleet: dict) -> List[HostState]:
    """Every host of a fleet report by its label, and the hosts it could not scan as errors."""
    from scanner.engine.snapshots import unique_label as _unique

    taken: set = set()
    states = []
    for report in fleet["hosts"]:
        state = report_state(report)
        state.label = _unique(state.label, taken)
        states.append(state)
    for problem in fleet["summary"]["host_errors"]:
        states.append(HostState(_unique(problem["host"], taken), "unreadable", error=problem["reason"]))
    return states


def groups_state(document: dict, label: str, kind: str = "groups") -> HostState:
    host = document["host"]
    devices: Dict[str, Device] = {}
    for group in document["groups"]:
        for entry in group["devices"]:
            devices[entry["address"]] = _device(entry, str(group["group"]))
    for entry in document["ungrouped"]:
        devices.setdefault(entry["address"], _device(entry, None))
    return HostState(label, kind, hostname=host["hostname"], kernel=host["kernel"], devices=devices)


def _device(entry: dict, group: Optional[str]) -> Device:
    ids = f"{entry.get('vendor') or '????'}:{entry.get('device') or '????'}"
    vendor_name, device_name = entry.get("vendor_name"), entry.get("device_name")
    name = " ".join(n for n in (vendor_name, device_name) if n) if vendor_name else ""
    return Device(entry["address"], ids, entry.get("driver"), group, bool(entry.get("bridge")), name)


def _add_findings(state: HostState, report: dict) -> None:
    """The report's verdict and its findings by (rule, subject); a repeated pair keeps its worst status."""
    state.readiness = report["summary"]["readiness"]
    state.targets = list(report.get("targets") or [])
    findings: Dict[Tuple[str, str], dict] = {}
    for finding in report["findings"]:
        key = (finding["rule_id"], finding["subject"])
        kept = findings.get(key)
        if kept is None or STATUS_RANK.get(finding["status"], 0) > STATUS_RANK.get(kept["status"], 0):
            findings[key] = {"status": finding["status"], "rule": finding.get("rule", ""),
                             "message": finding.get("message", "")}
    state.findings = findings
