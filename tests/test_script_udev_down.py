"""The remediation script where udev does not run (a container, a minimal system, the e2e guest).

Found on the real kernel (tests/e2e): ``udevadm control --reload`` after writing a udev rule
failed there ("command not found"; "Failed to send reload request" where udevd is down) and,
under ``set -e``, stopped the script before it bound anything. The reload is a convenience only.
"""

from hosttree import workstation
from scriptrun import Shims, run_script, script_for

TARGETS = dict(devices=["01:00.0", "01:00.1", "06:01.0"], vfs=["0000:02:00.0=4"])


def test_a_failing_udev_reload_does_not_stop_the_script(tmp_path):
    tree = workstation(tmp_path / "ws")
    shims = Shims(tmp_path)
    udevadm = shims.dir / "udevadm"
    udevadm.write_text('#!/bin/sh\necho "Failed to send reload request: No such file or directory" >&2\nexit 1\n')
    script = script_for(tree.root, **TARGETS)
    assert "udevadm control --reload" in script
    proc = run_script(script, tree.root, shims)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "udev did not reload its rules" in proc.stdout
    # every later block still ran: the VF count, the udev rules, the bindings
    assert (tree.path(tree.device_dir("0000:02:00.0")) / "sriov_numvfs").read_text() == "4\n"
    assert tree.path("/etc/udev/rules.d/70-vfio-pci-0000-06-01.0.rules").exists()
    for addr in ("0000:01:00.0", "0000:01:00.1", "0000:06:01.0"):
        assert tree.path(tree.device_dir(addr) + "/driver_override").read_text() == "vfio-pci\n", addr
    assert proc.stdout.rstrip().endswith("Run 'vfio-scan scan' again to check the result.")
