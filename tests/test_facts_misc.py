"""CPU, interrupts, modules and GRUB parsers (real /proc/cpuinfo files from hwloc's captured trees)."""

import pytest

from hosttree import INTERRUPTS_IR, INTERRUPTS_NO_IR, SHARED_DATA
from scanner.facts.boot import parse_default_grub
from scanner.facts.cpu import parse_cpuinfo
from scanner.facts.interrupts import parse_interrupts
from scanner.facts.modules import (Modules, module_name, parse_modules_builtin, parse_modules_dep,
                                   parse_proc_modules)

HWLOC = sorted(SHARED_DATA.glob("sysfs/hwloc-*/proc/cpuinfo")) if SHARED_DATA.is_dir() else []


@pytest.mark.parametrize("path", HWLOC, ids=lambda p: p.parts[-3])
def test_cpuinfo_of_real_trees(path):
    cpu = parse_cpuinfo(path.read_text())
    if "nvidiagpunumanodes" in str(path):  # POWER9: no vendor_id, no flags
        assert cpu.vendor is None and not cpu.flags and cpu.virtualization_flag is None
        return
    assert cpu.vendor == "intel" and cpu.vendor_id == "GenuineIntel"
    assert {"fpu", "sse2", "lm"} <= cpu.flags
    assert cpu.model_name.startswith("Intel")


def test_bare_metal_xeon_has_vmx(shared_data):
    cpu = parse_cpuinfo((shared_data / "sysfs/hwloc-32intel64-2p8co2t+8ve/proc/cpuinfo").read_text())
    assert cpu.virtualization_flag == "vmx" and "vmx" in cpu.flags
    assert not cpu.is_virtual_machine
    assert cpu.model_name == "Intel(R) Xeon(R) Silver 4108 CPU @ 1.80GHz"


def test_kvm_guest_without_nested_virtualization(shared_data):
    cpu = parse_cpuinfo((shared_data / "sysfs/hwloc-2pa-pcidomain32bits/proc/cpuinfo").read_text())
    assert cpu.is_virtual_machine
    assert "vmx" not in cpu.flags and "svm" not in cpu.flags


def test_cpuinfo_amd_and_garbage():
    amd = parse_cpuinfo("processor\t: 0\nvendor_id\t: AuthenticAMD\nflags\t\t: fpu svm npt\n\n"
                        "processor\t: 1\nvendor_id\t: GenuineIntel\nflags\t\t: vmx\n")
    assert amd.vendor == "amd" and amd.flags == {"fpu", "svm", "npt"}  # first processor only
    junk = parse_cpuinfo("\x00\xff garbage\n::::\n")
    assert junk.vendor is None and not junk.flags


def test_interrupts_with_ir_chips():
    irq = parse_interrupts(INTERRUPTS_IR)
    assert irq.any_remapped and len(irq.remapped) == 2
    assert irq.remapped[0].endswith("IR-IO-APIC 2-edge timer")
    old_format = "           CPU0\n 65:          1   IR-PCI-MSI-edge      eth0\n"
    assert parse_interrupts(old_format).any_remapped


def test_interrupts_without_ir_chips():
    irq = parse_interrupts(INTERRUPTS_NO_IR)
    assert not irq.any_remapped and irq.msi_or_ioapic == 2 and irq.lines == 3
    # a device *named* like a chip is not an IR- chip
    assert not parse_interrupts("  CPU0\n 30:  0  PCI-MSI 1-edge  myIR-dev\n").any_remapped
    assert parse_interrupts("").lines == 0


@pytest.mark.parametrize("given, name", [
    ("vfio-pci.ko.zst", "vfio_pci"),
    ("kernel/drivers/vfio/pci/vfio-pci.ko.xz", "vfio_pci"),
    ("kernel/drivers/vfio/vfio_iommu_type1.ko", "vfio_iommu_type1"),
    ("vfio-pci", "vfio_pci"),
    ("vfio", "vfio"),
])
def test_module_name(given, name):
    assert module_name(given) == name


def test_proc_modules_ignores_junk_lines():
    text = ("vfio_pci 16384 0 - Live 0xffffffffc0a1b000\n"
            "vfio_pci_core 94208 1 vfio_pci, Live 0x0000000000000000\n"
            "\n"
            "this line is junk\n"
            "kvm_intel notanumber 0 - Live 0x0\n"
            "nvidia-drm 77824 4 - Live 0x0 (POE)\n")
    assert parse_proc_modules(text) == {"vfio_pci", "vfio_pci_core", "nvidia_drm"}


def test_whole_module_names_only():
    mods = Modules(loaded=parse_proc_modules("vfio_pci 16384 0 - Live 0x0\n"),
                   builtin=parse_modules_builtin("kernel/drivers/vfio/vfio.ko\n#comment\n"),
                   installed=parse_modules_dep("kernel/drivers/vfio/vfio_iommu_type1.ko.zst: kernel/drivers/vfio/vfio.ko.zst\n"),
                   builtin_source="modules.builtin", installed_source="modules.dep")
    assert mods.state("vfio-pci") == "loaded"
    assert mods.state("vfio") == "builtin"  # not "loaded" because vfio_pci starts with vfio
    assert mods.state("vfio_iommu_type1") == "installed"
    assert mods.state("vfio_pci_core") == "absent"
    assert Modules().state("vfio") == "unknown"


def test_default_grub_with_quotes_and_comments():
    text = ('GRUB_DEFAULT=0\n'
            'GRUB_CMDLINE_LINUX_DEFAULT="quiet intel_iommu=on iommu=pt" # set by me\n'
            "GRUB_CMDLINE_LINUX='rd.lvm.lv=rl/root'\n"
            '#GRUB_CMDLINE_LINUX="intel_iommu=off"\n')
    cl = parse_default_grub(text)
    assert cl.raw == "rd.lvm.lv=rl/root quiet intel_iommu=on iommu=pt"
    assert cl.source == "/etc/default/grub"


@pytest.mark.parametrize("ref", ["${GRUB_CMDLINE_LINUX_DEFAULT}", "$GRUB_CMDLINE_LINUX_DEFAULT"])
def test_default_grub_drop_in_extends_the_earlier_value(ref):
    # /etc/default/grub followed by a /etc/default/grub.d/iommu.cfg drop-in
    text = ('GRUB_CMDLINE_LINUX="rd.lvm.lv=rl/root"\n'
            'GRUB_CMDLINE_LINUX_DEFAULT="quiet splash"\n'
            f'GRUB_CMDLINE_LINUX_DEFAULT="{ref} intel_iommu=on iommu=pt"\n')
    cl = parse_default_grub(text)
    assert cl.raw == "rd.lvm.lv=rl/root quiet splash intel_iommu=on iommu=pt"
    assert cl.last_of("intel_iommu", {"on", "off"}) == "on"


def test_default_grub_unbalanced_quote_does_not_raise():
    cl = parse_default_grub('GRUB_CMDLINE_LINUX_DEFAULT="quiet intel_iommu=on\n')
    assert cl.has("intel_iommu")
