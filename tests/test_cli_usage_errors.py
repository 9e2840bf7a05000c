"""Options that cannot work together are usage errors before anything is scanned: one line naming the
option, exit 2, no output file written; a scan of many hosts is never run only to fail at the end."""

from __future__ import annotations

import pytest
from clihelpers import make_plugin, plugin_with_rule, run_cli, stderr_lines
from hosttree import gpu_on_vfio, workstation

#: A host rule that leaves a mark: a scan that should not have started did, when the file exists.
MARKER_PLUGIN = plugin_with_rule(
    'id="ACME-100", name="acme-marker", scope="host", severity="low", title="ACME marker", docs=__doc__',
    'open(__import__("os").environ["ACME_MARKER"], "w").close()\n        yield Finding.passed("scanned")')


@pytest.fixture
def marked(tmp_path):
    """(run the CLI with the marker plugin, the marker file, a GPU workstation's tree)."""
    plugins = make_plugin(tmp_path / "plugins", MARKER_PLUGIN)
    marker = tmp_path / "scanned"
    tree = gpu_on_vfio(workstation(tmp_path / "ws"))

    def run(*args):
        return run_cli(*args, pythonpath=plugins, ACME_MARKER=str(marker))
    return run, marker, tree


@pytest.fixture
def two_snapshots(tmp_path, marked):
    run, marker, tree = marked
    snaps = tmp_path / "snaps"
    snaps.mkdir()
    for name in ("gpu01", "gpu02"):
        assert run_cli("collect", "--root", tree.root, "-o", snaps / f"{name}.json").returncode == 0
    return snaps


@pytest.mark.parametrize("args, asked", [
    (["fix", "--snapshot", "{a}", "{b}", "--device", "01:00.0", "-o", "{out}"], "-o {out}"),
    (["fix", "--snapshot", "{dir}"], "--format script"),
    (["scan", "--snapshot", "{dir}", "--script", "{out}"], "--script {out}"),
    (["scan", "--snapshot", "{a}", "{b}", "--format", "script", "-o", "{out}"], "-o {out}"),
])
def test_a_script_for_several_hosts_is_refused_before_scanning(tmp_path, marked, two_snapshots, args, asked):
    run, marker, _ = marked
    names = {"a": two_snapshots / "gpu01.json", "b": two_snapshots / "gpu02.json", "dir": two_snapshots,
             "out": tmp_path / "fix.sh"}
    proc = run(*[arg.format(**names) for arg in args])
    assert stderr_lines(proc) == [f"vfio-scan {args[0]}: error: {asked.format(**names)}: a remediation script is "
                                  "written for one host at a time, and --snapshot gives 2 hosts; write one script "
                                  "per host"]
    assert proc.returncode == 2 and proc.stdout == ""
    assert not marker.exists(), "the hosts were scanned before the script was refused"
    assert not (tmp_path / "fix.sh").exists()


def test_a_script_for_one_snapshot_is_still_written(tmp_path, marked, two_snapshots):
    run, marker, _ = marked
    proc = run("fix", "--snapshot", two_snapshots / "gpu01.json", "-o", tmp_path / "fix.sh")
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "fix.sh").read_text().startswith("#!/usr/bin/env bash") and marker.exists()


@pytest.mark.parametrize("args, refused", [
    (["-o", "{same}", "--json", "{same}", "--junit", "{same}"], "--json {same}: the same file as -o {same}"),
    (["--json", "{same}", "--junit", "{link}"], "--junit {link}: the same file as --json {same}"),
    (["--junit", "{same}", "--script", "{dotted}"], "--script {dotted}: the same file as --junit {same}"),
    (["-o", "{hardlink}", "--json", "{existing}"], "--json {existing}: the same file as -o {hardlink}"),
])
def test_two_outputs_to_one_file_are_refused_before_scanning(tmp_path, marked, args, refused):
    """Each output was written in turn over the one before: exit 0 and only the last left."""
    run, marker, tree = marked
    (tmp_path / "sub").mkdir()
    (tmp_path / "existing.txt").write_text("kept\n")
    (tmp_path / "hardlink.txt").hardlink_to(tmp_path / "existing.txt")
    (tmp_path / "link.out").symlink_to("same.out")
    names = {"same": tmp_path / "same.out", "link": tmp_path / "link.out", "dotted": tmp_path / "sub" / ".." / "same.out",
             "existing": tmp_path / "existing.txt", "hardlink": tmp_path / "hardlink.txt"}
    proc = run("scan", "--root", tree.root, *[arg.format(**names) for arg in args])
    assert stderr_lines(proc) == [f"vfio-scan scan: error: {refused.format(**names)}; give each output a file of "
                                  "its own"]
    assert proc.returncode == 2 and proc.stdout == ""
    assert not marker.exists() and not (tmp_path / "same.out").exists()
    assert (tmp_path / "existing.txt").read_text() == "kept\n"


def test_outputs_to_stdout_and_to_distinct_files_are_all_written(tmp_path, marked):
    run, marker, tree = marked
    report, junit = tmp_path / "r.json", tmp_path / "r.xml"
    proc = run("fix", "--root", tree.root, "--json", report, "--junit", junit, "--script", "-")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("#!/usr/bin/env bash") and report.read_text().startswith("{")
    assert junit.read_text().startswith("<?xml") and marker.exists()


EMPTY = [("-o", "a file name (or - for stdout)"), ("--json", "a file name (or - for stdout)"),
         ("--junit", "a file name (or - for stdout)"), ("--script", "a file name (or - for stdout)"),
         ("--policy", "a policy file (TOML or JSON), or leave --policy out"),
         ("--as-of", "a date YYYY-MM-DD, or leave --as-of out to judge as of today")]


@pytest.mark.parametrize("command", ["scan", "fix"])
@pytest.mark.parametrize("option, wanted", EMPTY, ids=[e[0] for e in EMPTY])
def test_an_empty_option_value_is_a_usage_error_naming_the_option(marked, command, option, wanted):
    """'--json ""' (a variable that was not set) silently wrote no JSON, '--policy ""' judged without the policy."""
    run, marker, tree = marked
    proc = run(command, "--root", tree.root, option, "")
    assert stderr_lines(proc) == [f"vfio-scan {command}: error: {option}: empty; give {wanted}"]
    assert proc.returncode == 2 and proc.stdout == "" and not marker.exists()


@pytest.mark.parametrize("args, option", [
    (["qemu-args", "--root", "{root}", "--device", "01:00.0", "--policy", ""], "--policy"),
    (["vm-config", "--for", "libvirt", "--root", "{root}", "--device", "01:00.0", "--as-of", ""], "--as-of"),
    (["collect", "--root", "{root}", "-o", ""], "-o"),
    (["collect", "--print-script", "-o", ""], "-o"),
    (["diff", "{snap}", "{snap}", "-o", ""], "-o"),
    (["fleet", "gpu01", "--save-snapshots", ""], "--save-snapshots"),
    (["fleet", "gpu01", "--ssh-config", ""], "--ssh-config"),
])
def test_other_commands_refuse_an_empty_value_too(marked, two_snapshots, args, option):
    run, marker, tree = marked
    proc = run(*[arg.format(root=tree.root, snap=two_snapshots / "gpu01.json") for arg in args])
    (line,) = stderr_lines(proc)
    assert line.startswith(f"vfio-scan {args[0]}: error: {option}: empty; give ")
    assert proc.returncode == 2 and proc.stdout == "" and not marker.exists()
