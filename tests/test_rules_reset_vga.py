"""VFIO-014 device-reset and VFIO-015 boot-vga over the workstation fixture.

The workstation's devices give the common cases: the discrete GPU 0000:01:00.0 (reset_method
``bus``, boot_vga 0), the iGPU 0000:00:02.0 (``flr``, boot_vga 1, the firmware's display), the
SATA controller 0000:00:17.0 (an empty reset_method), the I350 NIC (``flr bus``) and the NVMe
drive (no boot_vga file). What the real 6.1 kernel shows was checked under QEMU: a device without
any reset method has neither ``reset_method`` nor ``reset``; ``echo > reset_method`` leaves it
empty ("All device reset methods disabled by user") and ``echo default`` restores the methods.
"""

import shutil
import subprocess

import pytest

from clihelpers import run_cli, scan_json
from scanner.base.record import replace
from hosttree import ready_host, workstation
from scanner.engine.runner import Scan
from scanner.facts import Facts
from scanner.facts.boot import parse_default_grub
from scanner.host.tree import TreeHost
from scanner.engine.plugins import load_plugins
from scanner.engine.scanning import scan_host
from scanner.facts.targets import parse_all

GPU, AUDIO, IGPU, SATA, NIC, NVME = ("0000:01:00.0", "0000:01:00.1", "0000:00:02.0", "0000:00:17.0",
                                     "0000:02:00.0", "0000:03:00.0")
AMD = "0000:0b:00.0"
_REGISTRY = load_plugins(autoload=False)


def scan(tree, devices, rule):
    """``{subject: finding}`` of one device rule; exactly one finding per target."""
    rules = [r for r in _REGISTRY.sorted_rules() if r.id == rule]
    assert len(rules) == 1
    selectors, requests = parse_all(devices=devices)
    report = scan_host(TreeHost(str(tree.root)), rules, Scan(), selectors=selectors, vfs=requests)
    found = {}
    for f in report.findings:
        assert f.status != "error", f.message
        assert f.subject not in found, f"two findings for {f.subject}"
        found[f.subject] = f
    assert sorted(found) == sorted(report.targets)
    return found


def commands(finding):
    return [c for step in finding.remediation for c in step.commands]


def assert_valid_shell(lines):
    for line in lines:
        proc = subprocess.run(["bash", "-n", "-c", line], capture_output=True, text=True)
        assert proc.returncode == 0, f"not valid shell: {line!r}: {proc.stderr}"


@pytest.fixture
def ws(tmp_path):
    return workstation(tmp_path / "ws")


def add_amd_gpu(tree, reset_method="bus"):
    """A Navi 21 behind its own root port; ``reset_method=None`` leaves the file out."""
    tree.pci_device("0000:00:03.0", "8086", "1905", "060400", driver="pcieport", group="12")
    attrs = {"boot_vga": "0"}
    if reset_method is not None:
        attrs["reset_method"] = reset_method
    tree.pci_device(AMD, "1002", "73bf", "030000", driver="amdgpu", group="12", parent="0000:00:03.0", **attrs)


# =============================================================================================
# VFIO-014 device-reset
# =============================================================================================

def test_014_reset_methods_pass_and_are_listed(ws):
    found = scan(ws, [GPU, NIC, IGPU], "VFIO-014")
    assert {a: f.status for a, f in found.items()} == {GPU: "pass", NIC: "pass", IGPU: "pass"}
    assert found[NIC].message.startswith("reset methods: flr, bus")
    assert found[GPU].message.startswith("reset methods: bus")
    assert found[NIC].evidence[0].source == f"/sys/bus/pci/devices/{NIC}/reset_method"
    assert found[NIC].evidence[0].value == "flr bus"
    assert all(f.remediation == () for f in found.values())


def test_014_empty_reset_method_warns_and_restores_the_defaults(ws):
    f = scan(ws, [SATA], "VFIO-014")[SATA]
    assert f.status == "warn" and f.severity == "medium"
    assert "reset_method is empty" in f.message and "reset bug" in f.message
    assert "may not survive a VM reboot" in f.message
    restore = f.remediation[0]
    assert list(restore.commands) == [f"echo default > /sys/bus/pci/devices/{SATA}/reset_method"]
    # the scanned vendor:device goes with it: the script checks the address still holds that device
    assert restore.action == {"kind": "reset-method", "address": SATA, "ids": "8086:a352", "method": "default"}
    assert not restore.manual
    last = f.remediation[-1]
    assert last.manual and last.commands == () and "firmware" in last.summary
    assert not any("vendor-reset" in s.summary for s in f.remediation), "vendor-reset is for AMD GPUs only"
    assert_valid_shell(commands(f))


def test_014_disabled_by_user_log_line_is_evidence(ws):
    ws.kernel_log(ws.path("/var/log/dmesg").read_text()
                  + "[   12.554598] ahci 0000:00:17.0: All device reset methods disabled by user\n")
    f = scan(ws, [SATA], "VFIO-014")[SATA]
    assert ("kernel log", "ahci 0000:00:17.0: All device reset methods disabled by user") in [
        (e.source, e.value) for e in f.evidence]


class CountedMessages(tuple):
    """A log's messages that count how often they are gone through."""

    passes = 0

    def __iter__(self):
        type(self).passes += 1
        return super().__iter__()


def test_014_goes_through_the_kernel_log_once_for_every_target(ws):
    """Each target's own "disabled by user" line is its evidence, and no other's; the log is
    searched once for all targets, not once per device (a host may have thousands of them)."""
    targets = [GPU, NIC, NVME, SATA]
    for address in targets:
        ws.write(f"{ws.device_dir(address)}/reset_method", "")
    ws.kernel_log(ws.path("/var/log/dmesg").read_text()
                  + "[   12.554598] ahci 0000:00:17.0: All device reset methods disabled by user\n"
                  + "[   12.554599] igb 0000:02:00.0: All device reset methods disabled by user\n"
                  + "[   12.554600] igb 0000:02:00.01: reset methods unchanged\n")
    host = TreeHost(str(ws.root))
    facts = Facts(host)
    facts.kernel_log = replace(facts.kernel_log, messages=CountedMessages(facts.kernel_log.messages))
    CountedMessages.passes = 0
    selectors, requests = parse_all(devices=targets)
    report = scan_host(host, [r for r in _REGISTRY.sorted_rules() if r.id == "VFIO-014"], Scan(),
                       selectors=selectors, vfs=requests, facts=facts)
    logged = {f.subject: [e.value for e in f.evidence if e.source == "kernel log"] for f in report.findings}
    assert logged == {GPU: [], NVME: [], NIC: ["igb 0000:02:00.0: All device reset methods disabled by user"],
                      SATA: ["ahci 0000:00:17.0: All device reset methods disabled by user"]}
    assert all(f.status == "warn" for f in report.findings)
    assert CountedMessages.passes == 1


def test_014_no_reset_files_at_all_warns(ws):
    ws.remove(f"{ws.device_dir(NVME)}/reset_method")
    f = scan(ws, [NVME], "VFIO-014")[NVME]
    assert f.status == "warn"
    assert f.message.startswith("no reset method (neither reset_method nor reset exists")
    assert "reset bug" in f.message
    assert commands(f) == []  # nothing to restore: only the manual advice
    assert all(s.manual for s in f.remediation)


def test_014_old_kernel_without_reset_method_uses_the_reset_file(ws):
    ws.remove(f"{ws.device_dir(NVME)}/reset_method")
    ws.write(f"{ws.device_dir(NVME)}/reset", "", mode=0o200)
    f = scan(ws, [NVME], "VFIO-014")[NVME]
    assert f.status == "pass"
    assert "reset file present" in f.message and "5.15" in f.message


def test_014_amd_gpu_gets_vendor_reset_and_device_specific(ws):
    add_amd_gpu(ws, reset_method="")
    f = scan(ws, [AMD], "VFIO-014")[AMD]
    assert f.status == "warn"
    kinds = [(s.action or {}).get("kind") for s in f.remediation]
    assert kinds == ["reset-method", "vendor-reset", "reset-method", None]
    vendor_reset = f.remediation[1]
    assert vendor_reset.manual and "gnif/vendor-reset" in vendor_reset.summary and "DKMS" in vendor_reset.summary
    assert list(f.remediation[2].commands) == [f"echo device_specific > /sys/bus/pci/devices/{AMD}/reset_method"]
    assert_valid_shell(commands(f))


def test_014_amd_gpu_without_reset_method_file_gets_no_write_to_it(ws):
    add_amd_gpu(ws, reset_method=None)
    f = scan(ws, [AMD], "VFIO-014")[AMD]
    assert f.status == "warn"
    assert any("vendor-reset" in s.summary for s in f.remediation)
    assert not any("reset_method" in c for c in commands(f))


def test_014_fix_writes_the_reset_method_file_in_a_copy(ws, tmp_path):
    f = scan(ws, [SATA], "VFIO-014")[SATA]
    copy = tmp_path / "copy"
    shutil.copytree(ws.root, copy, symlinks=True)
    for line in commands(f):
        subprocess.run(["bash", "-e", "-c", line.replace("/sys/", f"{copy}/sys/")], check=True)
    assert (copy / ws.device_dir(SATA).lstrip("/") / "reset_method").read_text() == "default\n"


# =============================================================================================
# VFIO-015 boot-vga
# =============================================================================================

def test_015_not_the_boot_display_passes(ws):
    found = scan(ws, [GPU, AUDIO, NVME], "VFIO-015")
    assert {a: f.status for a, f in found.items()} == {GPU: "pass", AUDIO: "pass", NVME: "pass"}
    assert found[GPU].message == "not the firmware boot display (boot_vga=0)"
    assert found[NVME].message.startswith("not a VGA display controller (no boot_vga file)")
    assert all(f.remediation == () for f in found.values())


def test_015_boot_display_warns_with_firmware_and_cmdline_fixes(ws):
    f = scan(ws, [IGPU], "VFIO-015")[IGPU]
    assert f.status == "warn" and f.severity == "medium"
    assert "firmware boot display (boot_vga=1)" in f.message and "can't reserve" in f.message
    assert "video=efifb:off" in f.message and "initcall_blacklist=sysfb_init" in f.message
    assert "5.15" in f.message and "simpledrm" in f.message
    firmware, boot = f.remediation
    assert firmware.phase == "firmware" and firmware.manual and firmware.requires_reboot
    assert "primary display" in firmware.summary
    assert boot.phase == "boot" and boot.requires_reboot and not boot.manual
    assert boot.action["add"] == ["video=efifb:off", "initcall_blacklist=sysfb_init"]
    assert "vfio-pci.disable_vga=1" in boot.summary and "OVMF" in boot.summary
    assert boot.commands[-1] == "update-grub"
    assert_valid_shell(boot.commands)


def test_015_grub_edit_adds_both_options_once(ws, tmp_path):
    ws.grub(default="quiet intel_iommu=on iommu=pt")
    f = scan(ws, [IGPU], "VFIO-015")[IGPU]
    grub = tmp_path / "grub"
    shutil.copy(ws.path("/etc/default/grub"), grub)
    edits = [c.replace("/etc/default/grub", str(grub)) for c in f.remediation[1].commands if "/etc/default/grub" in c]
    assert len(edits) == 2
    for _ in range(2):  # a second run changes nothing
        for line in edits:
            subprocess.run(["bash", "-c", line], check=True)
    configured = parse_default_grub(grub.read_text())
    assert configured.texts("video") == ["video=efifb:off"]
    assert configured.texts("initcall_blacklist") == ["initcall_blacklist=sysfb_init"]
    assert configured.texts("intel_iommu") == ["intel_iommu=on"]


def test_015_kernel_before_5_15_needs_only_efifb_off(ws):
    ws.release("5.10.0-28-amd64")
    f = scan(ws, [IGPU], "VFIO-015")[IGPU]
    assert f.status == "warn"
    assert f.remediation[1].action["add"] == ["video=efifb:off"]
    assert "initcall_blacklist" not in f.message


def test_015_only_the_missing_option_is_added(ws):
    ws.cmdline(ws.path("/proc/cmdline").read_text().strip() + " video=efifb:off")
    f = scan(ws, [IGPU], "VFIO-015")[IGPU]
    assert f.remediation[1].action["add"] == ["initcall_blacklist=sysfb_init"]


def test_015_options_already_active_leave_only_the_firmware_step(ws):
    ws.cmdline(ws.path("/proc/cmdline").read_text().strip() + " video=efifb:off initcall_blacklist=sysfb_init")
    f = scan(ws, [IGPU], "VFIO-015")[IGPU]
    assert f.status == "warn"  # still the boot display: the catalogue passes only boot_vga != 1
    assert "already active" in f.message
    assert [s.phase for s in f.remediation] == ["firmware"]


def test_015_kernel_log_can_t_reserve_is_evidence(ws):
    line = "vfio-pci 0000:00:02.0: BAR 2: can't reserve [mem 0x90000000-0x9fffffff 64bit pref]"
    ws.kernel_log(ws.path("/var/log/dmesg").read_text() + f"[   15.000001] {line}\n"
                  "[    0.512345] efifb: probing for efifb\n")
    f = scan(ws, [IGPU], "VFIO-015")[IGPU]
    shown = [(e.source, e.value) for e in f.evidence]
    assert ("kernel log", line) in shown and ("kernel log", "efifb: probing for efifb") in shown
    assert "the kernel log shows it" in f.message


def test_015_only_display_controller_says_the_host_goes_headless(tmp_path):
    tree = ready_host(tmp_path / "one")
    tree.pci_device("0000:00:01.0", "8086", "1901", "060400", driver="pcieport", group="2")
    tree.pci_device("0000:01:00.0", "10de", "2204", "030000", driver="nvidia", group="2", parent="0000:00:01.0",
                    boot_vga="1", reset_method="bus")
    f = scan(tree, ["0000:01:00.0"], "VFIO-015")["0000:01:00.0"]
    assert f.status == "warn" and "only display controller" in f.message and "headless" in f.message


def test_015_unreadable_boot_vga_is_a_skip(ws):
    ws.write(f"{ws.device_dir(IGPU)}/boot_vga", b"\xff\xfe\x00")
    f = scan(ws, [IGPU], "VFIO-015")[IGPU]
    assert f.status == "skip"
    assert f.message.startswith("cannot read boot_vga") and "garbled" in f.message


# =============================================================================================
# through the real CLI
# =============================================================================================

def test_cli_reports_reset_and_boot_display_per_target(ws):
    proc, doc = scan_json(ws.root, "--class", "0300", "--device", SATA,
                          "--rule", "device-reset", "--rule", "boot-vga", "--validate")
    assert proc.returncode == 0, proc.stderr  # warnings only: ready with warnings
    assert doc["summary"]["readiness"] == "READY_WITH_WARNINGS"
    statuses = {(f["rule_id"], f["subject"]): f["status"] for f in doc["findings"]}
    assert statuses == {
        ("VFIO-014", IGPU): "pass", ("VFIO-014", SATA): "warn", ("VFIO-014", GPU): "pass",
        ("VFIO-015", IGPU): "warn", ("VFIO-015", SATA): "pass", ("VFIO-015", GPU): "pass",
    }
    strict = run_cli("scan", "--root", ws.root, "--class", "0300", "--rule", "boot-vga", "--fail-on", "warn")
    assert strict.returncode == 1, strict.stderr
    assert "video=efifb:off" in strict.stdout and "0000:00:02.0" in strict.stdout
