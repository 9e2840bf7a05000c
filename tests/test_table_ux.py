"""The table as an operator reads it: the verdict first, fitted to the terminal, colour only on a
terminal, each problem said once, devices named, one line instead of a row of SKIPs without targets."""

from __future__ import annotations

import re

from clihelpers import run_cli, run_under_tty
from hosttree import gpu_on_vfio, workstation

ANSI = re.compile(r"\x1b\[[0-9;]*m")


def scan_under_tty(*args, **env) -> str:
    """What a person sees: the scan's stdout on a pseudo-terminal."""
    code, text = run_under_tty("scan", *args, **env)
    assert code in (0, 1)
    return text


def test_verdict_first_and_the_table_fits_80_columns(tmp_path):
    tree = workstation(tmp_path / "ws")
    proc = run_cli("scan", "--root", tree.root, "--device", "01:00.0", COLUMNS="80")
    lines = proc.stdout.splitlines()
    assert lines[0].startswith("Readiness: NOT_READY (")
    assert lines[1].startswith("Host testhost")  # no next-boot line on this host
    too_long = [line for line in lines if len(line) > 80 and " " in line.strip()]
    assert too_long == []
    wide = run_cli("scan", "--root", tree.root, "--device", "01:00.0", COLUMNS="100").stdout
    assert max(map(len, wide.splitlines())) > 80  # the width follows the terminal


def test_colour_on_a_terminal_only_and_never_with_no_color(tmp_path):
    tree = workstation(tmp_path / "ws")
    coloured = scan_under_tty("--root", tree.root, "--device", "01:00.0")
    assert "\x1b[1;31mNOT_READY\x1b[0m" in coloured and "\x1b[1;31mFAIL\x1b[0m" in coloured
    assert "\x1b[32mPASS\x1b[0m" in coloured
    plain = scan_under_tty("--root", tree.root, "--device", "01:00.0", NO_COLOR="1")
    assert "\x1b[" not in plain
    assert ANSI.sub("", coloured) == plain  # colour changes no column
    piped = run_cli("scan", "--root", tree.root, "--device", "01:00.0").stdout
    assert "\x1b[" not in piped


def test_without_targets_one_line_replaces_the_device_rules_skips(tmp_path):
    tree = workstation(tmp_path / "ws")
    out = run_cli("scan", "--root", tree.root).stdout
    assert "no device targets given" not in out
    line = " ".join(out.split("Device rules not run (", 1)[1].split("\n\n", 1)[0].split())
    assert line.startswith("VFIO-010, VFIO-011, VFIO-012, VFIO-013")
    assert "--device or --class" in line and "'vfio-scan groups'" in line
    json_findings = run_cli("scan", "--root", tree.root, "--format", "json").stdout
    assert json_findings.count("no device targets given") >= 6  # the report itself keeps every finding


def test_each_problem_is_said_once(tmp_path):
    tree = workstation(tmp_path / "ws")
    out = run_cli("scan", "--root", tree.root, "--device", "01:00.0").stdout
    table, fixes = out.split("What to do", 1)
    assert "not on vfio-pci: bound to" in " ".join(table.split())
    assert "not on vfio-pci" not in fixes  # the fix steps only, under the problem's name
    assert "FAIL VFIO-013 driver-binding 0000:01:00.0" in fixes and "fix [binding]" in fixes
    verbose = run_cli("scan", "--root", tree.root, "--device", "01:00.0", "-v").stdout
    assert "not on vfio-pci" in verbose.split("Details and fixes", 1)[1]  # -v: everything, evidence too


def test_device_tables_are_headed_with_what_the_device_is(tmp_path):
    tree = gpu_on_vfio(workstation(tmp_path / "ws"))
    tree.write("/usr/share/misc/pci.ids", "10de  NVIDIA Corporation\n\t2204  GA102 [GeForce RTX 3090]\n")
    out = run_cli("scan", "--root", tree.root, "--device", "01:00.0").stdout
    assert "\n0000:01:00.0 · 10de:2204 NVIDIA Corporation GA102 [GeForce RTX 3090] · driver vfio-pci\n" in out


def test_a_snapshot_scan_says_when_it_was_collected(tmp_path):
    tree = workstation(tmp_path / "ws")
    snapshot = tmp_path / "ws.json"
    assert run_cli("collect", "--root", tree.root, "-o", snapshot).returncode == 0
    host_line = run_cli("scan", "--snapshot", snapshot).stdout.splitlines()[1]
    assert re.search(r"· snapshot collected \d{4}-\d\d-\d\dT\d\d:\d\d:\d\d", host_line), host_line


def test_the_fleet_matrix_fits_the_terminal_too(tmp_path):
    fleet = tmp_path / "fleet"
    fleet.mkdir()
    tree = workstation(tmp_path / "ws")
    for n in range(3):
        assert run_cli("collect", "--root", tree.root, "-o", fleet / f"gpu-node-{n:02d}.rack7.example.com.json").returncode == 0
    (fleet / "broken.json").write_text("{", "utf-8")
    for columns in (80, 100):
        out = run_cli("scan", "--snapshot", fleet, "--device", "01:00.0", COLUMNS=str(columns)).stdout
        assert out.startswith("Fleet: 4 hosts")
        assert [line for line in out.splitlines() if len(line) > columns] == []
