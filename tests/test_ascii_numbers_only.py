"""Numbers typed on the command line are ASCII, and one PF gets one VF count.

``--guest-memory '١٦G'`` (Arabic-Indic digits) was taken for 16 GiB, as Python's ``\\d`` and
``float()`` read any script's digits while QEMU's ``-m`` reads none; and ``--vfs 02:00.0=2 --vfs
0000:02:00.0=4`` named one PF twice and the last count silently won.
"""

from clihelpers import run_cli, stderr_lines
from hosttree import workstation


def test_a_size_in_other_digits_is_a_usage_error(tmp_path):
    tree = workstation(tmp_path / "ws")
    proc = run_cli("scan", "--root", tree.root, "--guest-memory", "\u0661\u0666G")
    assert proc.returncode == 2 and len(stderr_lines(proc)) == 1 and "--guest-memory" in proc.stderr
    assert run_cli("scan", "--root", tree.root, "--guest-memory", "16G").returncode in (0, 1)


def test_two_vf_counts_for_one_pf_are_a_usage_error(tmp_path):
    tree = workstation(tmp_path / "ws")
    proc = run_cli("scan", "--root", tree.root, "--vfs", "02:00.0=2", "--vfs", "0000:02:00.0=4")
    assert proc.returncode == 2 and stderr_lines(proc) == [
        "vfio-scan scan: error: --vfs '0000:02:00.0=4': 0000:02:00.0 is asked for 2 VFs already"], proc.stderr
    assert run_cli("scan", "--root", tree.root, "--vfs", "02:00.0=2", "--vfs", "0000:02:00.0=2").returncode in (0, 1)
