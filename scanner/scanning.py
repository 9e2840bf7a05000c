"""One host, start to finish: facts, rules, findings, report."""

from __future__ import annotations

import time
from datetime import datetime, timezone
from typing import Iterable

from scanner import __version__
from scanner.engine import Scan, run_rules
from scanner.facts import Facts
from scanner.model import Rule
from scanner.report import Report


def host_info(facts: Facts) -> dict:
    return {
        "hostname": facts.hostname,
        "kernel": facts.release,
        "arch": facts.arch,
        "cpu_vendor": facts.cpu.vendor if facts.cpu else None,
        "source": facts.host.source,
    }


def scan_host(host, rules: Iterable[Rule], scan: Scan) -> Report:
    started = datetime.now(timezone.utc).astimezone()
    clock = time.perf_counter()
    facts = Facts(host)
    findings = run_rules(rules, facts, scan)
    return Report(
        host=host_info(facts),
        findings=findings,
        started_at=started.isoformat(timespec="seconds"),
        duration_s=time.perf_counter() - clock,
        targets=[str(t) for t in scan.targets],
        tool={"name": "vfio-scan", "version": __version__},
        fail_on=scan.fail_on,
    )
