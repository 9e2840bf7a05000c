"""The remediation script when one of its fixes fails: that fix stops, the others still run, and the end says so.

Found on a real kernel (tests/e2e): ``udevadm control --reload`` failing where udevd does not run
stopped a script under ``set -e`` before it bound anything, half-done. Each block now runs in a
subshell of its own: a failing command ends that block (``FAILED``), every later block still
runs, the summary names what did not complete, and the exit status is 1.
"""

import os
import subprocess

from hosttree import workstation
from scriptrun import Shims, run_script, script_for, tree_commands

TARGETS = dict(devices=["01:00.0", "01:00.1", "06:01.0"], vfs=["0000:02:00.0=4"])


def test_a_failing_fix_stops_only_itself(tmp_path):
    tree = workstation(tmp_path / "ws")
    script = script_for(tree.root, **TARGETS)
    # the PF's sriov_numvfs cannot be written (a directory where the file should be)
    numvfs = tree.path(tree.device_dir("0000:02:00.0") + "/sriov_numvfs")
    numvfs.unlink()
    numvfs.mkdir()
    proc = run_script(script, tree.root, Shims(tmp_path))
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "Did not complete: VFIO-011 0000:02:00.0" in proc.stderr
    # the VF count's own next step (its udev rule) did not run; every later block did
    assert not tree.path("/etc/udev/rules.d/70-vfio-scan-sriov-0000-02-00.0.rules").exists()
    assert tree.path("/etc/udev/rules.d/70-vfio-pci-0000-06-01.0.rules").exists()
    for addr in ("0000:01:00.0", "0000:01:00.1", "0000:06:01.0"):
        assert tree.path(tree.device_dir(addr) + "/driver_override").read_text() == "vfio-pci\n", addr
    assert "update-initramfs -u -k all" in tree_commands(proc)
    assert proc.stdout.rstrip().endswith("Run 'vfio-scan scan' again to check the result.")


def test_a_file_changed_since_the_scan_is_not_touched(tmp_path):
    tree = workstation(tmp_path / "ws")
    script = script_for(tree.root, **TARGETS)
    conf = tree.path("/etc/modprobe.d/vfio.conf")
    conf.parent.mkdir(parents=True, exist_ok=True)
    conf.write_text("# written by someone after the scan\noptions vfio-pci ids=1234:5678\n")
    before = conf.read_bytes()
    proc = run_script(script, tree.root, Shims(tmp_path))
    assert proc.returncode == 1
    assert "FAILED: /etc/modprobe.d/vfio.conf changed since the scan" in proc.stderr
    assert conf.read_bytes() == before
    assert "Did not complete: VFIO-013 0000:01:00.0" in proc.stderr
    # a new scan sees the file and merges into it
    proc = run_script(script_for(tree.root, **TARGETS), tree.root, Shims(tmp_path))
    assert proc.returncode == 0, proc.stderr
    assert conf.read_text() == ("# written by someone after the scan\n"
                                "options vfio-pci ids=1234:5678,10de:2204,10de:1aef\n"
                                "softdep nvidia pre: vfio-pci\nsoftdep snd_hda_intel pre: vfio-pci\n")


def test_live_mode_needs_root(tmp_path):
    tree = workstation(tmp_path / "ws")
    path = tmp_path / "fix.sh"
    path.write_text(script_for(tree.root, **TARGETS))
    if os.geteuid() == 0:
        env = dict(os.environ, DRY_RUN="0", PATH=f"{tmp_path}/bin:{os.environ['PATH']}")
        (tmp_path / "bin").mkdir()
        (tmp_path / "bin/id").write_text("#!/bin/sh\necho 1000\n")  # as if it were not root
        (tmp_path / "bin/id").chmod(0o755)
    else:
        env = dict(os.environ, DRY_RUN="0")
    env.pop("ROOT", None)
    proc = subprocess.run(["bash", str(path)], env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert proc.stderr.strip() == f"run it as root to apply it on this host: sudo DRY_RUN=0 bash {path}"
    assert proc.stdout == ""
