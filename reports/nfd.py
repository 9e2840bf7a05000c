"""A node-feature-discovery feature file (``--format nfd``): Kubernetes node labels from a scan.

NFD's ``local`` source reads ``key=value`` lines from files in
``/etc/kubernetes/node-feature-discovery/features.d/`` and labels the node with each, under
``feature.node.kubernetes.io/`` (NFD's own labels stop at ``iommu-enabled``). A scheduler can
then put a VM that needs a GPU only on a node where that GPU is ready::

    nodeSelector:
      feature.node.kubernetes.io/vfio-scan.ready: "true"
      feature.node.kubernetes.io/vfio-scan.ready-devices.10de-2204: "1"

Labels written (``contrib/kubernetes/`` runs this as a DaemonSet):

* ``vfio-scan.ready`` (``true``/``false``) and ``vfio-scan.readiness`` (the verdict);
* ``vfio-scan.iommu`` and ``vfio-scan.interrupt-remapping`` (``true``/``false``, from VFIO-005
  and VFIO-006; absent when the rule did not run or was skipped);
* ``vfio-scan.ready-devices.VVVV-DDDD``: how many targets with that vendor and device id are
  ready (``--class 0300`` makes every GPU a target).

The file starts with NFD's ``# +expiry-time=`` header, one day after the scan, so that a node
whose scans stopped loses the labels instead of keeping a stale READY. Names and values follow
the Kubernetes label syntax (63 characters of ``[A-Za-z0-9._-]``, alphanumeric at both ends);
the ids come from the host, so anything else in them is never written. One host per file:
with many hosts (a fleet) this format is refused.
"""

from __future__ import annotations

import re
from collections import Counter
from datetime import datetime, timedelta, timezone

from scanner.engine.report import is_blocking

PREFIX = "vfio-scan."
LABEL_TEXT = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9._-]{0,61}[A-Za-z0-9])?$")
#: A name's own part: with the prefix (10 characters) it must still fit the 63 of a label name.
NAME_TEXT = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9._-]{0,51}[A-Za-z0-9])?$")
HEX_ID = re.compile(r"^[0-9a-f]{4}$")
EXPIRY = timedelta(days=1)
RULE_LABELS = (("VFIO-005", "iommu"), ("VFIO-006", "interrupt-remapping"))


class NfdError(Exception):
    """The scan cannot be written as one node's feature file."""


def render(reports, options) -> str:
    if len(reports) != 1 or options.get("fleet"):
        raise NfdError("the nfd format labels one node: scan one host per run (the DaemonSet runs on each node)")
    report = reports[0]
    if report.notes and not report.findings:
        raise NfdError(f"the host was not scanned: {report.notes[0]}")
    labels = node_labels(report)
    lines = [f"# +expiry-time={_expiry(report.started_at)}"]
    lines += [f"{PREFIX}{name}={value}" for name, value in labels if _valid(name) and _valid_value(value)]
    return "\n".join(lines) + "\n"


def node_labels(report) -> list:
    """(name, value) pairs, without the prefix."""
    readiness = report.readiness
    labels = [("ready", "true" if readiness != "NOT_READY" else "false"), ("readiness", readiness)]
    statuses: dict = {}
    for finding in report.findings:
        if finding.subject == "host" and finding.rule_id in dict(RULE_LABELS):
            statuses.setdefault(finding.rule_id, set()).add(finding.status)
    for rule_id, name in RULE_LABELS:
        seen = statuses.get(rule_id, set())
        if "fail" in seen or "error" in seen:
            labels.append((name, "false"))
        elif seen & {"pass", "warn", "waived"}:
            labels.append((name, "true"))
    ready: Counter = Counter()
    for device in report.devices:
        vendor, dev = device.get("vendor") or "", device.get("device") or ""
        if not (HEX_ID.match(vendor) and HEX_ID.match(dev)):
            continue  # ids the host garbled are never written as a label
        blocked = any(f.subject == device["address"] and is_blocking(f, report.fail_on) for f in report.findings)
        ready[f"{vendor}-{dev}"] += 0 if blocked else 1
    for ident, count in sorted(ready.items()):
        labels.append((f"ready-devices.{ident}", str(count)))
    return labels


def _valid(name: str) -> bool:
    return bool(NAME_TEXT.match(name))


def _valid_value(value: str) -> bool:
    return value == "" or bool(LABEL_TEXT.match(value))


def _expiry(started_at: str) -> str:
    try:
        started = datetime.fromisoformat(started_at.replace("Z", "+00:00"))
    except (ValueError, AttributeError):
        started = datetime.now(timezone.utc)
    return (started + EXPIRY).astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
