"""A partial capture's absences are no evidence: what it did not record is a skip, not a fail.

hwloc's topology captures (real machines' sysfs in ../shared/data) keep /sys/bus and /sys/devices
but no /sys/kernel: VFIO-005 said "the IOMMU is not active" of them. And a POWER9 capture without
/dev was said to have a CPU that "advertises vmx or svm".
"""

import shutil

from hosttree import ready_host
from test_rules_host import scan

POWER9 = "processor\t: 0\ncpu\t\t: POWER9, altivec supported\nclock\t\t: 3450.000000MHz\n"


def test_no_sys_kernel_at_all_is_a_skip_not_inactive(tmp_path):
    tree = ready_host(tmp_path / "h")
    shutil.rmtree(tree.path("/sys/kernel"))
    shutil.rmtree(tree.path("/sys/class/iommu"), ignore_errors=True)
    f = scan(tree)["VFIO-005"]
    assert f.status == "skip"
    assert f.message == "cannot tell whether the IOMMU is active: this capture has no /sys/kernel at all"


def test_an_empty_iommu_groups_directory_is_still_inactive(tmp_path):
    tree = ready_host(tmp_path / "h")
    shutil.rmtree(tree.path("/sys/kernel/iommu_groups"))
    tree.mkdir("/sys/kernel/iommu_groups")
    shutil.rmtree(tree.path("/sys/class/iommu"), ignore_errors=True)
    tree.mkdir("/sys/class/iommu")
    assert scan(tree)["VFIO-005"].status == "fail"


def test_a_cpu_without_such_flags_is_not_said_to_advertise_them(tmp_path):
    tree = ready_host(tmp_path / "h")
    tree.write("/proc/cpuinfo", POWER9)
    tree.write("/proc/sys/kernel/arch", "ppc64le\n")
    shutil.rmtree(tree.path("/dev"))
    f = scan(tree)["VFIO-001"]
    assert f.status == "skip"
    assert f.message.endswith("(ppc64le has no CPU flag for it: /dev/kvm decides)") and "vmx" not in f.message
