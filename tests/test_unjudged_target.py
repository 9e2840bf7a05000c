"""A target whose sysfs state cannot be read is no verdict on it: the scan is incomplete, never READY.

Every device rule skips such a target ("cannot read this device's state in sysfs"); with nothing
failing, the scan said READY, exit 0, about a device it could not look at -- a snapshot whose GPU's
driver link leads nowhere was certified, while ``qemu-args`` on the same file refused the device.
"""

import json

from clihelpers import run_cli
from hosttree import gpu_on_vfio, workstation

GPU = "0000:01:00.0"


def dangling_driver(tmp_path):
    tree = gpu_on_vfio(workstation(tmp_path / "h"))
    link = tree.path(tree.device_dir(GPU) + "/driver")
    link.unlink()
    link.symlink_to("../../../../bus/pci/drivers/gone")
    return tree


def test_the_scan_is_incomplete_and_says_why(tmp_path):
    tree = dangling_driver(tmp_path)
    proc = run_cli("scan", "--root", tree.root, "--device", GPU, "--format", "json")
    assert proc.returncode == 3, proc.stderr
    document = json.loads(proc.stdout)
    assert document["summary"]["readiness"] == "NOT_READY"
    (note,) = document["notes"]
    assert note.startswith(f"{GPU}: its state cannot be read in sysfs (") and note.endswith("no verdict on it")
    table = run_cli("scan", "--root", tree.root, "--device", GPU)
    assert table.returncode == 3 and "READY" in table.stdout and "Readiness: READY" not in table.stdout


def test_a_readable_target_is_judged_as_before(tmp_path):
    tree = gpu_on_vfio(workstation(tmp_path / "h"))
    proc = run_cli("scan", "--root", tree.root, "--device", GPU, "--format", "json")
    assert "notes" not in json.loads(proc.stdout) or not json.loads(proc.stdout)["notes"]
