"""VFIO-020 boot-framebuffer, VFIO-021 bar-window, VFIO-022 rmrr, VFIO-023 kernel-lockdown.

What makes QEMU fail at start although the device is on vfio-pci in a viable group. The trees use
the layouts the real kernel shows (Debian's 6.1 and 6.12 under QEMU, see scanner/facts/vm_start_hw.py):
``/proc/iomem`` nested two spaces a level, zero addresses for users other than root; 13 ``resource``
lines per endpoint; ``reserved_regions`` with the MSI window (and ``direct-relaxable`` for the LPC
group); ``lockdown`` with the mode in brackets. On 6.1, binding a VGA device to vfio-pci removed
``efifb`` from its BAR, which VFIO-020 takes into account.
"""

import json
import os
import re
import shutil

import pytest

from hardening import as_nobody, require_nobody, world_readable_base
from hosttree import IO_BAR, MEM32, MEM64_PREF, resource_text, workstation
from scanner.engine.runner import Scan
from scanner.facts.vm_start_hw import parse_iomem, parse_lockdown, parse_reserved_regions, parse_resource
from scanner.host.tree import TreeHost
from scanner.engine.plugins import load_plugins
from scanner.engine.scanning import scan_host
from scanner.facts.targets import parse_all
from rules.bar_window import window_needed

GPU, AUDIO, IGPU, NIC, NVME = "0000:01:00.0", "0000:01:00.1", "0000:00:02.0", "0000:02:00.0", "0000:03:00.0"
AMD = "0000:0b:00.0"
GIB = 1 << 30
_REGISTRY = load_plugins(autoload=False)

#: The workstation's /proc/iomem while the firmware's framebuffer still sits in the GPU's BAR 1.
IOMEM_EFIFB_IN_GPU = """\
00000000-00000fff : Reserved
00100000-7ffd6fff : System RAM
c0000000-febfffff : PCI Bus 0000:00
  e0000000-f1ffffff : PCI Bus 0000:01
    e0000000-efffffff : 0000:01:00.0
      e0000000-e07e8fff : efifb
    f0000000-f1ffffff : 0000:01:00.0
  f6000000-f70fffff : PCI Bus 0000:01
    f6000000-f6ffffff : 0000:01:00.0
fee00000-fee00fff : Local APIC
"""


def scan(tree, rule, devices=()):
    """``{subject: finding}`` of one rule; never an error."""
    rules = [r for r in _REGISTRY.sorted_rules() if r.id == rule]
    assert len(rules) == 1
    selectors, requests = parse_all(devices=list(devices))
    report = scan_host(TreeHost(str(tree.root)), rules, Scan(), selectors=selectors, vfs=requests)
    assert not [f for f in report.findings if f.status == "error"], report.findings
    return {f.subject: f for f in report.findings}


def evidence(finding):
    return [(e.source, e.value) for e in finding.evidence]


@pytest.fixture
def ws(tmp_path):
    return workstation(tmp_path / "ws")


def set_bars(tree, address, bars):
    tree.write(f"{tree.device_dir(address)}/resource", resource_text(bars))


def add_amd_gpu(tree, reset_method=""):
    """A Navi 10 behind its own root port, with no reset method: VFIO-014 sends it to vendor-reset."""
    tree.pci_device("0000:00:03.0", "8086", "1905", "060400", driver="pcieport", group="12")
    tree.pci_device(AMD, "1002", "731f", "030000", driver="amdgpu", group="12", parent="0000:00:03.0",
                    boot_vga="0", reset_method=reset_method)


# =============================================================================================
# the parsers, on the real kernel's text
# =============================================================================================

def test_parsers_read_the_real_kernel_formats(shared_data):
    ranges = parse_iomem("c0000000-febfffff : PCI Bus 0000:00\n  c0000000-c0ffffff : 0000:00:01.0\n"
                         "    c0000000-c03e7fff : efifb\n100000000-8ffffffff : PCI Bus 0000:00\n")
    assert [(r.start, r.end, r.name) for r in ranges][2] == (0xC0000000, 0xC03E7FFF, "efifb")
    assert ranges[3].end == 0x8FFFFFFFF
    regions = parse_reserved_regions("0x0000000000000000 0x0000000000ffffff direct-relaxable\n"
                                     "0x00000000fee00000 0x00000000feefffff msi\n")
    assert [r.kind for r in regions] == ["direct-relaxable", "msi"]
    assert parse_lockdown("none [integrity] confidentiality\n") == "integrity"
    assert parse_lockdown("[none] integrity confidentiality") == "none"
    assert parse_lockdown("none integrity") is None
    # a QLogic HBA's resource file from a real host (hwloc capture): a 64-bit BAR 0, not prefetchable;
    # its ROM (line 6) is no BAR the guest firmware places
    real = next(shared_data.glob("sysfs/hwloc-40intel64-2g2n4c+pcilocality/sys/devices/pci0000:40/0000:40:03.0/"
                                 "0000:43:00.0/resource"))
    bars = parse_resource(real.read_text())
    assert len(bars) == 13
    assert bars[0].is_standard_memory and not bars[0].is_64bit_prefetchable and bars[0].size == 4 << 20
    assert bars[6].size and not bars[6].is_standard_memory


# =============================================================================================
# VFIO-020 boot-framebuffer
# =============================================================================================

def test_020_no_framebuffer_passes(ws):
    found = scan(ws, "VFIO-020", [GPU, NIC])
    assert {f.status for f in found.values()} == {"pass"}
    assert found[GPU].message == "no boot framebuffer registered (none in /proc/iomem)"


def test_020_efifb_inside_the_bar_fails_before_6_0_with_the_boot_fix(ws):
    ws.release("5.15.0-91-generic")
    ws.iomem(IOMEM_EFIFB_IN_GPU)
    ws.kernel_log("[    3.120000] vfio-pci 0000:01:00.0: BAR 1: can't reserve [mem 0xe0000000-0xefffffff 64bit pref]\n")
    f = scan(ws, "VFIO-020", [GPU])[GPU]
    assert f.status == "fail" and f.severity == "high"
    assert f.message.startswith("a boot framebuffer holds part of its memory: efifb at e0000000-e07e8fff in BAR 1 "
                                "(e0000000-efffffff)")
    assert "QEMU's mmap of it fails at VM start" in f.message and "the kernel log shows it" in f.message
    assert ("/proc/iomem", "e0000000-e07e8fff : efifb") in evidence(f)
    assert (f"/sys/bus/pci/devices/{GPU}/resource",
            "BAR 1: 0x00000000e0000000 0x00000000efffffff 0x000000000014220c") in evidence(f)
    assert ("kernel log", "vfio-pci 0000:01:00.0: BAR 1: can't reserve [mem 0xe0000000-0xefffffff 64bit pref]"
            ) in evidence(f)
    boot, display = f.remediation
    assert boot.phase == "boot" and boot.action["kind"] == "kernel-cmdline"
    assert boot.action["add"] == ["video=efifb:off"] and boot.requires_reboot
    assert boot.commands[-1] == "update-grub"
    assert display.phase == "firmware" and display.manual and "primary display" in display.summary


def test_020_on_6_x_vfio_pci_removes_it_from_a_vga_device_it_takes(ws):
    """Seen on 6.1 under QEMU: efifb leaves /proc/iomem as the VGA device binds to vfio-pci."""
    ws.iomem(IOMEM_EFIFB_IN_GPU)
    f = scan(ws, "VFIO-020", [GPU])[GPU]
    assert f.status == "pass"
    assert "vfio-pci removes it when it takes this VGA device" in f.message and "6.1.0-56-amd64" in f.message
    assert "see VFIO-015" in f.message


def test_020_still_there_with_the_device_on_vfio_pci_fails_with_sysfb_off(ws):
    ws.bind(GPU, "vfio-pci")
    ws.iomem(IOMEM_EFIFB_IN_GPU.replace("      e0000000-e07e8fff : efifb\n",
                                        "      e0000000-e07e8fff : BOOTFB\n        e0000000-e07e8fff : simpledrm\n"))
    f = scan(ws, "VFIO-020", [GPU])[GPU]
    assert f.status == "fail"
    assert "BOOTFB at e0000000-e07e8fff in BAR 1" in f.message and "simpledrm" in f.message
    assert f.remediation[0].action["add"] == ["initcall_blacklist=sysfb_init"]


def test_020_a_3d_controller_is_not_cleared_by_vfio_pci(ws):
    ws.write(f"{ws.device_dir(GPU)}/class", "0x030200\n")
    ws.iomem(IOMEM_EFIFB_IN_GPU)
    assert scan(ws, "VFIO-020", [GPU])[GPU].status == "fail"


def test_020_option_already_on_the_command_line_leaves_the_firmware(ws):
    ws.release("5.10.0-28-amd64")
    ws.cmdline("BOOT_IMAGE=/boot/vmlinuz root=/dev/sda1 ro quiet intel_iommu=on iommu=pt video=efifb:off")
    ws.iomem(IOMEM_EFIFB_IN_GPU)
    f = scan(ws, "VFIO-020", [GPU])[GPU]
    assert f.status == "fail"
    (step,) = f.remediation
    assert step.phase == "firmware" and step.manual and "already on the running command line" in step.summary


def test_020_framebuffer_on_another_device_passes(ws):
    ws.iomem(IOMEM_EFIFB_IN_GPU.replace("e0000000-e07e8fff : efifb", "e0000000-e07e8fff : vesafb"))
    f = scan(ws, "VFIO-020", [NIC])[NIC]
    assert f.status == "pass" and f.message == "the boot framebuffer (vesafb) lies outside this device's BARs"


def test_020_addresses_hidden_from_a_user_skip_never_fail(ws):
    ws.release("5.15.0-91-generic")
    hidden = re.sub(r"[0-9a-f]+-[0-9a-f]+ :", "00000000-00000000 :", IOMEM_EFIFB_IN_GPU)  # what a user reads
    ws.iomem(hidden)
    f = scan(ws, "VFIO-020", [GPU])[GPU]
    assert f.status == "skip"
    assert "hides every address from this user" in f.message and "scan as root" in f.message
    ws.iomem(hidden.replace("efifb", "ICH HD audio"))  # names stay visible: no framebuffer at all is a pass
    assert scan(ws, "VFIO-020", [GPU])[GPU].status == "pass"


@pytest.mark.parametrize("text, reason", [(None, "cannot read /proc/iomem (missing)"),
                                          ("nothing here\n", "cannot read /proc/iomem (garbled")])
def test_020_unreadable_iomem_skips(ws, text, reason):
    if text is None:
        ws.remove("/proc/iomem")
    else:
        ws.iomem(text)
    f = scan(ws, "VFIO-020", [GPU])[GPU]
    assert f.status == "skip" and f.message.startswith(reason)


def test_020_unreadable_bars_skip(ws):
    ws.iomem(IOMEM_EFIFB_IN_GPU)
    ws.remove(f"{ws.device_dir(GPU)}/resource")
    f = scan(ws, "VFIO-020", [GPU])[GPU]
    assert f.status == "skip" and f.message == (f"cannot read the device's BARs (/sys/bus/pci/devices/{GPU}/resource: "
                                                "missing)")


# =============================================================================================
# VFIO-021 bar-window
# =============================================================================================

def test_021_window_sizes():
    assert window_needed(288 << 20) == GIB
    assert window_needed(32 * GIB) == 32 * GIB
    assert window_needed(32 * GIB + (32 << 20)) == 64 * GIB


def test_021_a_gpu_without_resizable_bar_fits(ws):
    f = scan(ws, "VFIO-021", [GPU])[GPU]
    assert f.status == "pass"
    assert f.message == "its 64-bit prefetchable BARs (288 MiB) fit QEMU's default 64-bit window on q35 (32 GiB)"
    assert f.observed == ("64-bit prefetchable BARs: 288 MiB (0000:01:00.0 BAR 1 256 MiB, 0000:01:00.0 BAR 3 32 MiB); "
                          "window needed 1 GiB")
    assert [e.value.split(":")[0] for e in f.evidence] == ["BAR 1", "BAR 3"]


def test_021_a_resizable_bar_of_32_gib_needs_a_64_gib_window(ws):
    set_bars(ws, GPU, {0: (0xF6000000, 16 << 20, MEM32), 1: (0x4000000000, 32 * GIB, MEM64_PREF),
                       3: (0x4800000000, 32 << 20, MEM64_PREF), 5: (0xE000, 128, IO_BAR)})
    f = scan(ws, "VFIO-021", [GPU])[GPU]
    assert f.status == "warn" and f.severity == "medium"
    assert "need a 64 GiB 64-bit PCI window" in f.message
    assert "-global q35-pcihost.pci-hole64-size=64G" in f.message
    assert "<pcihole64 unit='KiB'>67108864</pcihole64>" in f.message
    (step,) = f.remediation
    assert step.manual and step.action == {"kind": "vm-config", "pci_hole64_size": 64 * GIB}
    assert "-global i440FX-pcihost.pci-hole64-size=64G" in step.summary
    assert "model='pcie-root'" in step.summary and "X-PciMmio64Mb,string=65536" in step.summary


def test_021_sibling_functions_count_with_the_target(ws):
    set_bars(ws, GPU, {1: (0x4000000000, 16 * GIB, MEM64_PREF), 3: (0x4400000000, 32 << 20, MEM64_PREF)})
    set_bars(ws, AUDIO, {0: (0x4800000000, 16 * GIB, MEM64_PREF)})
    f = scan(ws, "VFIO-021", [GPU])[GPU]
    assert f.status == "warn" and "0000:01:00.1 BAR 0 16 GiB" in f.message
    assert "pci-hole64-size=64G" in f.message


def test_021_over_2_gib_passes_and_names_the_i440fx_argument(ws):
    set_bars(ws, GPU, {1: (0x4000000000, 4 * GIB, MEM64_PREF), 3: (0x4100000000, 32 << 20, MEM64_PREF)})
    f = scan(ws, "VFIO-021", [GPU])[GPU]
    assert f.status == "pass"
    assert f.message.endswith("on an i440fx (pc) machine, whose default is 2 GiB, add "
                              "-global i440FX-pcihost.pci-hole64-size=8G")


def test_021_32_bit_non_prefetchable_rom_and_vf_bars_are_not_counted(ws):
    set_bars(ws, NVME, {0: (0xFE000000, 16 << 10, 0x140204), 6: (0xFE100000, 256 << 10, 0x46200),
                        7: (0x5000000000, 64 * GIB, MEM64_PREF)})
    f = scan(ws, "VFIO-021", [NVME])[NVME]
    assert f.status == "pass" and f.message.startswith("no 64-bit prefetchable BAR")


def test_021_unreadable_bars_of_a_sibling_skip(ws):
    ws.write(f"{ws.device_dir(AUDIO)}/resource", "garbage\n")
    f = scan(ws, "VFIO-021", [GPU])[GPU]
    assert f.status == "skip"
    assert f.message == (f"cannot read the BARs (/sys/bus/pci/devices/{AUDIO}/resource: garbled: no "
                         "'0xstart 0xend 0xflags' line)")


# =============================================================================================
# VFIO-022 rmrr
# =============================================================================================

RMRR_LINE = ("[    9.412345] vfio-pci {}: Device is ineligible for IOMMU domain attach due to platform RMRR "
             "requirement.  Contact your platform vendor.\n")


def test_022_plain_msi_region_passes(ws):
    f = scan(ws, "VFIO-022", [GPU])[GPU]
    assert f.status == "pass" and f.message == "no firmware-required direct mapping in IOMMU group 1 (reserved regions: msi)"
    assert evidence(f) == [("/sys/kernel/iommu_groups/1/reserved_regions", "0x00000000fee00000 0x00000000feefffff msi")]


def test_022_the_kernel_log_refusal_fails(ws):
    ws.kernel_log(RMRR_LINE.format(NIC))
    f = scan(ws, "VFIO-022", [NIC])[NIC]
    assert f.status == "fail" and f.severity == "high"
    assert f.message.startswith("the kernel refused it an IOMMU domain because the firmware requires a 1:1 mapping")
    assert "failed to set iommu for container" in f.message
    assert evidence(f) == [("kernel log", RMRR_LINE.format(NIC).split("] ", 1)[1].strip())]
    firmware, kernel = f.remediation
    assert firmware.phase == "firmware" and firmware.manual and "HPE Shared Memory features" in firmware.summary
    assert kernel.phase == "kernel" and kernel.manual and "relaxable-RMRR" in kernel.summary


def test_022_a_refused_group_member_fails_the_target_too(ws):
    ws.kernel_log("[   12.0] vfio-pci 0000:01:00.1: Firmware has requested this device have a 1:1 IOMMU mapping, "
                  "rejecting configuring the device without a 1:1 mapping. Contact your platform vendor.\n")
    f = scan(ws, "VFIO-022", [GPU])[GPU]
    assert f.status == "fail" and "0000:01:00.1, in its IOMMU group," in f.message


def test_022_another_devices_refusal_is_not_this_ones(ws):
    ws.kernel_log(RMRR_LINE.format("10000:01:00.0") + RMRR_LINE.format("0000:05:00.0"))
    assert scan(ws, "VFIO-022", [GPU])[GPU].status == "pass"


def test_022_a_direct_region_warns_and_relaxable_passes(ws):
    ws.write("/sys/kernel/iommu_groups/7/reserved_regions",
             "0x000000007b800000 0x000000007b9fffff direct\n0x00000000fee00000 0x00000000feefffff msi\n")
    f = scan(ws, "VFIO-022", [NIC])[NIC]
    assert f.status == "warn" and "direct region(s) 7b800000-7b9fffff" in f.message
    assert f.observed == "direct: 7b800000-7b9fffff"
    ws.write("/sys/kernel/iommu_groups/7/reserved_regions",  # the LPC group of the QEMU guest, as 6.1 shows it
             "0x0000000000000000 0x0000000000ffffff direct-relaxable\n0x00000000fee00000 0x00000000feefffff msi\n")
    f = scan(ws, "VFIO-022", [NIC])[NIC]
    assert f.status == "pass" and "direct-relaxable, msi" in f.message


def test_022_unreadable_regions_skip_and_no_group_follows_from_005(ws):
    ws.remove("/sys/kernel/iommu_groups/7/reserved_regions")
    f = scan(ws, "VFIO-022", [NIC])[NIC]
    assert f.status == "skip" and "reserved_regions: missing" in f.message
    ws.remove(f"{ws.device_dir(NIC)}/iommu_group")
    f = scan(ws, "VFIO-022", [NIC])[NIC]
    assert f.status == "skip" and f.message.startswith("follows from VFIO-005")


# =============================================================================================
# VFIO-023 kernel-lockdown
# =============================================================================================

def test_023_no_lockdown_passes(ws):
    f = scan(ws, "VFIO-023")["host"]
    assert f.status == "pass" and f.message == "kernel lockdown is off: unsigned modules load"
    assert evidence(f) == [("/sys/kernel/security/lockdown", "[none] integrity confidentiality")]


def test_023_lockdown_with_an_amd_gpu_target_warns_with_mok_signing(ws):
    ws.lockdown("integrity")
    add_amd_gpu(ws)
    f = scan(ws, "VFIO-023", [AMD, GPU])["host"]
    assert f.status == "warn" and f.severity == "medium"
    assert f.message.startswith(f"kernel lockdown is on (integrity): {AMD} is an AMD GPU")
    assert "vendor-reset DKMS module" in f.message
    mok, secure_boot = f.remediation
    assert list(mok.commands) == ["mokutil --import /var/lib/dkms/mok.pub"] and mok.manual and mok.requires_reboot
    assert secure_boot.phase == "firmware" and "Secure Boot" in secure_boot.summary


def test_023_vendor_reset_loaded_or_selected_needs_nothing(ws):
    ws.lockdown("confidentiality")
    add_amd_gpu(ws)
    ws.write("/proc/modules", ws.path("/proc/modules").read_text()
             + "vendor_reset 110592 0 - Live 0x0000000000000000 (OE)\n")
    f = scan(ws, "VFIO-023", [AMD])["host"]
    assert f.status == "pass" and "no target needs an out-of-tree one" in f.message
    ws.write("/proc/modules", "vfio 16384 0 - Live 0x0000000000000000\n")
    ws.write(f"{ws.device_dir(AMD)}/reset_method", "device_specific bus\n")  # vendor-reset already selected
    assert scan(ws, "VFIO-023", [AMD])["host"].status == "pass"
    ws.write(f"{ws.device_dir(AMD)}/reset_method", "bus\n")  # a method VFIO-014 accepts: no vendor-reset asked
    assert scan(ws, "VFIO-023", [AMD])["host"].status == "pass"


def test_023_unreadable_or_garbled_skips_and_no_lockdown_lsm_passes(ws):
    ws.write("/sys/kernel/security/lockdown", "none integrity confidentiality\n")
    f = scan(ws, "VFIO-023")["host"]
    assert f.status == "skip" and "no mode in brackets" in f.message
    ws.remove("/sys/kernel/security/lockdown")
    f = scan(ws, "VFIO-023")["host"]
    assert f.status == "skip" and f.message == "cannot read the lockdown mode (/sys/kernel/security/lockdown: missing)"
    ws.kconfig({"IOMMU_SUPPORT": "y", "INTEL_IOMMU": "y", "SECURITY_LOCKDOWN_LSM": "n"})
    f = scan(ws, "VFIO-023")["host"]
    assert f.status == "pass" and "CONFIG_SECURITY_LOCKDOWN_LSM not set" in f.message


# =============================================================================================
# as a user other than root: files it cannot read are skips, never a fail
# =============================================================================================

#: What a root-only mode (0400) hides from nobody, each file one of the four rules reads.
ROOT_ONLY = ("/proc/iomem", f"/sys/bus/pci/devices/{GPU}/resource", "/sys/kernel/iommu_groups/1/reserved_regions",
             "/sys/kernel/security/lockdown")


def test_unreadable_files_are_skips_for_nobody(request):
    require_nobody()
    base = world_readable_base("vfio-scan-vmstart-")
    request.addfinalizer(lambda: shutil.rmtree(base, ignore_errors=True))
    tree = workstation(base / "root")
    tree.release("5.15.0-91-generic")
    tree.iomem(IOMEM_EFIFB_IN_GPU)  # root would see a fail (VFIO-020) and a warning (VFIO-021)
    set_bars(tree, GPU, {1: (0x4000000000, 32 * GIB, MEM64_PREF), 3: (0x4800000000, 32 << 20, MEM64_PREF)})
    for path in (tree.root,) + tuple(tree.path(p) for p in ROOT_ONLY):
        os.chmod(path, 0o755 if path == tree.root else 0o400)
    proc = as_nobody(["-m", "scanner", "scan", "--root", str(tree.root), "--format", "json", "--device", GPU])
    assert "Traceback" not in proc.stderr, proc.stderr
    found = {f["rule_id"]: f for f in json.loads(proc.stdout)["findings"]}
    for rule_id in ("VFIO-020", "VFIO-021", "VFIO-022", "VFIO-023"):
        assert found[rule_id]["status"] == "skip", found[rule_id]
        assert "permission denied" in found[rule_id]["message"], found[rule_id]["message"]
