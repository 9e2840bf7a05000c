"""arm64 (SMMUv3 + GICv3 ITS; UEFI/ACPI and device tree) and Debian 13's 6.12 kernel, on real kernels.

Four boots through the QEMU harness: Debian 12's arm64 kernel on QEMU's virt board with an SMMUv3,
booted through UEFI + ACPI (IORT) and directly on a device tree, the same board without an SMMU,
and Debian 13's amd64 kernel (6.12) with VT-d. In each, the guest writes the kernel's own view
beside the scans; the arm64 guests run ``python3 -m scanner`` from the checkout with the
dependencies built for aarch64. The tests assert the exact status of every host rule and what the
kernel said that makes it right; where a device is bound, the fix script is applied for real and a
rescan must pass.
"""

import json
import os
import subprocess

import pytest

import guest
from closed_loop import vfio_scan_host_command

pytestmark = pytest.mark.e2e

HOST_RULES = ("VFIO-001", "VFIO-002", "VFIO-003", "VFIO-004", "VFIO-005", "VFIO-006", "VFIO-007")
NIC, HOLDER, SHARER = "0000:02:00.0", "0000:04:01.0", "0000:04:02.0"

BODY = r'''
ground_truth
cp /sys/firmware/acpi/tables/IORT "$OUT/IORT" 2>/dev/null
grep -E 'MSI' /proc/interrupts > "$OUT/msi.txt"
if [ -e /dev/iommu ]; then echo present; else echo absent; fi > "$OUT/dev-iommu.txt"
grep -E '^CONFIG_(IOMMUFD|ARM_SMMU_V3|ARM_GIC_V3_ITS)=' "/boot/config-$(uname -r)" > "$OUT/kconfig.txt"
for d in /sys/kernel/iommu_groups/*/devices/*; do echo "${d#/sys/kernel/iommu_groups/}"; done > "$OUT/group-members.txt"
modprobe -a vfio vfio_iommu_type1 vfio_pci
mkdir -p /etc/modules-load.d
printf '%s\n' vfio vfio_iommu_type1 vfio_pci > /etc/modules-load.d/vfio.conf
vs scan scan --device 0000:02:00.0 --device 0000:04:01.0 --device 0000:04:02.0 --format json -o "$OUT/scan.json" --validate
vs fix fix --device 0000:02:00.0 -o "$OUT/fix.sh"
step fix-apply env DRY_RUN=0 bash "$OUT/fix.sh"
readlink /sys/bus/pci/devices/0000:02:00.0/driver > "$OUT/driver-after.txt"
vs rescan scan --device 0000:02:00.0 --format json -o "$OUT/rescan.json"
vs collect collect -o "$OUT/snap.json"
'''

SCENARIOS = {
    "arm64-acpi": dict(arch="arm64", iommu="smmuv3"),
    "arm64-dt": dict(arch="arm64", iommu="smmuv3", extra_args=["--direct"]),
    "arm64-no-smmu": dict(arch="arm64", iommu="none"),
    "amd64-6.12": dict(kernel="6.12", cmdline="intel_iommu=on iommu=pt"),
}
#: The exact status of every host rule. Under TCG no guest has KVM: the arm64 kernel is entered at EL1
#: ("kvm [1]: HYP mode not available"), the amd64 CPU lacks VT-x.
EXPECTED = {
    "arm64-acpi": dict.fromkeys(HOST_RULES, "pass") | {"VFIO-001": "fail"},
    "arm64-dt": dict.fromkeys(HOST_RULES, "pass") | {"VFIO-001": "fail"},
    # the IORT is there but maps PCI only to the ITS: no SMMU, no groups; MSIs are still isolated by the ITS
    "arm64-no-smmu": dict.fromkeys(HOST_RULES, "pass") | {"VFIO-001": "fail", "VFIO-002": "fail", "VFIO-005": "fail"},
    "amd64-6.12": dict.fromkeys(HOST_RULES, "pass") | {"VFIO-001": "fail"},
}

BOOTS = guest.Scenarios(BODY, SCENARIOS)
booted, by_name = BOOTS.booted, BOOTS.fixture


@pytest.fixture(scope="module", params=list(SCENARIOS))
def run(request, tmp_path_factory):
    return booted(request.param, tmp_path_factory)


arm64_acpi, arm64_dt, arm64_no_smmu, amd64_612 = (by_name(n) for n in SCENARIOS)


# -- every platform -------------------------------------------------------------------------------

def test_host_rule_statuses_are_exact(run):
    report = run.report("scan.json")
    got = {rule: report.status(rule) for rule in HOST_RULES}
    assert got == EXPECTED[run.name], f"{run.name}\n{run.describe()}\n{run.text('scan.err')}"
    assert run.text("scan.err") == ""


def test_the_report_is_about_the_guest_kernel(run):
    doc = run.json("scan.json")
    arm = run.name.startswith("arm64")
    assert doc["host"]["arch"] == ("aarch64" if arm else "x86_64")
    assert doc["host"]["kernel"].endswith("-arm64" if arm else "+deb13-amd64")


def test_the_kernel_without_iommufd_is_said_to_use_the_legacy_container(run):
    assert "CONFIG_IOMMUFD" not in run.text("kconfig.txt") and run.text("dev-iommu.txt").strip() == "absent"
    message = run.report("scan.json").finding("VFIO-003")["message"]
    assert "no iommufd: CONFIG_IOMMUFD is not set, so there is no /dev/iommu" in message
    assert "legacy VFIO container" in message


def test_a_snapshot_of_the_guest_scans_the_same_on_this_machine(run):
    assert run.rc_of("collect") == 0, run.text("collect.err")
    env = dict(os.environ, VFIO_SCAN_DISABLE_PLUGINS="1")
    proc = subprocess.run(vfio_scan_host_command() + ["scan", "--snapshot", str(run.path("snap.json")), "--device", NIC,
                                                      "--format", "json"],
                          capture_output=True, text=True, env=env, timeout=300)
    live = run.json("rescan.json")
    assert guest.keys(json.loads(proc.stdout)["findings"]) == guest.keys(live["findings"]), proc.stderr


# -- arm64 with an SMMUv3 -----------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["arm64-acpi", "arm64-dt"])
def test_arm64_smmu_its_and_the_fix_that_binds_a_device(name, tmp_path_factory):
    run = booted(name, tmp_path_factory)
    report = run.report("scan.json")
    assert "smmu3.0x0000000009050000" in run.text("iommu-units.txt")
    assert "ITS-MSI" in run.text("msi.txt") and "IR-" not in run.text("msi.txt")
    its = report.finding("VFIO-006")
    assert "GICv3 ITS" in its["message"], report.show("VFIO-006")
    assert "CONFIG_ARM_SMMU_V3=y" in report.finding("VFIO-003")["message"]
    assert "no command-line switch" in report.finding("VFIO-004")["message"]
    assert "not started at EL2" in report.finding("VFIO-001")["message"]
    # the fix binds the NIC for real; the rescan passes now and at the next boot
    assert run.rc_of("fix-apply") == 0, run.text("fix-apply.err") + run.text("fix-apply.out")
    assert run.text("driver-after.txt").strip().endswith("/vfio-pci")
    rescan = run.report("rescan.json")
    assert rescan.status("VFIO-013", NIC) == "pass" and rescan.status("VFIO-017", NIC) == "pass", \
        rescan.show("VFIO-017", NIC)


def test_the_acpi_iort_maps_pci_through_the_smmu(arm64_acpi):
    finding = arm64_acpi.report("scan.json").finding("VFIO-002")
    assert arm64_acpi.path("IORT").is_file()  # root reads the table in the guest
    assert "SMMUv3 at 0x9050000" in finding["message"] and "1 of 1 PCI root complex" in finding["message"]


def test_the_stream_id_shared_behind_the_pci_bridge_is_caught(arm64_acpi):
    """The kernel groups 04:01.0 and leaves 04:02.0 (same stream ID, on e1000) in no group at all."""
    assert f"{SHARER}: stream 1024 already in tree from dev {HOLDER}" in arm64_acpi.text("dmesg.txt")
    assert not any(line.endswith(SHARER) for line in arm64_acpi.text("group-members.txt").split())
    report = arm64_acpi.report("scan.json")
    holder = report.finding("VFIO-012", HOLDER)
    assert holder["status"] == "fail" and SHARER in holder["message"] and "stream" in holder["message"]
    sharer = report.finding("VFIO-012", SHARER)
    assert sharer["status"] == "fail" and f"already taken by {HOLDER}" in sharer["message"]


def test_the_device_tree_boot_names_its_smmu_and_gives_coarser_groups(arm64_dt):
    report = arm64_dt.report("scan.json")
    finding = report.finding("VFIO-002")
    assert "device tree maps PCIe host pcie@10000000 to SMMU smmuv3@9050000" in finding["message"]
    assert arm64_dt.text("acpi-tables.txt").strip().endswith("No such file or directory")
    members = arm64_dt.text("group-members.txt").split()
    group = next(m.split("/")[0] for m in members if m.endswith(NIC))
    assert f"{group}/devices/0000:00:05.0" in members  # the root port shares the NIC's group under a device tree
    assert "0000:00:05.0" in report.finding("VFIO-012", NIC)["message"]


def test_without_an_smmu_the_iort_alone_is_not_taken_for_one(arm64_no_smmu):
    report = arm64_no_smmu.report("scan.json")
    assert "IORT" in arm64_no_smmu.text("acpi-tables.txt") and arm64_no_smmu.text("iommu-units.txt").strip() == ""
    finding = report.finding("VFIO-002")
    assert "describes no SMMU" in finding["message"]
    assert finding["remediation"][0]["manual"] and "Enable the SMMU" in finding["remediation"][0]["summary"]
    assert "firmware describes no SMMU" in report.finding("VFIO-005")["message"]
    assert arm64_no_smmu.rc_of("fix-apply") != 0 or arm64_no_smmu.report("rescan.json").status("VFIO-013", NIC) != "pass"


# -- Debian 13's 6.12 on amd64 ---------------------------------------------------------------------------

def test_the_6_12_kernel_binds_and_passes_after_the_fix(amd64_612):
    assert amd64_612.text("dmesg.txt").count("6.12.") >= 1
    assert amd64_612.rc_of("fix-apply") == 0, amd64_612.text("fix-apply.err")
    assert amd64_612.text("driver-after.txt").strip().endswith("/vfio-pci")
    rescan = amd64_612.report("rescan.json")
    for rule in ("VFIO-012", "VFIO-013", "VFIO-017"):
        assert rescan.status(rule, NIC) == "pass", rescan.show(rule, NIC)
