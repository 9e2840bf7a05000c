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


def test_a_command_line_of_thousands_of_repeats_is_compared_once_per_parameter_name(tmp_path, monkeypatch):
    """A hostile /proc/cmdline repeating vfio-pci.ids= 20,000 times (and the configuration the same) took
    30 s: each configured parameter looked through every running one. Each name's list is read once now."""
    from scanner.facts.cmdline import Cmdline
    from rules.next_boot import RELEVANT

    ids = " ".join(f"vfio-pci.ids=10de:{i:04x}" for i in range(2000))
    tree = ready_host(tmp_path / "h", cmdline=f"{BOOT} intel_iommu=on iommu=pt {ids}")
    tree.grub(default=f"quiet intel_iommu=on iommu=pt {ids}")
    calls = []
    texts = Cmdline.texts
    monkeypatch.setattr(Cmdline, "texts", lambda self, key: calls.append(key) or texts(self, key))
    assert scan(tree, "VFIO-016")["host"].status == "pass"
    assert len(calls) <= 10 * len(RELEVANT)  # a few per name, whatever the repeats
