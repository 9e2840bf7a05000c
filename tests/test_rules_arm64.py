"""arm64 hosts: SMMUv3 from the IORT or the device tree, MSIs isolated by the GICv3 ITS, ARM's knobs.

The trees (tests/armtree.py) carry what Debian's arm64 kernel showed on QEMU's virt board: the
real IORT (with and without an SMMU), /proc/interrupts and kernel log lines (tests/data/arm64).
"""

from __future__ import annotations

import json
import shutil

import pytest
from hypothesis import given, settings, strategies as st

from armtree import DATA, SMMU_UNIT, arm64_host
from clihelpers import run_cli
from hardening import scan as scan_tree
from reports.script import render_report
from scanner.facts.arm import parse_iort

SHARER, HOLDER, NIC = "0000:04:02.0", "0000:04:01.0", "0000:02:00.0"
IORT = "/sys/firmware/acpi/tables/IORT"


def scan(tree, devices=(NIC,)):
    _, report = scan_tree(tree.root, devices=list(devices), vfs=())
    return report


def finding(report, rule_id, subject="host"):
    (found,) = [f for f in report.findings if f.rule_id == rule_id and f.subject == subject]
    return found


@pytest.fixture
def acpi(tmp_path):
    return arm64_host(tmp_path / "acpi")


# -- the firmware's SMMU (VFIO-002) --------------------------------------------------------------------

def test_the_iort_with_a_root_complex_mapped_through_the_smmu_passes(acpi):
    f = finding(scan(acpi), "VFIO-002")
    assert f.status == "pass" and "SMMUv3 at 0x9050000" in f.message
    assert "1 of 1 PCI root complex(es) mapped through an SMMU" in f.message


def test_an_iort_without_an_smmu_fails_although_the_table_exists(tmp_path):
    tree = arm64_host(tmp_path / "h", iort="IORT-qemu-virt-no-smmu")
    tree.remove(f"/sys/class/iommu/{SMMU_UNIT}")
    f = finding(scan(tree), "VFIO-002")
    assert f.status == "fail" and "describes no SMMU" in f.message
    (step,) = f.remediation
    assert step.manual and "Enable the SMMU" in step.summary and "iommu.passthrough=1" in step.summary


def test_an_smmu_that_never_started_is_blamed_on_the_firmware_not_the_command_line(tmp_path):
    tree = arm64_host(tmp_path / "h", iort="IORT-qemu-virt-no-smmu")
    tree.remove(f"/sys/class/iommu/{SMMU_UNIT}")
    shutil.rmtree(tree.path("/sys/kernel/iommu_groups"))
    f = finding(scan(tree), "VFIO-005")
    assert f.status == "fail" and "firmware describes no SMMU" in f.message
    assert f.remediation[0].action["rules"] == ["VFIO-002"]


def test_no_iort_at_all_fails(tmp_path):
    tree = arm64_host(tmp_path / "h", iort=None)
    f = finding(scan(tree), "VFIO-002")
    assert f.status == "fail" and "no ACPI IORT table" in f.message


@pytest.mark.parametrize("data", [b"", b"IORT", b"DMAR" + bytes(60), (DATA / "IORT-qemu-virt-smmuv3").read_bytes()[:60]])
def test_a_garbled_iort_falls_back_to_the_running_smmu_or_skips(tmp_path, data):
    tree = arm64_host(tmp_path / "h")
    tree.write(IORT, data)
    f = finding(scan(tree), "VFIO-002")
    assert f.status == "pass" and "could not be read" in f.message and SMMU_UNIT in f.message
    tree.remove(f"/sys/class/iommu/{SMMU_UNIT}")
    assert finding(scan(tree), "VFIO-002").status == "skip"


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=400), st.integers(0, 300))
def test_no_iort_bytes_make_the_parser_raise(junk, at):
    real = bytearray((DATA / "IORT-qemu-virt-smmuv3").read_bytes())
    for data in (junk, b"IORT" + junk, bytes(real[:at]) + junk):
        table, why = parse_iort(data)
        assert (table is None) != (why is None)


def test_the_device_tree_s_iommu_map_passes_and_names_the_coarser_groups(tmp_path):
    tree = arm64_host(tmp_path / "dt", boot="dt")
    f = finding(scan(tree), "VFIO-002")
    assert f.status == "pass" and "pcie@10000000" in f.message and "smmuv3@9050000" in f.message
    assert "coarser IOMMU groups" in f.message
    tree.remove("/sys/firmware/devicetree/base/pcie@10000000/iommu-map")
    assert finding(scan(tree), "VFIO-002").status == "fail"


# -- MSI isolation by the ITS (VFIO-006) -----------------------------------------------------------------

def test_its_msis_are_isolated_interrupts(acpi):
    f = finding(scan(acpi), "VFIO-006")
    assert f.status == "pass" and "GICv3 ITS" in f.message and "IR-" in f.message


def test_per_device_its_domains_of_newer_kernels_count_too(acpi):
    acpi.write("/proc/interrupts", "           CPU0       CPU1\n"  # 6.12.118+deb13-arm64
               " 55:          1          0  ITS-PCI-MSIX-0000:00:04.0   0 Edge      PCIe PME, aerdrv, pciehp\n"
               " 58:          0          0  ITS-PCI-MSI-0000:03:00.0   0 Edge      shpchp\n")
    assert finding(scan(acpi), "VFIO-006").status == "pass"


@pytest.mark.parametrize("boot", ["acpi", "dt"])
def test_before_any_msi_is_in_use_the_kernel_log_s_its_domain_counts(tmp_path, boot):
    tree = arm64_host(tmp_path / boot, boot=boot)
    tree.write("/proc/interrupts", "           CPU0       CPU1\n 10:  3751  3509  GICv3  27 Level  arch_timer\n")
    f = finding(scan(tree), "VFIO-006")
    assert f.status == "pass" and "no MSI in use yet" in f.message


def test_msis_without_an_its_are_not_isolated(acpi):
    acpi.write("/proc/interrupts", "           CPU0       CPU1\n"
               " 40:          5          0  GICv2m-PCI-MSI 524288 Edge      nvme0q0\n")
    acpi.kernel_log("[    0.1] kvm [1]: HYP mode not available\n")
    f = finding(scan(acpi), "VFIO-006")
    assert f.status == "warn" and "not isolated by a GICv3 ITS" in f.message
    assert f.remediation[0].manual and "allow_unsafe_interrupts=1" in " ".join(f.remediation[1].commands)


def test_the_unsafe_override_beside_an_its_is_a_needless_downgrade(acpi):
    acpi.write("/sys/module/vfio_iommu_type1/parameters/allow_unsafe_interrupts", "Y\n")
    f = finding(scan(acpi), "VFIO-006")
    assert f.status == "warn" and "needless" in f.message


# -- kernel build, command line, KVM (VFIO-003, VFIO-004, VFIO-001) ---------------------------------------

def test_the_kernel_needs_an_smmu_driver_and_the_its_and_says_there_is_no_iommufd(acpi):
    f = finding(scan(acpi), "VFIO-003")
    assert f.status == "pass" and "CONFIG_ARM_SMMU_V3=y" in f.message and "CONFIG_ARM_GIC_V3_ITS=y" in f.message
    assert "no iommufd: CONFIG_IOMMUFD is not set, so there is no /dev/iommu" in f.message
    assert "legacy VFIO container" in f.message
    text = acpi.path("/boot/config-6.1.0-57-arm64").read_text()
    acpi.write("/boot/config-6.1.0-57-arm64", text.replace("CONFIG_ARM_SMMU_V3=y\n", "").replace("CONFIG_ARM_SMMU=y\n", ""))
    acpi.remove(f"/sys/class/iommu/{SMMU_UNIT}")
    f = finding(scan(acpi), "VFIO-003")
    assert f.status == "fail" and "CONFIG_ARM_SMMU_V3 or CONFIG_ARM_SMMU" in f.message


def test_no_switch_is_asked_for_on_arm64_and_iommu_pt_is_not_suggested(acpi):
    f = finding(scan(acpi), "VFIO-004")
    assert f.status == "pass" and "no command-line switch" in f.message and "iommu=pt" not in f.message


def test_iommu_passthrough_on_a_host_with_nvidia_devices_follows_nvidia_s_guidance(acpi):
    acpi.cmdline("console=ttyAMA0 quiet iommu.passthrough=1")
    assert finding(scan(acpi), "VFIO-004").status == "pass"
    acpi.pci_device("0009:01:00.0", "10de", "2342", "030200", driver="nvidia", group="20")
    f = finding(scan(acpi), "VFIO-004")
    assert f.status == "warn" and "iommu.passthrough=0" in f.message


def test_lazy_invalidation_is_named_and_not_blocking(acpi):
    acpi.cmdline("console=ttyAMA0 quiet iommu.strict=0")
    f = finding(scan(acpi), "VFIO-004")
    assert f.status == "pass" and "iommu.strict=0" in f.message and "lazily" in f.message


def test_smmu_bypass_turned_on_is_a_warning(acpi):
    acpi.write("/sys/module/arm_smmu_v3/parameters/disable_bypass", "N\n")
    f = finding(scan(acpi), "VFIO-004")
    assert f.status == "warn" and "disable_bypass" in f.message


def test_kvm_without_el2_is_named_and_with_el2_passes(tmp_path):
    f = finding(scan(arm64_host(tmp_path / "el1")), "VFIO-001")
    assert f.status == "fail" and "not started at EL2" in f.message and "HYP mode not available" in f.message
    assert all(step.manual for step in f.remediation) and not any(s.commands for s in f.remediation)
    assert finding(scan(arm64_host(tmp_path / "el2", kvm=True)), "VFIO-001").status == "pass"


# -- devices that share a stream ID behind a PCIe-to-PCI bridge (VFIO-012, VFIO-013) ----------------------

def test_a_hidden_stream_sharer_on_a_driver_makes_the_group_not_isolated(acpi):
    report = scan(acpi, devices=[HOLDER])
    f = finding(report, "VFIO-012", HOLDER)
    assert f.status == "fail" and SHARER in f.message and "stream 1024" in f.message
    assert f.remediation[0].commands == (f"echo {SHARER} > /sys/bus/pci/devices/{SHARER}/driver/unbind",)
    assert f"echo {SHARER} > /sys/bus/pci/devices/{SHARER}/driver/unbind" not in \
        "\n".join(l for l in render_report(report).splitlines() if not l.lstrip().startswith("#"))


def test_an_unbound_sharer_is_a_warning(acpi):
    acpi.bind(SHARER, None)
    assert finding(scan(acpi, devices=[HOLDER]), "VFIO-012", HOLDER).status == "warn"


def test_the_sharer_itself_is_told_why_it_has_no_group(acpi):
    report = scan(acpi, devices=[SHARER])
    f = finding(report, "VFIO-012", SHARER)
    assert f.status == "fail" and f"already taken by {HOLDER}" in f.message and "VFIO-005" not in f.message
    assert "VFIO-012" in finding(report, "VFIO-013", SHARER).message


# -- a snapshot judges as the host does ------------------------------------------------------------------

def test_a_snapshot_carries_the_iort_and_the_device_tree(tmp_path):
    for boot in ("acpi", "dt"):
        tree = arm64_host(tmp_path / boot, boot=boot)
        snap = tmp_path / f"{boot}.json"
        assert run_cli("collect", "--root", tree.root, "-o", snap).returncode == 0
        live = json.loads(run_cli("scan", "--root", tree.root, "--format", "json").stdout)
        snapped = json.loads(run_cli("scan", "--snapshot", snap, "--format", "json").stdout)
        statuses = [{(f["rule_id"], f["status"], f["message"]) for f in doc["findings"]} for doc in (live, snapped)]
        assert statuses[0] == statuses[1]
        assert ("VFIO-002", "pass") in {(r, s) for r, s, _ in statuses[1]}


# -- QEMU's virt machine: its 512 GiB high PCIe window, no q35 options (VFIO-021, vm-config) -------------

GPU = "0009:01:00.0"
MEM64_PREF = 0x14220C  # IORESOURCE_MEM | _PREFETCH | _MEM_64 | _SIZEALIGN, as /sys/.../resource shows


def big_bar_gpu(tree, gib):
    tree.pci_device(GPU, "10de", "2342", "030200", driver="vfio-pci", group="20",
                    bars={0: (0x600000000000, 16 << 20, 0x40200), 2: (0x610000000000, gib << 30, MEM64_PREF)})
    tree.write("/dev/vfio/20", "")


def test_a_bar_bigger_than_q35_s_window_fits_the_virt_machine(acpi):
    big_bar_gpu(acpi, 128)
    report = scan(acpi, devices=[GPU])
    f = finding(report, "VFIO-021", GPU)
    assert f.status == "pass" and "virt machine's high PCIe window" in f.message and "q35" not in f.message
    proc = run_cli("qemu-args", "--root", acpi.root, "--device", GPU)
    assert "pci-hole64-size" not in proc.stdout and f"host={GPU}" in proc.stdout, proc.stderr
    libvirt = run_cli("vm-config", "--for", "libvirt", "--root", acpi.root, "--device", GPU).stdout
    assert "virt machine" in libvirt and "pcihole64" not in libvirt and "q35" not in libvirt


def test_a_bar_beyond_512_gib_asks_for_a_bigger_high_window(acpi):
    big_bar_gpu(acpi, 1024)
    f = finding(scan(acpi, devices=[GPU]), "VFIO-021", GPU)
    assert f.status == "warn" and "highmem-mmio-size=" in f.remediation[0].summary
