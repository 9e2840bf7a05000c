"""Prometheus text exposition for node_exporter's textfile collector (``--format prometheus``).

Run from cron or a systemd timer, written where node_exporter's ``--collector.textfile.directory``
points; ``-o`` writes atomically (a temporary file renamed into place), which is what the
collector asks of writers, so it never reads half a file::

    vfio-scan scan --format prometheus -o /var/lib/prometheus/node-exporter/vfio-scan.prom

One metric family per fact an alert or a dashboard keys on, each with HELP and TYPE, every
sample labelled with ``host`` (the run's label, else the hostname): the verdict (``ready``, and
``readiness`` as a state set), whether the scan is complete, each rule's worst status as a state
set, each target device's readiness, counts per status, and when the scan ran and how long it
took. A host that could not be scanned has ``vfio_scan_up 0`` and nothing else. Label values
come from the host (names, device addresses): they are escaped as the format requires, and
text that is not valid UTF-8 is replaced, so no host can break the file or add a sample.
"""

from __future__ import annotations

from datetime import datetime
from typing import Dict, Iterable, List, Tuple

from scanner.engine.fleet_summary import outcomes, rules_seen
from scanner.engine.model import STATUSES
from scanner.engine.report import is_blocking

READINESS = ("READY", "READY_WITH_WARNINGS", "NOT_READY")

FAMILIES = (
    ("vfio_scan_up", "1 when the host was scanned, 0 when it could not be (unreachable, broken snapshot)."),
    ("vfio_scan_ready", "1 when the host is ready for VFIO passthrough (READY or READY_WITH_WARNINGS), else 0."),
    ("vfio_scan_readiness", "The host's verdict as a state set: 1 for the state it is in, 0 for the others."),
    ("vfio_scan_complete", "1 when every rule ran (no rule errored), else 0: an incomplete verdict is not READY."),
    ("vfio_scan_rule_status", "Each rule's worst outcome on the host as a state set (pass, fail, warn, skip, "
                              "error, waived)."),
    ("vfio_scan_device_ready", "1 when a target device has no blocking finding, else 0."),
    ("vfio_scan_findings", "Findings per status."),
    ("vfio_scan_lost_at_next_boot", "Failing or warning findings that hold now but not after the next reboot."),
    ("vfio_scan_scan_timestamp_seconds", "When the scan started, in seconds since the epoch."),
    ("vfio_scan_scan_duration_seconds", "How long the scan took."),
)


def render(reports, options) -> str:
    samples: Dict[str, List[str]] = {name: [] for name, _ in FAMILIES}
    for report in reports:
        for name, labels, value in host_samples(report):
            samples[name].append(f"{name}{{{_labels(labels)}}} {value}")
    out = []
    for name, help_text in FAMILIES:
        if samples[name]:
            out.append(f"# HELP {name} {help_text}")
            out.append(f"# TYPE {name} gauge")
            out += samples[name]
    return "\n".join(out) + "\n"


def host_samples(report) -> Iterable[Tuple[str, List[Tuple[str, str]], str]]:
    host = [("host", report.host.get("label") or report.host.get("hostname") or "?")]
    if report.notes and not report.findings:  # never scanned: the reason is in the other outputs
        yield "vfio_scan_up", host, "0"
        return
    yield "vfio_scan_up", host, "1"
    readiness = report.readiness
    yield "vfio_scan_ready", host, "1" if readiness != "NOT_READY" else "0"
    for state in READINESS:
        yield "vfio_scan_readiness", host + [("state", state)], "1" if state == readiness else "0"
    yield "vfio_scan_complete", host, "0" if report.incomplete else "1"
    outcome_of = outcomes(report)  # one pass over the host's findings, not one per rule
    for rule_id, rule, _ in rules_seen([report]):
        worst = outcome_of.get(rule_id)
        for status in STATUSES:
            yield ("vfio_scan_rule_status", host + [("rule_id", rule_id), ("rule", rule), ("status", status)],
                   "1" if status == worst else "0")
    for device in report.targets:
        blocked = any(f.subject == device and is_blocking(f, report.fail_on) for f in report.findings)
        yield "vfio_scan_device_ready", host + [("device", device)], "0" if blocked else "1"
    for status, count in report.counts.items():
        yield "vfio_scan_findings", host + [("status", status)], str(count)
    yield "vfio_scan_lost_at_next_boot", host, str(len(report.lost_at_next_boot))
    started = _epoch(report.started_at)
    if started is not None:
        yield "vfio_scan_scan_timestamp_seconds", host, started
    yield "vfio_scan_scan_duration_seconds", host, f"{report.duration_s:.3f}"


def _epoch(timestamp: str):
    try:
        return f"{datetime.fromisoformat(timestamp.replace('Z', '+00:00')).timestamp():.3f}"
    except (ValueError, AttributeError):
        return None


def _labels(pairs: List[Tuple[str, str]]) -> str:
    return ",".join(f'{key}="{escape_label_value(value)}"' for key, value in pairs)


def escape_label_value(value) -> str:
    """A label value as the text format requires it: backslash, double quote and line feed escaped;
    what UTF-8 cannot hold (a lone surrogate from a hostile name) replaced."""
    text = str(value).encode("utf-8", "replace").decode("utf-8")
    return text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
