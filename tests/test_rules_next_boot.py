"""VFIO-016 next-boot and VFIO-017 binding-persistence: what works now, and what a reboot keeps of it."""

import json

import pytest

from hosttree import RELEASE, ready_host, workstation
from scanner.engine.runner import Scan
from scanner.host.tree import TreeHost
from scanner.engine.plugins import load_plugins
from scanner.engine.scanning import scan_host
from scanner.facts.targets import parse_all

_REGISTRY = load_plugins(autoload=False)
GPU, AUDIO, PF = "0000:01:00.0", "0000:01:00.1", "0000:02:00.0"
BOOT = f"BOOT_IMAGE=/boot/vmlinuz-{RELEASE} root=/dev/sda1 ro quiet"


def scan(tree, rule, devices=(), vfs=()):
    rules = [r for r in _REGISTRY.sorted_rules() if r.id == rule]
    selectors, requests = parse_all(devices=devices, vfs=vfs)
    report = scan_host(TreeHost(str(tree.root)), rules, Scan(), selectors=selectors, vfs=requests)
    return {f.subject: f for f in report.findings}


def not_default_on(tree):
    tree.kconfig({"IOMMU_SUPPORT": "y", "INTEL_IOMMU": "y", "INTEL_IOMMU_DEFAULT_ON": "n", "VFIO": "m",
                  "VFIO_PCI": "m", "VFIO_IOMMU_TYPE1": "m"})


# -- VFIO-016 -----------------------------------------------------------------------------------------

def test_a_parameter_typed_at_the_boot_prompt_is_lost_at_next_boot(tmp_path):
    tree = ready_host(tmp_path / "h")
    not_default_on(tree)
    tree.grub(default="quiet")  # the file never got intel_iommu=on: it was typed at the GRUB prompt
    f = scan(tree, "VFIO-016")["host"]
    assert f.status == "fail"
    assert f.message.startswith("works now, lost at next boot: intel_iommu=on iommu=pt are on the running command "
                                "line but not in /etc/default/grub")
    (step,) = f.remediation
    assert step.action["kind"] == "kernel-cmdline" and step.action["add"] == ["intel_iommu=on", "iommu=pt"]


def test_the_same_in_the_file_passes(tmp_path):
    f = scan(ready_host(tmp_path / "h"), "VFIO-016")["host"]
    assert f.status == "pass" and f.message.startswith("the next boot passes what runs now (intel_iommu=on iommu=pt)")


def test_a_kernel_that_turns_vt_d_on_by_itself_does_not_need_the_flag(tmp_path):
    tree = ready_host(tmp_path / "h")  # Debian's kernel: INTEL_IOMMU_DEFAULT_ON_INTGPU_OFF=y
    tree.grub(default="quiet iommu=pt")
    assert scan(tree, "VFIO-016")["host"].status == "pass"


def test_a_grub_d_drop_in_that_overrides_the_main_file_loses_it(tmp_path):
    tree = ready_host(tmp_path / "h")
    not_default_on(tree)
    tree.write("/etc/default/grub.d/50-cloudimg-settings.cfg", 'GRUB_CMDLINE_LINUX_DEFAULT="console=ttyS0"\n')
    f = scan(tree, "VFIO-016")["host"]
    assert f.status == "fail" and "intel_iommu=on iommu=pt" in f.message


def test_a_pending_change_is_said_not_failed(tmp_path):
    tree = ready_host(tmp_path / "h", cmdline=f"{BOOT} intel_iommu=on")
    f = scan(tree, "VFIO-016")["host"]
    assert f.status == "pass" and "it also changes: iommu=pt (configured, not yet booted)" in f.message


def test_a_switch_off_on_the_running_line_is_not_missed(tmp_path):
    tree = ready_host(tmp_path / "h", cmdline=f"{BOOT} intel_iommu=off")
    tree.grub(default="quiet intel_iommu=on")
    assert scan(tree, "VFIO-016")["host"].status == "pass"


def test_grubby_reads_the_bls_entry_of_the_running_kernel(tmp_path):
    tree = ready_host(tmp_path / "h")
    not_default_on(tree)
    tree.write("/usr/sbin/grubby", "#!/bin/sh\n", mode=0o755)
    tree.write(f"/boot/loader/entries/abc-{RELEASE}.conf",
               f"title Linux\nversion {RELEASE}\nlinux /vmlinuz-{RELEASE}\noptions $kernelopts\n")
    tree.write("/boot/loader/entries/abc-5.14.0-old.conf",
               "title Old\nlinux /vmlinuz-5.14.0-old\noptions root=/dev/sda1 intel_iommu=on iommu=pt\n")
    tree.write("/boot/grub2/grubenv", "# GRUB Environment Block\nkernelopts=root=/dev/sda1 ro\n")
    f = scan(tree, "VFIO-016")["host"]
    assert f.status == "fail" and f"/boot/loader/entries/abc-{RELEASE}.conf" in f.message
    tree.write("/boot/grub2/grubenv", "kernelopts=root=/dev/sda1 ro intel_iommu=on iommu=pt\n")
    assert scan(tree, "VFIO-016")["host"].status == "pass"


def test_kernelstub_keeps_its_options_in_json(tmp_path):
    tree = ready_host(tmp_path / "h")
    not_default_on(tree)
    tree.write("/usr/bin/kernelstub", "#!/bin/sh\n", mode=0o755)
    tree.write("/etc/kernelstub/configuration", json.dumps({"user": {"kernel_options": ["quiet", "intel_iommu=on"]}}))
    f = scan(tree, "VFIO-016")["host"]
    assert f.status == "fail" and f.message.startswith("works now, lost at next boot: iommu=pt is on")


def test_an_unknown_boot_loader_is_a_skip_naming_what_was_read(tmp_path):
    tree = ready_host(tmp_path / "h")
    tree.remove("/etc/default/grub")
    f = scan(tree, "VFIO-016")["host"]
    assert f.status == "skip" and "/etc/default/grub: missing" in f.message


# -- VFIO-017 -----------------------------------------------------------------------------------------

@pytest.fixture
def ws(tmp_path):
    tree = workstation(tmp_path / "ws")
    tree.bind(GPU, "vfio-pci")
    tree.bind(AUDIO, "vfio-pci")
    return tree


def test_a_runtime_binding_is_lost_at_next_boot(ws):
    f = scan(ws, "VFIO-017", devices=[GPU])[GPU]
    assert f.status == "fail" and f.message.startswith("works now, lost at next boot")
    assert f.remediation[0].action["kind"] == "vfio-ids"  # the same persistent step VFIO-013 gives


def test_ids_with_a_softdep_keep_it(ws):
    ws.vfio_ids_at_boot(["10de:2204", "10de:1aef"], softdeps=["nvidia"])
    f = scan(ws, "VFIO-017", devices=[GPU])[GPU]
    assert f.status == "pass" and "ids=10de:2204 in /etc/modprobe.d/vfio.conf" in f.message


def test_ids_without_anything_that_loads_vfio_pci_first(ws):
    ws.remove("/etc/modules")  # the fixture's host loads vfio_pci from it
    ws.vfio_ids_at_boot(["10de:2204", "10de:1aef"])
    f = scan(ws, "VFIO-017", devices=[GPU])[GPU]
    assert f.status == "fail" and "nothing loads vfio-pci before its host driver" in f.message


def test_a_modules_load_entry_loads_it_first(ws):
    ws.vfio_ids_at_boot(["10de:2204"])
    ws.write("/etc/modules-load.d/vfio.conf", "vfio\nvfio_pci\n")
    assert scan(ws, "VFIO-017", devices=[GPU])[GPU].status == "pass"


def test_ids_that_also_take_a_device_the_host_keeps(ws):
    ws.bind("0000:06:01.0", "vfio-pci")
    ws.vfio_ids_at_boot(["8086:100e"], softdeps=["e1000"])
    f = scan(ws, "VFIO-017", devices=["06:01.0"])["0000:06:01.0"]
    assert f.status == "fail" and "takes 0000:06:02.0 (on e1000) too, which the host keeps" in f.message


def test_driverctl_and_udev_keep_it_by_address(ws):
    ws.write(f"/etc/driverctl.d/pci-{GPU}", "vfio-pci\n")
    assert "driverctl override" in scan(ws, "VFIO-017", devices=[GPU])[GPU].message
    ws.write(f"/etc/udev/rules.d/70-vfio-pci-{AUDIO.replace(':', '-')}.rules",
             f'ACTION=="add", SUBSYSTEM=="pci", KERNEL=="{AUDIO}", ATTR{{driver_override}}="vfio-pci"\n')
    f = scan(ws, "VFIO-017", devices=[AUDIO])[AUDIO]
    assert f.status == "pass" and "udev rule /etc/udev/rules.d/70-vfio-pci-0000-01-00.1.rules" in f.message


def test_not_on_vfio_pci_now_follows_from_vfio_013(tmp_path):
    f = scan(workstation(tmp_path / "ws"), "VFIO-017", devices=[GPU])[GPU]
    assert f.status == "skip" and f.message.startswith("follows from VFIO-013")


def test_a_vf_count_set_by_hand_is_lost_at_next_boot(tmp_path):
    tree = workstation(tmp_path / "ws")
    tree.enable_vfs(PF, 4, 30, "1520")
    f = scan(tree, "VFIO-017", vfs=[f"{PF}=4"])[PF]
    assert f.status == "fail" and f.message.startswith("works now, lost at next boot: 4 VFs exist now")
    assert f.remediation[0].action["kind"] == "sriov-persist"
    tree.write("/etc/udev/rules.d/70-vfio-scan-sriov-0000-02-00.0.rules",
               f'ACTION=="add|bind", SUBSYSTEM=="pci", KERNEL=="{PF}", ATTR{{sriov_numvfs}}="4"\n')
    assert scan(tree, "VFIO-017", vfs=[f"{PF}=4"])[PF].status == "pass"


def test_what_a_reboot_undoes_has_its_own_status_line(ws):
    from clihelpers import run_cli

    args = ["scan", "--root", str(ws.root), "--device", GPU, "--device", AUDIO]
    table = run_cli(*args)
    lines = table.stdout.splitlines()
    assert lines[0].startswith("Readiness: NOT_READY")  # the verdict first, what a reboot undoes beside it
    assert lines[1] == f"Next boot: works now, lost at next boot — VFIO-017 {GPU}, VFIO-017 {AUDIO}"
    report = json.loads(run_cli(*args, "--format", "json", "--validate").stdout)
    assert report["summary"]["lost_at_next_boot"] == 2
    ws.vfio_ids_at_boot(["10de:2204", "10de:1aef"], softdeps=["nvidia"])  # now kept at boot
    table = run_cli(*args)
    assert "Next boot:" not in table.stdout
    assert json.loads(run_cli(*args, "--format", "json").stdout)["summary"]["lost_at_next_boot"] == 0


# -- VFIO-007: vfio_pci loaded now, and at every boot ---------------------------------------------

def modules_finding(tree, **scan_kw):
    rules = [r for r in _REGISTRY.sorted_rules() if r.id == "VFIO-007"]
    report = scan_host(TreeHost(str(tree.root)), rules, Scan(**scan_kw))
    (finding,) = report.findings
    return finding


def test_vfio_pci_loaded_by_hand_is_lost_at_next_boot(tmp_path):
    tree = ready_host(tmp_path / "h")
    tree.remove("/etc/modules")
    f = modules_finding(tree)
    assert f.status == "fail" and f.message.startswith("works now, lost at next boot: vfio (loaded)")
    assert "nothing loads vfio_pci at boot" in f.message
    (step,) = f.remediation  # nothing to load now: only what loads it at every boot
    assert step.persistent and step.action["kind"] == "modules-load"
    assert step.action["file"] == "/etc/modules-load.d/vfio.conf"


@pytest.mark.parametrize("path, text", [
    ("/etc/modules-load.d/vfio.conf", "vfio-pci\n"),
    ("/etc/modprobe.d/vfio.conf", "options vfio-pci ids=10de:2204\nsoftdep nouveau pre: vfio-pci\n"),
    ("/etc/driverctl.d/pci-0000:01:00.0", "vfio-pci\n"),
    ("/etc/udev/rules.d/70-vfio-pci-0000-01-00.0.rules",
     'ACTION=="add", SUBSYSTEM=="pci", KERNEL=="0000:01:00.0", ATTR{driver_override}="vfio-pci", '
     'RUN{builtin}+="kmod load vfio-pci"\n'),
    ("/etc/initramfs-tools/modules", "# modules\nvfio_pci\n"),
    ("/etc/dracut.conf.d/vfio.conf", 'force_drivers+=" vfio vfio_iommu_type1 vfio_pci "\n'),
    ("/etc/mkinitcpio.conf", "MODULES=(vfio_pci vfio vfio_iommu_type1)\nHOOKS=(base udev)\n"),
    ("/etc/libvirt/qemu.conf", "# libvirt loads vfio-pci when it detaches a hostdev\n"),
])
def test_whatever_loads_vfio_pci_at_boot_keeps_it(tmp_path, path, text):
    tree = ready_host(tmp_path / "h")
    tree.remove("/etc/modules")
    tree.write(path, text)
    f = modules_finding(tree)
    assert f.status == "pass", f.message


def test_a_managed_vmm_loads_it_itself(tmp_path):
    tree = ready_host(tmp_path / "h")
    tree.remove("/etc/modules")
    assert modules_finding(tree, managed=True).status == "pass"


def test_unreadable_configuration_is_no_false_fail(tmp_path):
    tree = ready_host(tmp_path / "h")
    tree.remove("/etc/modules")
    tree.write("/etc/modprobe.d/secret.conf", b"\xff\xfe not text")
    assert modules_finding(tree).status == "pass"


# -- systemd-boot with entries written by hand (Arch) -------------------------------------------------

LOADER_GUID = "4a67b082-0a4c-41cf-b6c7-440b29bb8c4f"
ARCH_ENTRY = "title   Arch Linux\nlinux   /vmlinuz-linux\ninitrd  /initramfs-linux.img\n"


def efi_string(text):
    """An efivarfs file: attributes (non-volatile, boot and runtime access), then UTF-16LE with a NUL."""
    return b"\x07\x00\x00\x00" + (text + "\0").encode("utf-16-le")


def systemd_boot_host(tmp_path, entries, loader_conf=None):
    tree = ready_host(tmp_path / "h")
    not_default_on(tree)
    tree.remove("/etc/default/grub")
    for name, options in entries.items():
        tree.write(f"/boot/loader/entries/{name}", ARCH_ENTRY + f"options {options}\n")
    if loader_conf is not None:
        tree.write("/boot/loader/loader.conf", loader_conf)
    return tree


def test_the_default_entry_of_loader_conf_is_the_next_boot(tmp_path):
    tree = systemd_boot_host(tmp_path, {"arch.conf": "root=/dev/sda2 rw", "arch-fallback.conf":
                                        "root=/dev/sda2 rw intel_iommu=on iommu=pt"}, "default arch.conf\ntimeout 3\n")
    f = scan(tree, "VFIO-016")["host"]
    assert f.status == "fail"
    assert "not in /boot/loader/entries/arch.conf" in f.message
    (step,) = f.remediation
    assert step.manual and "In the systemd-boot entry /boot/loader/entries/arch.conf, on its options line: add " \
                           "intel_iommu=on iommu=pt" in step.summary


def test_the_efi_default_wins_over_loader_conf(tmp_path):
    tree = systemd_boot_host(tmp_path, {"arch.conf": "root=/dev/sda2 rw", "vfio.conf":
                                        "root=/dev/sda2 rw intel_iommu=on iommu=pt"}, "default arch.conf\n")
    tree.write(f"/sys/firmware/efi/efivars/LoaderEntryDefault-{LOADER_GUID}", efi_string("vfio.conf"))
    f = scan(tree, "VFIO-016")["host"]
    assert f.status == "pass", f.message
    assert any(e.source == "/boot/loader/entries/vfio.conf" for e in f.evidence)


def test_without_a_default_the_entry_booted_now_is_the_next(tmp_path):
    tree = systemd_boot_host(tmp_path, {"arch.conf": "root=/dev/sda2 rw intel_iommu=on iommu=pt",
                                        "old.conf": "root=/dev/sda2 rw"})
    tree.write(f"/sys/firmware/efi/efivars/LoaderEntrySelected-{LOADER_GUID}", efi_string("arch.conf"))
    assert scan(tree, "VFIO-016")["host"].status == "pass"


def test_entries_with_no_way_to_tell_which_one_boots_skip(tmp_path):
    tree = systemd_boot_host(tmp_path, {"arch.conf": "root=/dev/sda2 rw"})
    tree.write(f"/sys/firmware/efi/efivars/LoaderEntrySelected-{LOADER_GUID}", b"\x07\x00\x00\x00\xff")  # garbled
    f = scan(tree, "VFIO-016")["host"]
    assert f.status == "skip" and "cannot tell what the next boot passes" in f.message
