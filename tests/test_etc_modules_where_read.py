"""``/etc/modules`` loads modules at boot only where the distribution reads it.

systemd-modules-load reads only ``modules-load.d``; Debian and its family link ``/etc/modules`` in
there (and their kmod script reads it), Alpine's OpenRC reads it. On Arch or Fedora a module listed
only in ``/etc/modules`` is not loaded after a reboot; VFIO-007 took the file for a boot-time load
list everywhere and passed.
"""

import pytest

from hosttree import ready_host
from test_rules_host import scan


def listed_only_in_etc_modules(tmp_path, os_release: str):
    tree = ready_host(tmp_path / "h")  # vfio, vfio_iommu_type1 and vfio_pci loaded, listed in /etc/modules
    tree.write("/etc/os-release", os_release)
    return tree


@pytest.mark.parametrize("os_release", ['NAME="Arch Linux"\nID=arch\n', 'NAME="Fedora Linux"\nID=fedora\n'])
def test_a_distribution_that_does_not_read_it_loses_the_modules_at_boot(tmp_path, os_release):
    tree = listed_only_in_etc_modules(tmp_path, os_release)
    assert tree.path("/etc/modules").exists() and not tree.path("/etc/modules-load.d").exists()
    f = scan(tree)["VFIO-007"]
    assert f.status == "fail", f.message


@pytest.mark.parametrize("os_release", ['ID=debian\n', 'ID=ubuntu\nID_LIKE=debian\n', 'ID=pop\nID_LIKE="ubuntu debian"\n',
                                        'ID=alpine\n'])
def test_debian_its_family_and_alpine_read_it(tmp_path, os_release):
    assert scan(listed_only_in_etc_modules(tmp_path, os_release))["VFIO-007"].status == "pass"
