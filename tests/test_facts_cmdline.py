"""Kernel command line parsing, on the real command lines in shared/data/cmdline/samples.txt."""

import pytest

from hosttree import SHARED_DATA
from scanner.facts.cmdline import normalize_key, parse_cmdline, truthy


def _samples():
    path = SHARED_DATA / "cmdline" / "samples.txt"
    if not path.is_file():
        return []
    lines = [line.rstrip("\n") for line in path.read_text().splitlines()]
    return [line for line in lines if line.strip() and not line.startswith("#")]


SAMPLES = _samples()
GAMMAMAN88 = next((s for s in SAMPLES if "pve-root" in s and "amd_iommu=on" in s), None)


def test_all_34_samples_are_read():
    if not SAMPLES:
        pytest.skip("shared data not found")
    assert len(SAMPLES) == 34


@pytest.mark.parametrize("line", SAMPLES)
def test_sample_rejoins_to_the_same_parameters(line):
    cl = parse_cmdline(line)
    assert cl.params and not cl.init_args
    if '"' not in line:
        assert len(cl.params) == len(line.split())
    rejoined = " ".join(f'"{p.text}"' if " " in p.text else p.text for p in cl.params)
    again = parse_cmdline(rejoined)
    assert len(again.params) == len(cl.params)
    assert [(p.key, p.value) for p in again.params] == [(p.key, p.value) for p in cl.params]


def test_quoted_dyndbg_is_one_parameter_with_spaces_kept():
    line = next(s for s in SAMPLES if "dyndbg=" in s) if SAMPLES else (
        'apic=debug "dyndbg=file arch/x86/kernel/apic/* +pflmt ; file drivers/video/* +pflmt" i8042.debug')
    cl = parse_cmdline(line)
    (dyndbg,) = cl.all("dyndbg")
    assert dyndbg.value.startswith("file arch/x86/kernel/apic/* +pflmt ; ")
    assert '"' not in dyndbg.value and '"' not in dyndbg.key
    # the words inside the quotes did not leak out as parameters of their own
    assert not cl.has("file") and not cl.has("+pflmt") and not cl.has(";")
    assert cl.has("i8042.debug") and cl.value("apic") == "debug"


def test_quoted_value_after_the_equals_sign():
    cl = parse_cmdline('quiet dyndbg="file drivers/vfio/* +p" iommu=pt')
    assert cl.value("dyndbg") == "file drivers/vfio/* +p"
    assert [p.key for p in cl.params] == ["quiet", "dyndbg", "iommu"]


def test_comma_list_counts_as_on():
    cl = parse_cmdline("quiet intel_iommu=on,sm_on iommu=pt")
    assert cl.options("intel_iommu") == ["on", "sm_on"]
    assert cl.last_of("intel_iommu", {"on", "off"}) == "on"


@pytest.mark.parametrize("line, expected", [
    ("intel_iommu=off intel_iommu=on", "on"),
    ("intel_iommu=on intel_iommu=off", "off"),
    ("intel_iommu=on,sm_on quiet intel_iommu=igfx_off,off", "off"),
])
def test_last_occurrence_wins(line, expected):
    cl = parse_cmdline(line)
    assert cl.last_of("intel_iommu", {"on", "off"}) == expected
    assert cl.texts("intel_iommu") == line.replace("quiet ", "").split()


def test_dash_and_underscore_are_the_same_in_names():
    cl = parse_cmdline("quiet vfio-pci.ids=10de:1b80 iommu=pt")
    assert cl.value("vfio_pci.ids") == cl.value("vfio-pci.ids") == "10de:1b80"
    assert cl.texts("vfio_pci.ids") == ["vfio-pci.ids=10de:1b80"]  # as written, for evidence and removal
    assert normalize_key("vfio-pci.ids") == normalize_key("vfio_pci.ids")


def test_everything_after_double_dash_is_for_init():
    cl = parse_cmdline("root=/dev/sda1 ro intel_iommu=on -- single intel_iommu=off iommu=off")
    assert cl.init_args == ("single", "intel_iommu=off", "iommu=off")
    assert cl.texts("intel_iommu") == ["intel_iommu=on"]
    assert not cl.has("iommu") and not cl.has("single")


def test_gammaman88_proxmox_line():
    line = GAMMAMAN88 or ("BOOT_IMAGE=/boot/vmlinuz-6.5.13-1-pve root=/dev/mapper/pve-root ro quiet amd_iommu=on "
                          "iommu=pt nomodeset pcie_acs_override=downstream initcall_blacklist=sysfb_init")
    cl = parse_cmdline(line)
    assert cl.options("amd_iommu") == ["on"]
    assert cl.value("iommu") == "pt"
    assert cl.value("pcie_acs_override") == "downstream"
    assert cl.has("nomodeset") and cl.value("nomodeset") is None
    assert cl.value("BOOT_IMAGE") == "/boot/vmlinuz-6.5.13-1-pve"


def test_value_with_colons_and_commas():
    cl = parse_cmdline("boot=zfs amd_iommu=on iommu=pt nofb nomodeset video=vesafb:off,efifb:off")
    assert cl.value("video") == "vesafb:off,efifb:off"
    assert cl.options("video") == ["vesafb:off", "efifb:off"]


def test_dotted_generic_iommu_parameter():
    cl = parse_cmdline("iommu.passthrough=1 arm_smmu_v3.disable_msipolling=1 root=/dev/sda1 rw ip=dhcp")
    assert truthy(cl.value("iommu.passthrough"))
    assert not cl.has("iommu")  # iommu.passthrough is not iommu=
    assert not truthy(parse_cmdline("iommu.passthrough=0").value("iommu.passthrough"))


@pytest.mark.parametrize("value", ["1", "Y", "y", "on", "yes", "true"])
def test_truthy_words(value):
    assert truthy(value)


@pytest.mark.parametrize("value", ["0", "N", "n", "off", "", None, "2"])
def test_falsy_words(value):
    assert not truthy(value)


@pytest.mark.parametrize("junk", ["", "   ", "\0\0", '"', '"unterminated quote=1', "=", "a\x00b=c\n"])
def test_odd_input_never_raises(junk):
    cl = parse_cmdline(junk)
    assert isinstance(cl.params, tuple)
