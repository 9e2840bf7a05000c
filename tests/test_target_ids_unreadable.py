"""A device whose ids or class cannot be read is no device any rule can judge, and may be the one asked for.

A garbled ``vendor`` file (or one an unprivileged scan may not read) made ``--device 10de:2204`` a
false fail of VFIO-010, "no PCI device with these vendor:device ids", though the GPU was there; chosen
by its address, the GPU showed as ``????:2204`` and VFIO-017 failed it as "lost at next boot", its fix
writing a udev rule "because its ids (????:2204) cannot be used". Now the first is a skip saying why,
and the second a target no rule could judge: no verdict on it (exit 3), never a fail.
"""

import json

import pytest

from clihelpers import run_cli
from hosttree import gpu_on_vfio, workstation

GPU = "0000:01:00.0"


@pytest.fixture
def garbled(tmp_path):
    tree = gpu_on_vfio(workstation(tmp_path / "ws"))
    tree.write(tree.device_dir(GPU) + "/vendor", b"0x10de\xff\n")
    return tree


def scan(tree, *selectors):
    proc = run_cli("scan", "--root", tree.root, *selectors, "--format", "json")
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc.returncode, json.loads(proc.stdout)


def test_chosen_by_ids_it_may_be_the_one_so_no_fail(garbled):
    code, report = scan(garbled, "--device", "10de:2204")
    (present,) = [f for f in report["findings"] if f["rule_id"] == "VFIO-010"]
    assert present["status"] == "skip", present
    assert present["message"] == f"no device matches 10de:2204, but the ids or class of {GPU} cannot be read: it may be the one"
    assert code == 3 and not [f for f in report["findings"] if f["status"] == "fail"]
    assert report["notes"] == [f"10de:2204: matched no device, but the ids or class of {GPU} cannot be read: no verdict on it"]


def test_chosen_by_address_no_rule_judges_it(garbled):
    code, report = scan(garbled, "--device", "01:00.0")
    assert code == 3 and report["summary"]["readiness"] == "NOT_READY"
    assert not [f for f in report["findings"] if f["status"] == "fail"], report["findings"]
    assert any(note.startswith(f"{GPU}: its state cannot be read in sysfs (/sys/bus/pci/devices/{GPU}/vendor: garbled")
               for note in report["notes"]), report.get("notes")


def test_a_selector_that_matches_nothing_readable_still_fails(tmp_path):
    tree = gpu_on_vfio(workstation(tmp_path / "ws"))
    code, report = scan(tree, "--device", "abcd:1234")
    (present,) = [f for f in report["findings"] if f["rule_id"] == "VFIO-010"]
    assert present["status"] == "fail" and code == 1


@pytest.mark.parametrize("link, leads", [("driver", "/etc/passwd"), ("iommu_group", "/etc")])
def test_a_device_link_that_leads_nowhere_the_kernel_puts_it_is_no_driver_nor_group(tmp_path, link, leads):
    """A rewritten ``driver`` link (a crafted snapshot, a tampered tree) was believed: "bound to passwd"."""
    tree = gpu_on_vfio(workstation(tmp_path / "ws"))
    tree.write("/etc/passwd", "root:x:0:0:root:/root:/bin/bash\n")
    tree.symlink(tree.device_dir(GPU) + f"/{link}", leads)
    code, report = scan(tree, "--device", "01:00.0")
    assert code == 3 and not [f for f in report["findings"] if f["status"] == "fail"], report["findings"]
    assert any(f"/{link}: garbled: leads to {leads}, not " in note for note in report["notes"]), report["notes"]
    said = json.dumps([f["message"] for f in report["findings"]])
    assert "to passwd" not in said and "on passwd" not in said and "group etc" not in said
