"""A hostile or hanging fleet host cannot take the audit down.

Each host here is a fake ``ssh`` first on PATH (``FAKE_SSH`` below): the word after ``--`` is the
host, and the host's name chooses what it does -- answer with a real snapshot, flood stdout or
stderr, hang, leave a child holding the pipe, ignore SIGTERM. Every pid it starts is recorded, so
that a test can check that nothing of it outlives the run. Each failure must be one line for that
host, the other hosts still scanned, and the exit code the documented one.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from clihelpers import REPO, cli_env, run_cli
from hosttree import ready_host
from sshd import Sshd, why_no_sshd

from scanner.fleet import remote
from scanner.fleet.inventory import make_host
from scanner.engine.hostset import HostUnavailable

FAKE_SSH = r"""#!/bin/sh
# a fake ssh: the word after "--" is the host, and its name says how it behaves
while [ "$#" -gt 0 ] && [ "$1" != "--" ]; do shift; done
host=$2
echo $$ >> "$FAKE_PIDS"
background() { "$@" & echo $! >> "$FAKE_PIDS"; }
case $host in
  flood*) exec cat /dev/zero ;;
  errflood*) cat >/dev/null; exec cat /dev/zero >&2 ;;
  chatty*) cat >/dev/null; yes "a warning the host keeps repeating" | head -n 30000 >&2
           echo "python3: the real reason, last" >&2; exit 1 ;;
  longline*) cat >/dev/null; head -c 200000 /dev/zero | tr '\0' 'y' >&2; exit 1 ;;
  tiny*) cat >/dev/null; printf '['; yes '[],' | head -n 2600000 | tr -d '\n'; printf '[]]' ;;
  hang*) background sleep 1000; wait ;;
  leftover*) cat >/dev/null; background sleep 1000; cat "$FAKE_SNAPSHOT"; exit 0 ;;
  stubborn*) trap '' TERM; cat >/dev/null; background sh -c 'trap "" TERM; sleep 1000'
             while :; do sleep 1; done ;;
  *) cat >/dev/null; cat "$FAKE_SNAPSHOT" ;;
esac
"""


@pytest.fixture(scope="module")
def snapshot(tmp_path_factory) -> Path:
    """A real snapshot (of the fixtures' ready host), what every well-behaved fake host answers."""
    base = tmp_path_factory.mktemp("hostile")
    ready_host(base / "tree")
    path = base / "ready.json"
    done = run_cli("collect", "--root", base / "tree", "-o", path)
    assert done.returncode == 0, done.stderr
    return path


class Fake:
    """The environment that puts the fake ssh first on PATH, and the pids it started."""

    def __init__(self, directory: Path, snapshot: Path):
        bin_dir = directory / "bin"
        bin_dir.mkdir()
        (bin_dir / "ssh").write_text(FAKE_SSH)
        (bin_dir / "ssh").chmod(0o755)
        self.pid_file = directory / "pids"
        self.pid_file.write_text("")
        self.env = cli_env(PATH=f"{bin_dir}:{os.environ['PATH']}", FAKE_PIDS=str(self.pid_file),
                           FAKE_SNAPSHOT=str(snapshot))

    def pids(self) -> list:
        return [int(word) for word in self.pid_file.read_text().split()]


@pytest.fixture
def fake(tmp_path, snapshot) -> Fake:
    return Fake(tmp_path, snapshot)


def running(pid: int) -> bool:
    """Alive and not a zombie (an orphan's zombie lingers where init does not reap)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def assert_nothing_left(fake) -> None:
    deadline = time.monotonic() + 5  # an orphan may take a moment to die of its SIGKILL
    while any(running(pid) for pid in fake.pids()) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert fake.pids() and [pid for pid in fake.pids() if running(pid)] == []


def fleet(fake, *args, timeout=120):
    return subprocess.run([sys.executable, "-m", "scanner", "fleet", *map(str, args)], cwd=REPO, env=fake.env,
                          capture_output=True, text=True, timeout=timeout)


def notes_of(proc) -> dict:
    return {h["host"]["label"]: h.get("notes", []) for h in json.loads(proc.stdout)["hosts"]}


# -- caps ------------------------------------------------------------------------------------------
PEAK = """
import sys
from scanner.cli import main
code = main(sys.argv[1:])
peak = [line for line in open("/proc/self/status") if line.startswith("VmHWM:")][0].split()[1]
print(f"peak {peak}", file=sys.stderr)
sys.exit(code)
"""


def fleet_peak_kb(fake, *args) -> tuple:
    """(process, the fleet process's own peak resident set in KB): VmHWM of its own memory map, which
    starts afresh at exec (the rusage of a child would carry pytest's high-water mark over)."""
    proc = subprocess.run([sys.executable, "-c", PEAK, "fleet", *map(str, args)], cwd=REPO, env=fake.env,
                          capture_output=True, text=True, timeout=120)
    peak = [line for line in proc.stderr.splitlines() if line.startswith("peak ")]
    return proc, int(peak[-1].split()[1])


@pytest.mark.parametrize("flooder, reason", [
    ("flood", "flood sent more than 64 MiB, more than any snapshot: collection stopped"),
    ("errflood", "errflood wrote more than 16 MiB of errors on stderr: collection stopped"),
])
def test_a_flooding_host_is_stopped_at_its_cap_and_memory_stays_bounded(fake, flooder, reason):
    proc, peak_kb = fleet_peak_kb(fake, "good", flooder, "good2", "--timeout", "60", "--format", "json")
    assert proc.returncode == 3, proc.stderr
    notes = notes_of(proc)
    assert notes == {"good": [], flooder: [reason], "good2": []}
    # bounded by the 64 MiB cap (plus the interpreter and the scans), not by a flood that never ends
    assert peak_kb < (64 + 120) * 1024, f"peak {peak_kb} KB"
    assert_nothing_left(fake)


def test_a_small_cap_stops_a_flood_in_process(fake, monkeypatch):
    monkeypatch.setenv("PATH", fake.env["PATH"])
    monkeypatch.setenv("FAKE_PIDS", fake.env["FAKE_PIDS"])
    options = remote.RemoteOptions(timeout=60, max_reply_bytes=1 << 20)
    with pytest.raises(HostUnavailable, match=r"^flood sent more than 1 MiB, more than any snapshot"):
        remote.run_collector(make_host("flood", {}), options)
    assert_nothing_left(fake)


def test_a_reply_of_millions_of_tiny_values_is_refused_unparsed_and_the_other_hosts_are_kept(fake):
    """8 MB of empty arrays: 5.2 million values, more than any snapshot (refused by a count, not by parsing:
    parsed, 64 MiB of them took 2 GB, and took every host's thread hostage while they were)."""
    proc = fleet(fake, "good", "tiny", "good2", "--format", "json")
    assert proc.returncode == 3 and "Traceback" not in proc.stderr, proc.stderr
    notes = notes_of(proc)
    assert notes["good"] == [] and notes["good2"] == []
    assert notes["tiny"] == ["the collector's reply from tiny: too many JSON values to be a snapshot (5,200,003 by "
                             "the count of its ',', ':', '[' and '{'; the limit is 5,000,000): not parsed"]


def test_at_most_two_replies_are_parsed_at_once_however_many_hosts_are_collected(fake, monkeypatch):
    """Parsing a reply may take 0.4 GB: six hosts replying together must not take six times that."""
    from scanner.host import snapshot as snapshot_module

    for name in ("PATH", "FAKE_PIDS", "FAKE_SNAPSHOT"):
        monkeypatch.setenv(name, fake.env[name])
    parse, lock, parsing, most = snapshot_module.parse_snapshot, threading.Lock(), [], []

    def watched(text, where):
        with lock:
            parsing.append(where)
            most.append(len(parsing))
        time.sleep(0.3)  # long enough for every other host's reply to arrive meanwhile
        with lock:
            parsing.remove(where)
        return parse(text, where)

    monkeypatch.setattr(snapshot_module, "parse_snapshot", watched)
    options = remote.RemoteOptions(timeout=60)
    threads = [threading.Thread(target=remote.collect_snapshot, args=(make_host(f"good{n}", {}), options))
               for n in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(most) == 6 and max(most) == 2


def test_only_the_tail_of_stderr_is_kept_and_the_reason_is_one_short_line(fake):
    proc = fleet(fake, "chatty", "longline", "good", "--format", "json")
    assert proc.returncode == 3
    notes = notes_of(proc)
    assert notes["chatty"] == ["the collector failed on chatty (exit status 1): python3: the real reason, last"]
    [long_reason] = notes["longline"]
    assert long_reason.startswith("the collector failed on longline (exit status 1): yyyy") and "\n" not in long_reason
    assert len(long_reason) < 400 and long_reason.endswith("…")
    assert notes["good"] == []


# -- the deadline ----------------------------------------------------------------------------------
def test_timeout_is_a_deadline_even_when_descendants_hold_the_pipe_or_ignore_sigterm(fake):
    """``hang`` keeps ssh waiting on a child, ``stubborn`` ignores SIGTERM (and so does its child):
    each is ended at its deadline; ``leftover`` answers and exits but leaves a child holding its
    stdout: its snapshot is scanned, and the child ended."""
    proc = fleet(fake, "hang", "stubborn", "leftover", "good", "--timeout", "2", "--parallel", "4",
                 "--format", "json", timeout=60)
    assert proc.returncode == 3, proc.stderr
    notes = notes_of(proc)
    assert notes == {"hang": ["timed out after 2 s collecting from hang"],
                     "stubborn": ["timed out after 2 s collecting from stubborn"], "leftover": [], "good": []}
    assert_nothing_left(fake)


def test_timeout_is_a_deadline_over_real_ssh_when_the_remote_side_backgrounds_a_child(tmp_path):
    """The remote shell answers at once but leaves ``sleep`` holding the session's stdout: sshd keeps the
    channel open, and so ssh waits. The deadline ends it, and the next host is scanned all the same."""
    reason = why_no_sshd()
    if reason:
        if os.environ.get("CI"):
            pytest.fail(f"{reason}, and .ci/run should have made it available")
        pytest.skip(reason)
    server = Sshd(tmp_path / "sshd", {}, extra_forced={"127.0.0.7": "sleep 30 & echo started"})
    try:
        server.start()
    except (RuntimeError, OSError) as exc:
        pytest.skip(f"cannot start the test sshd: {exc}")
    try:  # without the deadline: "started" after 30 s, which is no snapshot
        proc = run_cli("fleet", server.host("127.0.0.7"), "--ssh-config", server.client_config, "--timeout", "2",
                       "--format", "json")
    finally:
        server.stop()
    assert proc.returncode == 3, proc.stderr
    timed_out = f"timed out after 2 s collecting from 127.0.0.7:{server.port}"
    assert notes_of(proc) == {server.host("127.0.0.7"): [timed_out]}


@pytest.mark.parametrize("value", ["0", "-1", "nan", "inf"])
def test_a_timeout_that_is_no_deadline_is_a_usage_error(fake, value):
    proc = fleet(fake, "good", f"--timeout={value}")
    assert proc.returncode == 2 and "--timeout SECONDS: must be a number of seconds more than 0" in proc.stderr


# -- SIGINT and SIGTERM ----------------------------------------------------------------------------
def wait_for_pids(fake, count: int, proc) -> None:
    deadline = time.monotonic() + 60
    while len(fake.pids()) < count:
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "the hanging hosts never started"
        time.sleep(0.05)


@pytest.mark.parametrize("signum, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)], ids=["SIGINT", "SIGTERM"])
def test_a_signal_stops_every_host_at_once_and_still_writes_the_partial_report(fake, tmp_path, signum, code):
    """Two at a time: ``good`` and ``good2`` are scanned before ``hang`` and ``stubborn`` start (each
    with a child of its own: four pids); ``hang2`` is still waiting for its turn when the signal comes."""
    json_file, junit_file = tmp_path / "fleet.json", tmp_path / "fleet.xml"
    proc = subprocess.Popen([sys.executable, "-m", "scanner", "fleet", "good", "good2", "hang", "stubborn", "hang2",
                             "--parallel", "2", "--timeout", "600", "--json", str(json_file),
                             "--junit", str(junit_file)],
                            cwd=REPO, env=fake.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_for_pids(fake, 2 + 4, proc)
    proc.send_signal(signum)
    table, err = proc.communicate(timeout=30)  # at once, not after --timeout
    name = signal.Signals(signum).name
    assert proc.returncode == code, err
    assert f"vfio-scan fleet: {name}: stopping; ending 2 collections in progress" in err
    assert f"vfio-scan fleet: partial report: 3 of 5 hosts not scanned (interrupted by {name})" in err
    assert "Traceback" not in err
    hosts = {h["host"]["label"]: h for h in json.loads(json_file.read_text())["hosts"]}
    assert list(hosts) == ["good", "good2", "hang", "stubborn", "hang2"]
    assert hosts["good"]["findings"] and not hosts["good"].get("notes")
    partial = "not scanned (this report is partial)"
    assert hosts["hang"]["notes"] == [f"interrupted by {name} while collecting from hang: {partial}"]
    assert hosts["hang2"]["notes"] == [f"interrupted by {name} before collecting from hang2: {partial}"]
    suites = ET.parse(junit_file).getroot().findall("testsuite")
    assert [s.get("name") for s in suites] == [f"vfio-scan:{label}" for label in hosts]
    assert "Could not be scanned" in table and f"hang2: interrupted by {name}" in table
    assert_nothing_left(fake)


def test_sigterm_ends_the_worker_processes_of_a_snapshot_scan(tmp_path, snapshot):
    if len(os.sched_getaffinity(0)) < 2:
        pytest.skip("one CPU: snapshots are scanned in-process")
    sys.path.insert(0, str(REPO / "benchmarks"))
    import treegen

    treegen.build(tmp_path / "tree", 1000, pci_ids=False)
    big = tmp_path / "big.json"
    assert run_cli("collect", "--root", tmp_path / "tree", "-o", big).returncode == 0
    snaps = tmp_path / "snaps"
    snaps.mkdir()
    for n in range(48):
        os.link(big, snaps / f"host{n:02d}.json")
    proc = subprocess.Popen([sys.executable, "-m", "scanner", "scan", "--snapshot", str(snaps), "--class", "0200",
                             "--format", "json"], cwd=REPO, env=cli_env(VFIO_SCAN_PROCESSES="2"),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    workers = []
    deadline = time.monotonic() + 60
    while len(workers) < 2 and time.monotonic() < deadline and proc.poll() is None:
        children = Path(f"/proc/{proc.pid}/task/{proc.pid}/children")
        workers = [int(p) for p in children.read_text().split()] if children.exists() else []
        time.sleep(0.02)
    assert len(workers) == 2, "the workers never started"
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGTERM and "Traceback" not in err, err  # a shell shows 143
    time.sleep(0.2)
    assert [pid for pid in workers if running(pid)] == []


# -- saved snapshots ---------------------------------------------------------------------------------
TRICKY = ["web1:2222", "web1_2222", "web1%3A2222", "../../etc/passwd", "..", ".hidden", "hidden", "web1.",
          "é", "\udcff", "_", "a b", "x" * 300, "x" * 300 + "y", "root@10.0.0.1:22"]


def test_snapshot_file_names_are_unique_safe_and_independent_of_order():
    names = remote.snapshot_file_names(TRICKY)
    files = list(names.values())
    assert len(set(files)) == len(TRICKY)
    for file in files:
        assert "/" not in file and "\0" not in file and not file.startswith(".") and file.endswith(".json")
        assert len(file.encode()) <= 255 - 20  # room for the temporary name of an atomic write
    assert names["web1_2222"] == "web1_2222.json" and names["web1:2222"] == "web1%3A2222.json"
    assert names["root@10.0.0.1:22"] == "root@10.0.0.1_22.json"  # alone in its readable form: stays readable
    assert names[".hidden"] == "%2Ehidden.json" and names["../../etc/passwd"] == "_.._etc_passwd.json"
    assert remote.snapshot_file_names(list(reversed(TRICKY))) == names


def test_saved_snapshots_of_look_alike_hosts_do_not_overwrite_each_other(fake, tmp_path):
    saved = tmp_path / "out" / "saved"
    hosts = ["web1:2222", "web1_2222", "../../etc/passwd", ".hidden"]
    proc = fleet(fake, *hosts, "--save-snapshots", saved, "--format", "json")
    assert proc.returncode == 0, proc.stderr  # all four scanned: the ready fixture
    files = sorted(p.name for p in saved.iterdir())
    assert files == sorted(["web1%3A2222.json", "web1_2222.json", "_.._etc_passwd.json", "hidden.json"])
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["saved"]  # nothing beside DIR
    again = run_cli("scan", "--snapshot", saved, "--format", "json")
    assert len({h["host"]["label"] for h in json.loads(again.stdout)["hosts"]}) == 4
