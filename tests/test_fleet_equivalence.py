"""A fleet of snapshots reports each host as that host alone would be reported, however it is scanned.

Many snapshot files are scanned by worker processes, each scanning one host after another; these
tests hold that to what a user would otherwise see. On a fleet of varied hosts (ready, failing
for different reasons, broken in its own way, the same machine under two names) mixed with
snapshots that cannot be used (not JSON, no snapshot, nested too deep, against the schema, from a
newer collector, of no host, cut at the collector's limit):

* workers and a single process write the very same table, JSON and JUnit (but for the clock);
* each host's report in the fleet is the report of its snapshot scanned alone, so that nothing one
  host's scan leaves behind (a cache, a parsed file) reaches the next host's report;
* a snapshot that cannot be used is, in the fleet, exactly the line it is alone (exit 2 there).
"""

from __future__ import annotations

import json
import os
import re
import weakref

import pytest

from clihelpers import run_cli, stderr_lines
from scanner import collector
from scanner.engine.hostpool import MIN_JOBS
from snapshottrees import TREES

KINDS = ("ready", "ready-amd", "workstation", "kitchen-sink", "broken-links", "garbled", "no-dmar", "warn-only",
         "no-cmdline")
BROKEN = {
    "not-json": "{\"format\": ",
    "no-snapshot": "{}",
    "too-deep": "[" * 5000 + "]" * 5000,
}


def renamed(document: dict, hostname: str) -> dict:
    """The same machine under another name, as a fleet of identical servers has them."""
    entries = dict(document["entries"])
    entries["/proc/sys/kernel/hostname"] = dict(entries["/proc/sys/kernel/hostname"], text=f"{hostname}\n")
    return dict(document, hostname=hostname, entries=entries)


@pytest.fixture(scope="module")
def fleet(tmp_path_factory):
    """More snapshots than it takes to start workers: every kind twice (the twin the same but for
    its hostname), then the broken ones."""
    base = tmp_path_factory.mktemp("fleet")
    out = base / "snaps"
    out.mkdir()
    documents = {}
    for kind in KINDS:
        TREES[kind](base / kind)
        hostname = base / kind / "proc/sys/kernel/hostname"
        hostname.parent.mkdir(parents=True, exist_ok=True)
        hostname.write_text(f"{kind}\n")
        documents[kind] = json.loads(collector.dumps(collector.collect(str(base / kind))))
        (out / f"{kind}.json").write_text(json.dumps(documents[kind]))
        (out / f"{kind}-twin%3A2.json").write_text(json.dumps(renamed(documents[kind], f"{kind}-twin")))
    for name, text in BROKEN.items():
        (out / f"{name}.json").write_text(text)
    ready = documents["ready"]
    TREES["empty"](base / "empty")  # a directory with a hostname: the collector records no host there
    (out / "no-host.json").write_text(collector.dumps(collector.collect(str(base / "empty"))))
    (out / "schema-fault.json").write_text(json.dumps(dict(ready, hostname=7)))
    (out / "newer.json").write_text(json.dumps(dict(ready, snapshot_version="2.0")))
    (out / "cut.json").write_text(json.dumps(dict(ready, notes=["stopped at the entry limit (250000 entries)"])))
    assert len(list(out.glob("*.json"))) > MIN_JOBS
    return out


def clockless(text: str) -> str:
    """An output without what the clock decides: when each scan started and how long it took."""
    text = re.sub(r'"(started_at|duration_s)": ("[^"]*"|[0-9.e-]+)', r'"\1": 0', text)
    return re.sub(r' (time|timestamp)="[^"]*"', "", text)


def scan_fleet(snaps, tmp_path, workers: str):
    table, document, junit = (tmp_path / f"{workers}.{ext}" for ext in ("txt", "json", "xml"))
    proc = run_cli("scan", "--snapshot", snaps, "--class", "0300", "-o", table, "--json", document,
                   "--junit", junit, VFIO_SCAN_PROCESSES=workers)
    assert proc.returncode == 3 and "Traceback" not in proc.stderr, proc.stderr
    return [clockless(path.read_text()) for path in (table, document, junit)]


def test_workers_and_one_process_write_the_same_table_json_and_junit(fleet, tmp_path):
    assert scan_fleet(fleet, tmp_path, "2") == scan_fleet(fleet, tmp_path, "1")


def test_each_hosts_report_in_the_fleet_is_its_snapshot_scanned_alone(fleet, tmp_path):
    table, document, junit = scan_fleet(fleet, tmp_path, "2")
    hosts = {h["host"]["label"]: h for h in json.loads(document)["hosts"]}
    assert len(hosts) == len(list(fleet.glob("*.json")))
    for kind in KINDS:
        for label, name in ((kind, kind), (f"{kind}-twin:2", f"{kind}-twin%3A2")):
            proc = run_cli("scan", "--snapshot", fleet / f"{name}.json", "--class", "0300", "--format", "json")
            alone = json.loads(clockless(proc.stdout))
            got = dict(hosts[label], host=dict(hosts[label]["host"]))
            assert got["host"].pop("label") == label
            assert got == alone, label
            assert got["host"]["hostname"] == label.replace(":2", "")
    assert hosts["cut"]["notes"] and hosts["cut"]["notes"][0].startswith(f"snapshot {fleet / 'cut.json'}: incomplete")


@pytest.mark.parametrize("name", sorted(BROKEN) + ["schema-fault", "newer", "no-host"])
def test_a_snapshot_that_cannot_be_used_is_the_same_line_in_the_fleet_as_alone(fleet, tmp_path, name):
    _, document, _ = scan_fleet(fleet, tmp_path, "2")
    host = next(h for h in json.loads(document)["hosts"] if h["host"]["label"] == name)
    alone = run_cli("scan", "--snapshot", fleet / f"{name}.json")
    assert alone.returncode == 2 and len(stderr_lines(alone)) == 1, alone.stderr
    assert host["findings"] == [] and len(host["notes"]) == 1
    assert stderr_lines(alone)[0] == f"vfio-scan scan: error: --{host['notes'][0]}"


def test_each_scanned_snapshot_is_freed_before_the_next_is_read(fleet, monkeypatch):
    """A scan leaves its host in a reference cycle (the facts keep it): it is still freed as soon as
    its report is made, so that a fleet holds one snapshot at a time, not as many as the collector
    lets pile up."""
    from scanner.engine.runner import Scan, select_rules
    from scanner.engine.hostset import HostSet
    from scanner.engine.plugins import load_plugins
    from scanner.engine.scanning import scan_host
    from scanner.engine.snapshots import snapshot_jobs

    monkeypatch.setenv("VFIO_SCAN_PROCESSES", "1")  # every job in this process, where it can be watched
    rules = select_rules(load_plugins().sorted_rules(), [], [])
    scanned, held = [], []

    def scan_one(host):
        held.append(sum(ref() is not None for ref in scanned))  # hosts scanned before, still in memory
        scanned.append(weakref.ref(host))
        return scan_host(host, rules, Scan())

    reports = HostSet(snapshot_jobs([str(fleet)]), processes=True).scan(scan_one)
    assert len(reports) == len(list(fleet.glob("*.json")))
    assert held == [0] * (len(KINDS) * 2 + 1)  # every usable snapshot, and the one cut short
    assert [ref() for ref in scanned if ref() is not None] == []


def test_the_workers_make_each_hosts_junit_suite_and_the_document_is_put_together(fleet, monkeypatch):
    """Each report comes back from its worker with its JUnit suite made (what the test of workers and
    one process above then holds to the same document), a snapshot that cannot be used included."""
    from reports import junit
    from scanner.engine.hostpool import workers_for
    from scanner.engine.hostset import HostSet
    from scanner.engine.plugins import load_plugins
    from scanner.engine.runner import Scan, select_rules
    from scanner.engine.scanning import scan_host
    from scanner.engine.snapshots import snapshot_jobs
    from scanner.output.formats import preparer

    monkeypatch.setenv("VFIO_SCAN_PROCESSES", "2")
    jobs = snapshot_jobs([str(fleet)])
    if workers_for(len(jobs)) < 2:
        pytest.skip("one CPU: no worker processes")
    registry = load_plugins()
    rules = select_rules(registry.sorted_rules(), [], [])
    finish = preparer(registry, [("table", "-"), ("junit", "fleet.xml")])
    reports = HostSet(jobs, processes=True).scan(lambda host: scan_host(host, rules, Scan()), finish=finish)
    assert len(reports) == len(jobs) and all(junit.__name__ in r.prepared for r in reports)
    made = junit.render(reports, {})
    for report in reports:
        report.prepared.clear()
    assert made == junit.render(reports, {})


def test_a_snapshot_whose_scan_kills_its_worker_costs_that_host_alone(fleet, monkeypatch):
    """A crash that takes the worker process (a plugin's C code, the OOM killer) is that one host's
    error, in its notes (the run is incomplete: exit 3), and every other host is scanned as usual."""
    import signal

    from scanner.engine.hostpool import workers_for
    from scanner.engine.hostset import HostSet
    from scanner.engine.plugins import load_plugins
    from scanner.engine.report import EXIT_INCOMPLETE, combined_exit_code
    from scanner.engine.runner import Scan, select_rules
    from scanner.engine.scanning import scan_host
    from scanner.engine.snapshots import snapshot_jobs

    monkeypatch.setenv("VFIO_SCAN_PROCESSES", "2")
    jobs = snapshot_jobs([str(fleet)])
    if workers_for(len(jobs)) < 2:
        pytest.skip("one CPU: no worker processes")
    rules = select_rules(load_plugins().sorted_rules(), [], [])
    victim = [job.label for job in jobs].index("ready")

    parent = os.getpid()

    def scan_one(host):
        if host.origin.endswith("/ready.json") and os.getpid() != parent:  # in a worker only: never pytest
            os.kill(os.getpid(), signal.SIGKILL)
        return scan_host(host, rules, Scan())

    reports = HostSet(jobs, processes=True).scan(scan_one)
    assert [r.host["label"] for r in reports] == [job.label for job in jobs]
    lost = reports[victim]
    assert lost.notes == ["internal error while scanning: the worker process scanning it was killed by SIGKILL"]
    assert lost.findings == [] and lost.exit_code == EXIT_INCOMPLETE
    assert combined_exit_code(reports) == EXIT_INCOMPLETE

    def outcome(report):
        return report.host["label"], report.notes, [(f.rule_id, f.subject, f.status, f.message) for f in report.findings]

    monkeypatch.setenv("VFIO_SCAN_PROCESSES", "1")  # the same hosts in this process, none of them killed
    alone = HostSet(jobs, processes=True).scan(lambda host: scan_host(host, rules, Scan()))
    assert [outcome(r) for i, r in enumerate(reports) if i != victim] == \
        [outcome(r) for i, r in enumerate(alone) if i != victim]
    assert alone[victim].findings  # what was lost was a host that scans
