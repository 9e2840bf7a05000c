"""VFIO-016 never puts back what the next boot may well lose: security downgrades and vfio-pci.ids.

Its fix added every running parameter the boot configuration lacked. A host booted once with
``pcie_acs_override`` or ``allow_unsafe_interrupts=1`` whose administrator then took them out of
GRUB got them written back (VFIO-004 in the same scan calls each a security downgrade); and a
``vfio-pci.ids=`` from the running line, naming a NIC the administrator had since given back to
its driver and that now carries the default route, went back into GRUB for every boot.
"""

from hosttree import ready_host
from scriptrun import Shims, run_script, script_for
from test_rules_next_boot import BOOT, scan

DOWNGRADES = "pcie_acs_override=downstream,multifunction vfio_iommu_type1.allow_unsafe_interrupts=1"


def test_downgrades_the_next_boot_drops_are_not_lost(tmp_path):
    tree = ready_host(tmp_path / "h", cmdline=f"{BOOT} intel_iommu=on iommu=pt {DOWNGRADES}")
    f = scan(tree, "VFIO-016")["host"]
    assert f.status == "pass", f.message
    assert not f.remediation


def test_the_fix_does_not_write_downgrades_back(tmp_path):
    tree = ready_host(tmp_path / "h", cmdline=f"{BOOT} intel_iommu=on iommu=pt {DOWNGRADES}")
    before = tree.path("/etc/default/grub").read_text()
    proc = run_script(script_for(tree.root), tree.root, Shims(tmp_path))
    assert proc.returncode in (0, 1), proc.stderr
    grub = tree.path("/etc/default/grub").read_text()
    assert "pcie_acs_override" not in grub and "allow_unsafe_interrupts" not in grub, (before, grub)


def test_vfio_pci_ids_on_the_running_line_only_are_not_put_back(tmp_path):
    tree = ready_host(tmp_path / "h", cmdline=f"{BOOT} intel_iommu=on iommu=pt vfio-pci.ids=8086:1521")
    f = scan(tree, "VFIO-016")["host"]
    assert f.status == "pass", f.message
    assert "vfio-pci.ids" not in " ".join(c for s in f.remediation for c in s.commands)


def test_what_passthrough_needs_is_still_put_back(tmp_path):
    tree = ready_host(tmp_path / "h", cmdline=f"{BOOT} intel_iommu=on iommu=pt {DOWNGRADES}")
    tree.grub(default="quiet")
    f = scan(tree, "VFIO-016")["host"]
    assert f.status == "fail"
    (step,) = f.remediation
    assert "iommu=pt" in step.action["add"]
    assert not any("acs_override" in p or "unsafe" in p for p in step.action["add"])
