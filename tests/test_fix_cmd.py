"""``vfio-scan fix`` and ``scan --script``: the script from the real CLI, and the exit codes."""

from clihelpers import run_cli
from hosttree import ready_host, workstation


def test_fix_writes_the_script_says_where_and_exits_0(tmp_path):
    """'fix' answers "was a script written?": 0 and one line naming the file, though the host is not ready."""
    tree = workstation(tmp_path / "ws")
    out = tmp_path / "fix.sh"
    proc = run_cli("fix", "--root", tree.root, "--device", "01:00.0", "-o", out)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.splitlines() == [f"vfio-scan fix: wrote {out}: fixes for 2 finding(s); a dry run until "
                                        "DRY_RUN=0: review it, then run it as root"]
    text = out.read_text()
    assert text.startswith("#!/usr/bin/env bash")
    assert "# BEGIN VFIO-013 0000:01:00.0" in text
    assert "Traceback" not in proc.stderr


def test_fix_with_json_and_junit_beside_the_script(tmp_path):
    """The JSON and JUnit outputs are streamed beside the script: fix still says what it wrote."""
    tree = workstation(tmp_path / "ws")
    out, report, junit = tmp_path / "fix.sh", tmp_path / "before.json", tmp_path / "junit.xml"
    proc = run_cli("fix", "--root", tree.root, "--device", "01:00.0", "-o", out, "--json", report, "--junit", junit)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.startswith(f"vfio-scan fix: wrote {out}: fixes for ")
    assert out.read_text().startswith("#!/usr/bin/env bash") and report.read_text().startswith("{")
    assert junit.read_text().startswith("<?xml")


def test_scan_script_option_equals_fix(tmp_path):
    tree = workstation(tmp_path / "ws")
    a, b = tmp_path / "a.sh", tmp_path / "b.sh"
    assert run_cli("fix", "--root", tree.root, "--device", "01:00.0", "-o", a).returncode == 0
    proc = run_cli("scan", "--root", tree.root, "--device", "01:00.0", "--script", b)
    assert proc.returncode == 1 and "VFIO-013" in proc.stdout  # the table still goes to the screen

    def body(path):
        return [line for line in path.read_text().splitlines() if not line.startswith("# scanned:")]
    assert body(a) == body(b)


def test_fix_on_a_ready_host_has_nothing_to_do(tmp_path):
    proc = run_cli("fix", "--root", ready_host(tmp_path / "h").root)
    assert proc.returncode == 0
    assert "Nothing to fix" in proc.stdout and "# BEGIN" not in proc.stdout
    assert proc.stderr == "vfio-scan fix: wrote stdout: nothing to fix: the script only checks the host and changes nothing\n"


def test_fix_refuses_an_unwritable_output_before_scanning(tmp_path):
    proc = run_cli("fix", "--root", ready_host(tmp_path / "h").root, "-o", tmp_path / "missing" / "fix.sh")
    assert proc.returncode == 2
    assert len(proc.stderr.strip().splitlines()) == 1
