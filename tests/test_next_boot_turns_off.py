"""VFIO-016: a next boot whose command line turns the IOMMU or interrupt remapping off fails.

The rule compared the running command line's parameters with the configured ones one by one:
``intel_iommu=on`` was still configured, so a grub.d drop-in adding ``intel_iommu=off`` after it
(the kernel keeps the last), an ``iommu=off`` beside it, or an ``intremap=off`` passed -- READY,
and after the reboot there were no IOMMU groups (checked on Debian's 6.1 kernel under QEMU: no
dmar0, no groups; with intremap=off vfio_iommu_type1 refuses the group: "No interrupt remapping
support").
"""

import pytest

from hosttree import ready_host
from test_rules_next_boot import BOOT, scan

DROP_IN = 'GRUB_CMDLINE_LINUX_DEFAULT="$GRUB_CMDLINE_LINUX_DEFAULT intel_iommu=off"\n'


def test_a_drop_in_that_appends_intel_iommu_off_fails(tmp_path):
    tree = ready_host(tmp_path / "h")
    tree.write("/etc/default/grub.d/99-local.cfg", DROP_IN)
    f = scan(tree, "VFIO-016")["host"]
    assert f.status == "fail"
    assert f.message.startswith("the next boot turns off what passthrough needs: intel_iommu=off in ")
    assert "with no IOMMU groups and the VM does not start" in f.message
    (step,) = f.remediation
    assert step.action["kind"] == "kernel-cmdline"
    assert step.action["remove"] == ["intel_iommu=off"]


def test_iommu_off_beside_intel_iommu_on_fails(tmp_path):
    tree = ready_host(tmp_path / "h", cmdline=f"{BOOT} intel_iommu=on iommu=pt")
    tree.grub(default="quiet intel_iommu=on iommu=off")
    f = scan(tree, "VFIO-016")["host"]
    assert f.status == "fail" and "iommu=off" in f.message
    (step,) = f.remediation
    assert step.action["remove"] == ["iommu=off"] and step.action["add"] == ["iommu=pt"]


def test_intremap_off_at_the_next_boot_fails(tmp_path):
    tree = ready_host(tmp_path / "h")
    tree.grub(default="quiet intel_iommu=on iommu=pt intremap=off")
    f = scan(tree, "VFIO-016")["host"]
    assert f.status == "fail"
    assert "intremap=off" in f.message and "without interrupt remapping" in f.message


@pytest.mark.parametrize("configured", ["quiet intel_iommu=off intel_iommu=on iommu=pt",
                                        "quiet intel_iommu=on iommu=pt intremap=on"])
def test_a_switch_the_last_word_overrides_or_that_turns_nothing_off_passes(tmp_path, configured):
    tree = ready_host(tmp_path / "h")
    tree.grub(default=configured)
    assert scan(tree, "VFIO-016")["host"].status == "pass"


def test_what_the_running_boot_already_turns_off_is_vfio_004_s_not_a_next_boot_change(tmp_path):
    tree = ready_host(tmp_path / "h", cmdline=f"{BOOT} intel_iommu=off")
    tree.grub(default="quiet intel_iommu=off")
    assert scan(tree, "VFIO-016")["host"].status == "pass"
    assert scan(tree, "VFIO-004")["host"].status == "fail"


def test_the_fix_takes_the_switch_out_of_the_drop_in_and_the_rescan_passes(tmp_path):
    from scriptrun import Shims, run_script, script_for

    tree = ready_host(tmp_path / "h")
    tree.write("/etc/default/grub.d/99-local.cfg", DROP_IN)
    proc = run_script(script_for(tree.root), tree.root, Shims(tmp_path))
    assert proc.returncode == 0, proc.stderr
    assert tree.path("/etc/default/grub.d/99-local.cfg").read_text() == \
        'GRUB_CMDLINE_LINUX_DEFAULT="$GRUB_CMDLINE_LINUX_DEFAULT"\n'
    assert scan(tree, "VFIO-016")["host"].status == "pass"
