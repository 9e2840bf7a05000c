"""VFIO-016 compares parameters by what the kernel reads, not by their spelling.

``intel_iommu=on`` running and ``intel_iommu=on,sm_on`` configured (the form behind an SR-IOV
operator's bug report) was "works now, lost at next boot: intel_iommu=on", though the next boot
turns VT-d on all the same; the run failed.
"""

import pytest

from hosttree import ready_host
from test_rules_next_boot import BOOT, not_default_on, scan


@pytest.mark.parametrize("running, configured", [
    ("intel_iommu=on iommu=pt", "quiet intel_iommu=on,sm_on iommu=pt"),
    ("intel_iommu=on iommu=pt", "quiet intel_iommu=sm_on,on iommu=pt"),
    ("intel_iommu=on iommu=pt initcall_blacklist=sysfb_init", "quiet intel_iommu=on iommu=pt initcall-blacklist=sysfb_init"),
])
def test_the_same_meaning_in_another_spelling_is_kept(tmp_path, running, configured):
    tree = ready_host(tmp_path / "h", cmdline=f"{BOOT} {running}")
    not_default_on(tree)
    tree.grub(default=configured)
    f = scan(tree, "VFIO-016")["host"]
    assert f.status == "pass", f.message


def test_an_option_the_next_boot_drops_is_still_lost(tmp_path):
    tree = ready_host(tmp_path / "h", cmdline=f"{BOOT} intel_iommu=on,sm_on iommu=pt")
    not_default_on(tree)
    tree.grub(default="quiet intel_iommu=on iommu=pt")
    f = scan(tree, "VFIO-016")["host"]
    assert f.status == "fail" and "intel_iommu=on,sm_on" in f.message
