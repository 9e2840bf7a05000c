"""amd_iommu options are flags: an ``off`` anywhere turns AMD-Vi off, whatever follows it.

The kernel sets amd_iommu_disabled for ``off`` and amd_iommu_force_enable for ``force_enable``;
the second does not clear the first (Debian's 6.1 under QEMU with ``amd_iommu=off
amd_iommu=force_enable``: AMD-Vi off, no IOMMU groups). VFIO-004 took the last of the two for
the one that counts, and passed.
"""

import pytest

from hosttree import ready_host
from test_rules_host import BOOT, scan


@pytest.mark.parametrize("line", ["amd_iommu=off amd_iommu=force_enable", "amd_iommu=force_enable,off",
                                  "amd_iommu=off,force_enable"])
def test_an_off_anywhere_in_amd_iommu_fails(tmp_path, line):
    amd = ready_host(tmp_path / "amd", vendor="amd")
    amd.cmdline(f"{BOOT} {line}")
    f = scan(amd)["VFIO-004"]
    assert f.status == "fail" and "amd_iommu=off on the kernel command line disables the IOMMU" in f.message


def test_force_enable_alone_passes(tmp_path):
    amd = ready_host(tmp_path / "amd", vendor="amd")
    amd.cmdline(f"{BOOT} amd_iommu=force_enable")
    assert scan(amd)["VFIO-004"].status == "pass"
