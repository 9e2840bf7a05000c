"""VFIO-017 with vfio-pci built into the kernel: an ``options vfio-pci ids=`` line keeps nothing.

modprobe never runs for a built-in module, so its modprobe.d options are never read; a built-in
module's parameters come from the kernel command line (``vfio-pci.ids=``). The rule took the line
for a binding at boot: READY, and after the reboot the GPU was back on its host driver.
"""

from hosttree import RELEASE, workstation
from test_rules_next_boot import BOOT, GPU, scan


def builtin_host(tmp_path, cmdline_ids: bool = False):
    tree = workstation(tmp_path / "h")
    tree.modules(loaded=["kvm_intel", "kvm", "nvidia", "snd_hda_intel"],
                 builtin=["vfio", "vfio_pci", "vfio_iommu_type1"])
    tree.bind("0000:01:00.0", "vfio-pci")
    tree.bind("0000:01:00.1", "vfio-pci")
    tree.write("/etc/modprobe.d/vfio.conf", "options vfio-pci ids=10de:2204,10de:1aef\n")
    if cmdline_ids:
        line = "quiet intel_iommu=on iommu=pt vfio-pci.ids=10de:2204,10de:1aef"
        tree.cmdline(f"BOOT_IMAGE=/boot/vmlinuz-{RELEASE} root=/dev/sda1 ro {line}")
        tree.grub(default=line)
    return tree


def test_a_modprobe_ids_line_keeps_nothing_when_vfio_pci_is_built_in(tmp_path):
    f = scan(builtin_host(tmp_path), "VFIO-017", devices=[GPU])[GPU]
    assert f.status == "fail"
    assert f.message.startswith("works now, lost at next boot: ")
    assert ("(ids=10de:2204 in /etc/modprobe.d/vfio.conf is never read: vfio-pci is built into this kernel, and a "
            "built-in module takes its options only from the kernel command line, as vfio-pci.ids=)") in f.message
    assert f.remediation


def test_the_ids_on_the_next_boots_command_line_keep_it(tmp_path):
    f = scan(builtin_host(tmp_path, cmdline_ids=True), "VFIO-017", devices=[GPU])[GPU]
    assert f.status == "pass"
    assert "on the next boot's command line" in f.message and "vfio-pci is built in" in f.message


def test_a_modular_vfio_pci_still_takes_the_line(tmp_path):
    tree = builtin_host(tmp_path)
    tree.modules(loaded=["vfio", "vfio_pci", "vfio_iommu_type1", "kvm_intel", "kvm"], installed=["vfio_pci"])
    tree.write("/etc/modprobe.d/vfio.conf", "options vfio-pci ids=10de:2204,10de:1aef\n"
                                            "softdep nvidia pre: vfio-pci\nsoftdep snd_hda_intel pre: vfio-pci\n")
    f = scan(tree, "VFIO-017", devices=[GPU])[GPU]
    assert f.status == "pass" and "ids=10de:2204 in /etc/modprobe.d/vfio.conf" in f.message
