"""Every output file is written whole or not at all; a write that fails is exit 3 with one line.

A full disk is simulated with ``RLIMIT_FSIZE`` in the child (SIGXFSZ ignored, so a write past the
limit fails with EFBIG instead of killing the process): the output starts to be written, then the
write fails midway, as on a disk that fills up. Python itself writes no file at start-up
(``PYTHONDONTWRITEBYTECODE`` is set, and stdout and stderr are pipes, which the limit does not
cover), so only the output under test runs into the limit.
"""

from __future__ import annotations

import json
import os
import resource
import signal
import stat
import subprocess
import sys
import threading
import xml.etree.ElementTree as ET

import pytest

from clihelpers import REPO, cli_env, load_schema, stderr_lines
from hosttree import ready_host, workstation
from scanner.output.atomicwrite import OutputError, write_atomically

LIMIT = 1024  # bytes a file may grow to in the child: far less than any script, report or snapshot here
COLLECTOR = REPO / "scanner" / "collector.py"
OLD_SCRIPT = "#!/usr/bin/env bash\n# last week's reviewed script\nset -euo pipefail\necho nothing to do\n"


def run(argv, cwd=REPO, limit=None, umask=None, stdout=subprocess.PIPE):
    """``argv`` in a child process, optionally under a file-size limit and a umask; text captured."""
    def setup():
        if limit is not None:
            resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        if umask is not None:
            os.umask(umask)
    return subprocess.run([sys.executable, *map(str, argv)], cwd=cwd, env=cli_env(pythonpath=REPO), stdout=stdout,
                          stderr=subprocess.PIPE, text=True, timeout=300, preexec_fn=setup)


def vfio_scan(*args, **kw):
    return run(["-m", "scanner", *args], **kw)


def one_error_line(proc, *needles):
    """Exit 3, exactly one line on stderr naming every needle, no traceback; returns the line."""
    assert proc.returncode == 3, (proc.returncode, proc.stderr)
    assert "Traceback" not in proc.stderr and "Exception ignored" not in proc.stderr, proc.stderr
    lines = stderr_lines(proc)
    assert len(lines) == 1, f"expected one line on stderr, got {proc.stderr!r}"
    for needle in needles:
        assert needle in lines[0], f"{needle!r} not in {lines[0]!r}"
    return lines[0]


@pytest.fixture(scope="module")
def ws(tmp_path_factory):
    """A workstation tree whose GPU is on nvidia: 'fix --device 01:00.0' writes a script of several KiB."""
    return workstation(tmp_path_factory.mktemp("ws") / "ws").root


def fix(ws, out, **kw):
    return vfio_scan("fix", "--root", ws, "--device", "01:00.0", "-o", out, **kw)


# -- a full disk: nothing partial left, the old file untouched -------------------------------------

def test_fix_on_a_full_disk_leaves_no_script_and_says_so_in_one_line(ws, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    proc = fix(ws, "fix.sh", cwd=out, limit=LIMIT)
    line = one_error_line(proc, "fix.sh", "File too large")
    assert line == "vfio-scan fix: error: cannot write fix.sh: File too large"
    assert os.listdir(out) == []  # neither a truncated fix.sh nor a temporary file


def test_fix_on_a_full_disk_leaves_the_old_script_byte_for_byte(ws, tmp_path):
    script = tmp_path / "fix.sh"
    script.write_text(OLD_SCRIPT)
    script.chmod(0o750)
    one_error_line(fix(ws, script, limit=LIMIT), str(script))
    assert script.read_text() == OLD_SCRIPT and stat.S_IMODE(script.stat().st_mode) == 0o750
    assert os.listdir(tmp_path) == ["fix.sh"]
    assert fix(ws, script).returncode == 0  # without the limit the same run writes it: it is larger than LIMIT
    assert script.stat().st_size > LIMIT and "# BEGIN VFIO-013 0000:01:00.0" in script.read_text()


def test_collect_on_a_full_disk_leaves_no_snapshot(ws, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    proc = vfio_scan("collect", "--root", ws, "-o", out / "snap.json", limit=LIMIT)
    one_error_line(proc, f"vfio-scan collect: error: cannot write {out / 'snap.json'}: File too large")
    assert os.listdir(out) == []


def test_the_standalone_collector_on_a_full_disk_leaves_no_snapshot(ws, tmp_path):
    (tmp_path / "snap.json").write_text("{}\n")  # an older file: kept as it was
    proc = run([COLLECTOR, "--root", ws, "-o", "snap.json"], cwd=tmp_path, limit=LIMIT)
    one_error_line(proc, "vfio-scan collector: error: cannot write snap.json: File too large")
    assert os.listdir(tmp_path) == ["snap.json"] and (tmp_path / "snap.json").read_text() == "{}\n"
    proc = run([COLLECTOR, "--root", ws, "-o", "snap.json"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert json.loads((tmp_path / "snap.json").read_text())["root"] == str(ws)


# -- one output fails, the others are written -------------------------------------------------------

@pytest.mark.parametrize("failing", ["--json", "--junit"])
def test_one_failed_output_still_writes_the_others(ws, tmp_path, failing):
    files = {"--json": tmp_path / "a.json", "--junit": tmp_path / "b.xml"}
    files[failing] = "/dev/full"
    proc = vfio_scan("scan", "--root", ws, "--device", "01:00.0", "--json", files["--json"],
                     "--junit", files["--junit"])
    one_error_line(proc, "vfio-scan scan: error: cannot write /dev/full: No space left on device")
    assert "VFIO-013" in proc.stdout  # the table on stdout too
    if failing == "--junit":
        import jsonschema

        jsonschema.validate(json.loads(files["--json"].read_text()), load_schema())
    else:
        suites = ET.parse(files["--junit"]).getroot()
        assert suites.tag == "testsuites" and suites.find("testsuite/testcase") is not None


def test_a_failed_write_wins_over_ready(tmp_path):
    """A ready host (exit 0 otherwise) whose report cannot be written is incomplete: exit 3."""
    proc = vfio_scan("scan", "--root", ready_host(tmp_path / "h").root, "--json", "/dev/full")
    one_error_line(proc, "/dev/full")


# -- devices and stdout: written in place, never replaced ------------------------------------------

def test_output_to_dev_full_is_one_line_and_dev_full_stays_a_device(ws):
    proc = fix(ws, "/dev/full")
    one_error_line(proc, "vfio-scan fix: error: cannot write /dev/full: No space left on device")
    assert stat.S_ISCHR(os.stat("/dev/full").st_mode)


@pytest.mark.parametrize("command", [["-m", "scanner", "scan", "--root"], ["-m", "scanner", "collect", "--root"],
                                     [COLLECTOR, "--root"], ["-m", "scanner", "scan", "--json", "-", "--root"]],
                         ids=["scan", "collect", "collector", "scan-twice"])
def test_stdout_on_dev_full_is_one_line(ws, command):
    """Once stdout failed, what else the run had for it goes nowhere: one line (scan-twice), not one each."""
    with open("/dev/full", "w") as full:
        proc = run([*command, ws], stdout=full)
    one_error_line(proc, "cannot write to stdout: No space left on device")
    assert stat.S_ISCHR(os.stat("/dev/full").st_mode)


@pytest.mark.parametrize("command", [["-m", "scanner", "scan", "--root"], [COLLECTOR, "--root"]],
                         ids=["scan", "collector"])
def test_stdout_closed_by_the_reader_is_one_line(ws, command):
    """EPIPE: the reader went away before anything was written."""
    read, write = os.pipe()
    os.close(read)
    try:
        proc = run([*command, ws], stdout=write)
    finally:
        os.close(write)
    one_error_line(proc, "cannot write to stdout: Broken pipe")


def test_a_fifo_is_written_in_place(tmp_path):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    got = []
    reader = threading.Thread(target=lambda: got.append(fifo.read_text()))
    reader.start()
    write_atomically(str(fifo), "through the pipe\n")
    reader.join(10)
    assert got == ["through the pipe\n"] and stat.S_ISFIFO(os.lstat(fifo).st_mode)


# -- modes, links ------------------------------------------------------------------------------------

def test_a_rewritten_script_keeps_its_mode_and_a_new_one_follows_the_umask(ws, tmp_path):
    old = tmp_path / "old.sh"
    old.write_text(OLD_SCRIPT)
    old.chmod(0o750)
    assert fix(ws, old, umask=0o022).returncode == 0
    assert stat.S_IMODE(old.stat().st_mode) == 0o750 and old.read_text().startswith("#!/usr/bin/env bash")
    assert old.read_text() != OLD_SCRIPT
    assert fix(ws, tmp_path / "new.sh", umask=0o027).returncode == 0
    assert stat.S_IMODE((tmp_path / "new.sh").stat().st_mode) == 0o640
    assert sorted(os.listdir(tmp_path)) == ["new.sh", "old.sh"]


def test_a_symlink_has_its_file_replaced_and_stays_a_link(tmp_path):
    (tmp_path / "real").mkdir()
    target = tmp_path / "real" / "report.json"
    target.write_text("old\n")
    link = tmp_path / "report.json"
    link.symlink_to(target)
    write_atomically(str(link), '{"new": true}\n')
    assert link.is_symlink() and os.readlink(link) == str(target)
    assert target.read_text() == '{"new": true}\n'
    assert os.listdir(tmp_path / "real") == ["report.json"]


# -- write_atomically itself ------------------------------------------------------------------------

def test_write_atomically_failing_midway_leaves_no_temporary_file(tmp_path):
    """A real write that stops after LIMIT bytes: the error names the file, nothing else is left."""
    code = ("import sys\nfrom scanner.output.atomicwrite import OutputError, write_atomically\n"
            "try:\n    write_atomically(sys.argv[1], 'x' * 100000)\n"
            "except OutputError as exc:\n    print(exc, exc.errno)\n")
    (tmp_path / "kept.txt").write_text("kept\n")
    proc = run(["-c", code, tmp_path / "kept.txt"], limit=LIMIT)
    assert proc.stdout == f"cannot write {tmp_path / 'kept.txt'}: File too large 27\n", proc.stderr
    proc = run(["-c", code, tmp_path / "new.txt"], limit=LIMIT)
    assert proc.stdout == f"cannot write {tmp_path / 'new.txt'}: File too large 27\n", proc.stderr
    assert os.listdir(tmp_path) == ["kept.txt"] and (tmp_path / "kept.txt").read_text() == "kept\n"


def test_write_atomically_into_a_missing_directory_is_an_output_error(tmp_path):
    with pytest.raises(OutputError) as caught:
        write_atomically(str(tmp_path / "missing" / "x.json"), b"{}")
    assert str(caught.value) == f"cannot write {tmp_path / 'missing' / 'x.json'}: No such file or directory"
    assert caught.value.reason == "No such file or directory"


# -- fleet --save-snapshots ---------------------------------------------------------------------------

def local_inventory(where, root, *names):
    """An inventory of hosts collected on this machine (no ssh), each from the tree ``root``."""
    inventory = where / "inventory.ini"
    inventory.write_text("".join(f"{name} ansible_connection=local vfio_scan_root={root} "
                                 f"ansible_python_interpreter={sys.executable}\n" for name in names))
    return inventory


def test_fleet_snapshot_that_cannot_be_saved_is_that_hosts_error(ws, tmp_path):
    """Two hosts collected locally; h2's snapshot cannot be saved: h2 is reported, h1 saved and scanned."""
    inventory = local_inventory(tmp_path, ws, "h1", "h2")
    snaps = tmp_path / "snaps"
    (snaps / "h2.json").mkdir(parents=True)  # in the way of h2's snapshot
    proc = vfio_scan("fleet", "-i", inventory, "--save-snapshots", snaps, "--format", "json")
    assert proc.returncode == 3 and "Traceback" not in proc.stderr, proc.stderr
    summary = json.loads(proc.stdout)["summary"]
    why = f"cannot save the snapshot to {snaps / 'h2.json'}: Is a directory"
    assert summary["host_errors"] == [{"host": "h2", "reason": why}]
    scanned = {h["host"]["label"]: len(h["findings"]) for h in json.loads(proc.stdout)["hosts"]}
    assert scanned["h1"] > 0 and scanned["h2"] == 0
    assert sorted(os.listdir(snaps)) == ["h1.json", "h2.json"]
    assert json.loads((snaps / "h1.json").read_text())["root"] == str(ws)


def test_fleet_snapshots_on_a_full_disk_leave_no_partial_file(ws, tmp_path):
    inventory = local_inventory(tmp_path, ws, "h1")
    snaps = tmp_path / "snaps"
    snaps.mkdir()
    proc = vfio_scan("fleet", "-i", inventory, "--save-snapshots", snaps, "--format", "json", limit=LIMIT)
    assert proc.returncode == 3 and "Traceback" not in proc.stderr, proc.stderr
    assert json.loads(proc.stdout)["summary"]["host_errors"][0]["reason"].endswith("h1.json: File too large")
    assert os.listdir(snaps) == []
