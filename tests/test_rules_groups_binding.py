"""VFIO-012 group-isolation and VFIO-013 driver-binding over the realistic workstation tree.

``workstation`` (tests/hosttree.py): group 1 = root port 00:01.0 + GPU 01:00.0 (nvidia) + its
HDMI audio 01:00.1 (snd_hda_intel); group 5 = the PCH functions 00:1f.*, with the on-board NIC
00:1f.6 carrying the default route (eno1); the NVMe 03:00.0 holds the root filesystem; group 11 =
PCIe-to-PCI bridge 05:00.0 + two identical e1000 06:01.0 and 06:02.0 (8086:100e).

Every scenario checks what a user sees: the status, who is named with which driver and role,
the exact commands — and that those commands really do what they say when run against a copy of
the tree (``/sys`` and ``/etc`` rewritten to the copy).
"""

import json
import os
import shutil
import subprocess
from pathlib import Path

import jsonschema
import pytest

from clihelpers import load_schema, run_cli
from hosttree import RELEASE, workstation
from scanner.engine.runner import Scan
from scanner.host.tree import TreeHost
from scanner.engine.plugins import load_plugins
from scanner.engine.scanning import scan_host
from scanner.facts.targets import parse_all

RULES = ("VFIO-012", "VFIO-013")
_REGISTRY = load_plugins(autoload=False)

M = "/etc/modprobe.d/vfio.conf"
GPU, AUDIO, ROOT_PORT = "0000:01:00.0", "0000:01:00.1", "0000:00:01.0"
NIC_A, NIC_B, PCI_BRIDGE = "0000:06:01.0", "0000:06:02.0", "0000:05:00.0"
ONBOARD_NIC, PCH_AUDIO, NVME, IGB = "0000:00:1f.6", "0000:00:1f.3", "0000:03:00.0", "0000:02:00.0"
#: every bridge of the workstation tree: never in any command
BRIDGES = ("0000:00:01.0", "0000:00:1c.0", "0000:00:1d.0", "0000:00:06.0", "0000:05:00.0")


def scan(tree, *devices, rules=RULES):
    """Scan the tree for ``devices``: ``{(rule_id, subject): finding}`` (one finding per rule and target)."""
    chosen = [r for r in _REGISTRY.sorted_rules() if r.id in rules]
    assert sorted(r.id for r in chosen) == sorted(rules)
    report = scan_host(TreeHost(str(tree.root)), chosen, Scan(), selectors=parse_all(devices=list(devices))[0])
    found = {}
    for f in report.findings:
        key = (f.rule_id, f.subject)
        assert key not in found, f"{key} reported twice"
        assert f.status != "error", f"{f.rule_id} errored: {f.message}"
        found[key] = f
    assert len(found) == len(rules) * len(report.targets)
    check_commands(found.values())
    return found


def commands(finding):
    return [c for step in finding.remediation for c in step.commands]


def every_line(findings):
    return [line for f in findings for step in f.remediation for line in step.commands + step.undo]


def check_commands(findings):
    """What must hold for every command of every scenario."""
    lines = every_line(findings)
    for line in lines:
        assert "new_id" not in line
        for bridge in BRIDGES:
            assert bridge not in line, f"a bridge reached a command: {line}"
    if lines:
        proc = subprocess.run(["bash", "-n"], input="\n".join(lines) + "\n", capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr


def run_in_copy(tree, tmp_path, lines, name="copy"):
    """Run ``lines`` against a copy of the tree, ``/sys/`` and ``/etc/`` rewritten; shims record modprobe etc."""
    copy = tmp_path / name
    shutil.copytree(tree.root, copy, symlinks=True)
    shims = tmp_path / f"{name}-bin"
    shims.mkdir()
    calls = tmp_path / f"{name}-calls"
    for tool in ("modprobe", "update-initramfs", "dracut", "mkinitcpio", "driverctl"):
        (shims / tool).write_text(f'#!/bin/sh\necho "{tool} $*" >> "{calls}"\n')
        (shims / tool).chmod(0o755)
    (copy / "etc/modprobe.d").mkdir(parents=True, exist_ok=True)
    (copy / "etc/udev/rules.d").mkdir(parents=True, exist_ok=True)
    script = []
    for line in lines:
        rewritten = line.replace("/sys/", f"{copy}/sys/").replace("/etc/", f"{copy}/etc/")
        assert " /sys/" not in rewritten and " /etc/" not in rewritten
        script.append(rewritten)
    env = dict(os.environ, PATH=f"{shims}:{os.environ['PATH']}")
    proc = subprocess.run(["bash", "-euo", "pipefail", "-c", "\n".join(script)], capture_output=True, text=True,
                          env=env)
    assert proc.returncode == 0, proc.stderr
    return copy, (calls.read_text().splitlines() if calls.exists() else [])


def overrides(root):
    """driver_override of every device in a tree: {address: text}."""
    base = Path(root) / "sys/bus/pci/devices"
    return {p.name: (p / "driver_override").read_text() for p in sorted(base.iterdir())}


class TreeLike:
    """Just a root, for running commands again against an already changed copy."""

    def __init__(self, root):
        self.root = root


@pytest.fixture
def ws(tmp_path):
    return workstation(tmp_path / "ws")


# ======================================================================================
# VFIO-012 group-isolation
# ======================================================================================

def test_gpu_alone_fails_naming_its_audio_function_and_offers_to_bind_it(ws):
    f = scan(ws, "01:00.0")[("VFIO-012", GPU)]
    assert f.status == "fail" and f.severity == "high"
    assert f"{AUDIO} (10de:1aef Audio device, driver snd_hda_intel)" in f.message
    assert "sibling function" in f.message and "group 1 is not viable" in f.message
    assert ROOT_PORT not in f.message  # the root port holds nothing
    bridge = [e.value for e in f.evidence if e.source.endswith(ROOT_PORT)]
    assert bridge and "bridge" in bridge[0] and "stays on the host" in bridge[0] and "pcieport" in bridge[0]
    step, keep = f.remediation  # siblings cannot be moved away: no move-slot step
    assert step.phase == "binding" and not step.manual and not step.persistent
    assert list(step.commands) == [f"echo vfio-pci > /sys/bus/pci/devices/{AUDIO}/driver_override",
                                   f"echo {AUDIO} > /sys/bus/pci/devices/{AUDIO}/driver/unbind",
                                   f"echo {AUDIO} > /sys/bus/pci/drivers_probe"]
    assert "keeps it there at boot" in step.summary
    assert step.action["kind"] == "bind-vfio" and step.action["address"] == AUDIO
    assert step.action["role"] == "sibling" and step.action["for_target"] == GPU
    assert step.action["current_driver"] == "snd_hda_intel" and step.action["host_critical"] is None
    # the audio goes to the VM with the GPU at every boot too, not only now
    assert keep.persistent and keep.action["kind"] == "vfio-ids" and keep.action["ids"] == ["10de:2204", "10de:1aef"]


def test_gpu_with_its_audio_as_targets_passes_group_check_until_bound(ws):
    found = scan(ws, "01:00.0", "01:00.1")
    for target in (GPU, AUDIO):
        f = found[("VFIO-012", target)]
        assert f.status == "pass"
        assert ROOT_PORT in f.message and "never bound" in f.message
        assert "viable once" in f.message and "VFIO-013" in f.message
        assert found[("VFIO-013", target)].status == "fail"
    ws.bind(GPU, "vfio-pci")
    ws.bind(AUDIO, "vfio-pci")
    found = scan(ws, "01:00.0", "01:00.1")
    assert {k: f.status for k, f in found.items()} == {(r, t): "pass" for r in RULES for t in (GPU, AUDIO)}
    assert found[("VFIO-012", GPU)].message.endswith("the group is viable")
    assert found[("VFIO-013", GPU)].message == "bound to vfio-pci; /dev/vfio/1 exists"


@pytest.mark.parametrize("audio_driver, shown", [("vfio-pci", "on vfio-pci"), (None, "no driver"),
                                                 ("pci-stub", "on pci-stub")])
def test_sibling_on_vfio_or_unbound_does_not_hold_the_group(ws, audio_driver, shown):
    ws.bind(AUDIO, audio_driver)
    # kept off snd_hda_intel at boot too (else the group is viable now only: tests/test_group_mate_next_boot.py)
    ws.write(f"/lib/modules/{RELEASE}/modules.alias", "alias pci:v000010DEd*sv*sd*bc04sc03i00* snd_hda_intel\n")
    ws.write(f"/etc/udev/rules.d/70-vfio.rules", f'ACTION=="add", SUBSYSTEM=="pci", KERNEL=="{AUDIO}", '
                                                 'ATTR{driver_override}="vfio-pci"\n')
    f = scan(ws, "01:00.0")[("VFIO-012", GPU)]
    assert f.status == "pass"
    assert f"sibling function(s) {AUDIO} ({shown})" in f.message
    assert f.remediation == ()


def test_alone_in_its_group(ws):
    f = scan(ws, "02:00.0")[("VFIO-012", IGB)]
    assert f.status == "pass" and f.message == "alone in IOMMU group 7"


def test_unrelated_twin_nic_blocks_and_the_card_can_move(ws):
    f = scan(ws, "06:01.0")[("VFIO-012", NIC_A)]
    assert f.status == "fail"
    assert f"{NIC_B} (8086:100e Ethernet controller, driver e1000) — unrelated device sharing the group" in f.message
    bind, move = f.remediation
    assert bind.action["address"] == NIC_B and bind.action["role"] == "unrelated"
    assert list(bind.commands) == [f"echo vfio-pci > /sys/bus/pci/devices/{NIC_B}/driver_override",
                                   f"echo {NIC_B} > /sys/bus/pci/devices/{NIC_B}/driver/unbind",
                                   f"echo {NIC_B} > /sys/bus/pci/drivers_probe"]
    assert move.manual and move.commands == () and move.action["kind"] == "move-slot"
    assert "slot" in move.summary and NIC_B in move.summary
    roles = {e.source.rsplit("/", 1)[-1]: e.value for e in f.evidence}
    assert "bridge (PCI bridge)" in roles[PCI_BRIDGE] and "never bound" in roles[PCI_BRIDGE]


def test_member_bind_step_really_binds_that_member_only(ws, tmp_path):
    f = scan(ws, "06:01.0")[("VFIO-012", NIC_A)]
    before = overrides(ws.root)
    copy, calls = run_in_copy(ws, tmp_path, f.remediation[0].commands)
    after = overrides(copy)
    assert after[NIC_B] == "vfio-pci\n"
    assert {a: t for a, t in after.items() if a != NIC_B} == {a: t for a, t in before.items() if a != NIC_B}
    assert (copy / "sys/bus/pci/drivers/e1000/unbind").read_text() == f"{NIC_B}\n"
    assert (copy / "sys/bus/pci/drivers_probe").read_text() == f"{NIC_B}\n"
    assert calls == []  # vfio_pci is loaded on this host


def default_route_on(tree, address, iface):
    tree.write("/proc/net/route", "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\n"
                                  f"{iface}\t00000000\t0100A8C0\t0003\t0\t0\t100\t00000000\n")
    tree.link_to(f"/sys/class/net/{iface}/device", tree.device_dir(address))


def test_member_carrying_the_default_route_is_never_offered(ws):
    default_route_on(ws, NIC_B, "enp6s2")
    f = scan(ws, "06:01.0")[("VFIO-012", NIC_A)]
    assert f.status == "fail"
    assert "default route (enp6s2)" in f.message and "only fix" in f.message
    assert commands(f) == []
    [move] = f.remediation
    assert move.manual and move.action["kind"] == "move-slot"
    assert NIC_B in move.action["host_critical"]
    assert move.summary.startswith(f"{NIC_B} must stay with the host, so the only fix is this: move the card at {NIC_A}")
    assert any(e.source.startswith("/proc/net/route") and "enp6s2" in e.value for e in f.evidence)


def test_target_that_is_the_hosts_own_gets_no_group_commands(ws):
    f = scan(ws, "00:1f.6")[("VFIO-012", ONBOARD_NIC)]
    assert f.status == "fail" and "The target itself is the host's own" in f.message
    assert commands(f) == []


def test_pch_function_beside_the_onboard_nic(ws):
    f = scan(ws, "00:1f.3")[("VFIO-012", PCH_AUDIO)]
    assert f.status == "fail"
    assert f"{ONBOARD_NIC} (8086:15bc Ethernet controller, driver e1000e)" in f.message
    assert "default route (eno1)" in f.message
    assert "0000:00:1f.4 (8086:a323 SMBus, driver i801_smbus)" in f.message
    assert commands(f) == []  # the group can never be given away: nothing is bound for nothing
    [step] = f.remediation
    assert step.manual and "cannot be moved" in step.summary and "add-in card" in step.summary


def test_member_holding_the_root_filesystem_is_never_offered(ws):
    ws.pci_device("0000:04:00.0", "1b21", "2142", "0c0330", driver="xhci_hcd", group="9", parent="0000:00:1d.0")
    f = scan(ws, "04:00.0")[("VFIO-012", "0000:04:00.0")]
    assert f.status == "fail"
    assert f"{NVME} (144d:a808 Non-Volatile memory controller, driver nvme)" in f.message
    assert "root filesystem" in f.message
    assert commands(f) == []
    assert f.remediation[-1].action["host_critical"][NVME].startswith("it holds the host's root filesystem")


def test_no_iommu_group_points_at_vfio_005(ws):
    ws.remove(f"{ws.device_dir(IGB)}/iommu_group")
    found = scan(ws, "02:00.0")
    for rule in RULES:
        f = found[(rule, IGB)]
        assert f.status == "fail" and "VFIO-005" in f.message and "no IOMMU group" in f.message
        assert commands(f) == []
        assert f.remediation[0].action == {"kind": "see-rule", "rules": ["VFIO-005"]}


def test_acs_override_is_a_security_downgrade(ws):
    ws.cmdline("BOOT_IMAGE=/boot/vmlinuz root=/dev/nvme0n1p2 ro intel_iommu=on pcie_acs_override=downstream,multifunction")
    found = scan(ws, "02:00.0", "06:01.0")
    alone = found[("VFIO-012", IGB)]
    assert alone.status == "warn" and alone.severity == "medium"
    assert "pcie_acs_override" in alone.message and "security downgrade" in alone.message
    assert any(e.source == "/proc/cmdline" and "pcie_acs_override=downstream,multifunction" in e.value
               for e in alone.evidence)
    shared = found[("VFIO-012", NIC_A)]
    assert shared.status == "fail" and "security downgrade" in shared.message


def test_bridge_as_target(ws):
    found = scan(ws, "00:01.0")
    assert found[("VFIO-012", ROOT_PORT)].status == "skip"
    f = found[("VFIO-013", ROOT_PORT)]
    assert f.status == "fail" and "bridge" in f.message and commands(f) == []


# ======================================================================================
# VFIO-013 driver-binding
# ======================================================================================

def test_gpu_on_nvidia_runtime_and_boot_fix(ws):
    f = scan(ws, "01:00.0")[("VFIO-013", GPU)]
    assert f.status == "fail" and f.severity == "high"
    assert "bound to nvidia" in f.message and "/dev/vfio/1" in f.message
    now, boot = f.remediation
    assert list(now.commands) == [f"echo vfio-pci > /sys/bus/pci/devices/{GPU}/driver_override",
                                  f"echo {GPU} > /sys/bus/pci/devices/{GPU}/driver/unbind",
                                  f"echo {GPU} > /sys/bus/pci/drivers_probe"]
    assert list(now.undo) == [f"echo > /sys/bus/pci/devices/{GPU}/driver_override",
                              f"echo {GPU} > /sys/bus/pci/devices/{GPU}/driver/unbind",
                              f"echo {GPU} > /sys/bus/pci/drivers_probe"]
    assert now.phase == "binding" and not now.persistent and not now.manual
    assert now.action == {"kind": "bind-vfio", "address": GPU, "ids": "10de:2204", "driver": "vfio-pci", "current_driver": "nvidia",
                          "driver_override": None, "group": "1", "load_module": False, "host_critical": None,
                          "role": "target", "for_target": GPU}
    assert boot.persistent and boot.requires_reboot and boot.phase == "binding"
    # the GPU's HDMI audio shares its slot and group: it is kept on vfio-pci at boot with it
    lines = ["options vfio-pci ids=10de:2204,10de:1aef", "softdep nvidia pre: vfio-pci",
             "softdep snd_hda_intel pre: vfio-pci"]
    assert list(boot.commands) == [f"grep -qxF -- '{line}' /etc/modprobe.d/vfio.conf 2>/dev/null || "
                                   f"printf '%s\\n' '{line}' >> /etc/modprobe.d/vfio.conf" for line in lines] + [
                                   "update-initramfs -u -k all"]
    assert boot.action == {"kind": "vfio-ids", "ids": ["10de:2204", "10de:1aef"], "softdeps": ["nvidia", "snd_hda_intel"],
                           "file": "/etc/modprobe.d/vfio.conf", "lines": lines, "initramfs": "update-initramfs",
                           "files": []}


def test_runtime_fix_sets_driver_override_for_exactly_that_device(ws, tmp_path):
    f = scan(ws, "01:00.0")[("VFIO-013", GPU)]
    before = overrides(ws.root)
    assert set(before.values()) == {"(null)\n"}
    copy, _ = run_in_copy(ws, tmp_path, f.remediation[0].commands)
    after = overrides(copy)
    assert after[GPU] == "vfio-pci\n"
    assert [a for a in after if after[a] != before[a]] == [GPU]
    assert (copy / "sys/bus/pci/drivers/nvidia/unbind").read_text() == f"{GPU}\n"
    assert (copy / "sys/bus/pci/drivers_probe").read_text() == f"{GPU}\n"
    # and the undo lines clear it again
    undone, _ = run_in_copy(TreeLike(copy), tmp_path, f.remediation[0].undo, name="undone")
    assert overrides(undone)[GPU].strip() == ""


def test_boot_fix_writes_the_modprobe_file(ws, tmp_path):
    found = scan(ws, "01:00.0", "01:00.1")
    boot = found[("VFIO-013", GPU)].remediation[1]
    assert boot.action["ids"] == ["10de:2204", "10de:1aef"]
    assert boot.action["softdeps"] == ["nvidia", "snd_hda_intel"]
    # one file for every target: both findings write the same content
    assert found[("VFIO-013", AUDIO)].remediation[1].commands == boot.commands
    copy, calls = run_in_copy(ws, tmp_path, boot.commands)
    assert (copy / "etc/modprobe.d/vfio.conf").read_text() == (
        "options vfio-pci ids=10de:2204,10de:1aef\nsoftdep nvidia pre: vfio-pci\nsoftdep snd_hda_intel pre: vfio-pci\n")
    assert calls == ["update-initramfs -u -k all"]


def test_modprobe_first_when_vfio_pci_is_not_loaded(ws, tmp_path):
    ws.modules(loaded=["vfio", "vfio_iommu_type1", "kvm_intel", "kvm"],
               installed=["vfio", "vfio_iommu_type1", "vfio_pci", "vfio_pci_core"])
    f = scan(ws, "02:00.0")[("VFIO-013", IGB)]
    now = f.remediation[0]
    assert list(now.commands) == ["modprobe vfio-pci",
                                  f"echo vfio-pci > /sys/bus/pci/devices/{IGB}/driver_override",
                                  f"echo {IGB} > /sys/bus/pci/devices/{IGB}/driver/unbind",
                                  f"echo {IGB} > /sys/bus/pci/drivers_probe"]
    assert now.action["load_module"] is True
    copy, calls = run_in_copy(ws, tmp_path, now.commands)
    assert calls == ["modprobe vfio-pci"] and overrides(copy)[IGB] == "vfio-pci\n"


def test_unbound_target_is_not_unbound(ws):
    ws.bind(IGB, None)
    ws.write(f"{ws.device_dir(IGB)}/driver_override", "vfio-pci\n")
    ws.modules(loaded=["vfio", "vfio_iommu_type1"], installed=["vfio", "vfio_iommu_type1", "vfio_pci"])
    f = scan(ws, "02:00.0")[("VFIO-013", IGB)]
    assert f.status == "fail" and "no driver bound" in f.message and "vfio_pci is not loaded" in f.message
    assert list(f.remediation[0].commands) == ["modprobe vfio-pci",
                                               f"echo vfio-pci > /sys/bus/pci/devices/{IGB}/driver_override",
                                               f"echo {IGB} > /sys/bus/pci/drivers_probe"]


def test_driverctl_when_the_host_has_it(ws):
    ws.write("/usr/sbin/driverctl", "#!/bin/sh\n", mode=0o755)
    f = scan(ws, "06:01.0")[("VFIO-013", NIC_A)]
    now, boot = f.remediation
    assert list(boot.commands) == [f"driverctl set-override {NIC_A} vfio-pci"]
    assert list(boot.undo) == [f"driverctl unset-override {NIC_A}"]
    assert boot.persistent and not boot.requires_reboot
    assert boot.action == {"kind": "driverctl", "address": NIC_A, "ids": "8086:100e", "driver": "vfio-pci"}


def test_identical_twin_on_the_host_keeps_to_driver_override(ws, tmp_path):
    f = scan(ws, "06:01.0")[("VFIO-013", NIC_A)]
    now, boot = f.remediation
    assert "ids=8086:100e would also take" in boot.summary and NIC_B in boot.summary
    assert not any("ids=" in c for c in boot.commands)
    rule = (f'ACTION=="add", SUBSYSTEM=="pci", KERNEL=="{NIC_A}", ATTR{{driver_override}}="vfio-pci", '
            'RUN{builtin}+="kmod load vfio-pci"')
    path = "/etc/udev/rules.d/70-vfio-pci-0000-06-01.0.rules"
    assert boot.action == {"kind": "udev-driver-override", "address": NIC_A, "driver": "vfio-pci", "file": path, "rule": rule,
                           "twins": [NIC_B], "files": [{"path": path, "text": None, "reason": None}]}
    copy, _ = run_in_copy(ws, tmp_path, boot.commands)
    assert (copy / path.lstrip("/")).read_text() == rule + "\n"


def test_both_twins_as_targets_may_use_ids(ws):
    found = scan(ws, "8086:100e")
    for nic in (NIC_A, NIC_B):
        boot = found[("VFIO-013", nic)].remediation[1]
        assert boot.action["kind"] == "vfio-ids"
        assert boot.action["ids"] == ["8086:100e"] and boot.action["softdeps"] == ["e1000"]
    assert found[("VFIO-012", NIC_A)].status == "pass"


def test_twins_in_other_groups_count_for_every_target(ws):
    """ids= is judged against every device of the host, whatever its IOMMU group: one twin left on
    the host keeps each target to a udev rule naming it, a twin already on vfio-pci is no obstacle,
    and once every twin is a target they all get the same one modprobe.d step naming all of them."""
    third, on_vfio = "0000:07:00.0", "0000:08:00.0"
    ws.pci_device(third, "8086", "100e", "020000", driver="e1000", group="21")
    ws.pci_device(on_vfio, "8086", "100e", "020000", driver="vfio-pci", group="22")
    found = scan(ws, "06:01.0", "06:02.0")
    for nic in (NIC_A, NIC_B):
        boot = found[("VFIO-013", nic)].remediation[1]
        assert boot.action["kind"] == "udev-driver-override" and boot.action["twins"] == [third]
    found = scan(ws, "8086:100e")
    steps = [found[("VFIO-013", nic)].remediation[1] for nic in (NIC_A, NIC_B, third)]
    assert [s.action["kind"] for s in steps] == ["vfio-ids"] * 3 and steps[1] == steps[0] == steps[2]
    assert steps[0].action["ids"] == ["8086:100e"] and steps[0].action["softdeps"] == ["e1000"]
    assert "addresses" not in steps[0].action  # each covered target's finding has the step; no N² list


@pytest.mark.parametrize("tool, rebuild", [("dracut", "dracut -f --regenerate-all"), ("mkinitcpio", "mkinitcpio -P"),
                                           (None, None)])
def test_initramfs_rebuild_of_the_detected_tool(ws, tool, rebuild):
    ws.remove("/usr/sbin/update-initramfs")
    if tool:
        ws.write(f"/usr/bin/{tool}", "#!/bin/sh\n", mode=0o755)
    boot = scan(ws, "02:00.0")[("VFIO-013", IGB)].remediation[1]
    assert boot.action["initramfs"] == tool
    if rebuild:
        assert list(boot.commands)[-1] == rebuild
    else:
        assert all(M in c for c in boot.commands) and "none detected" in boot.summary


def test_softdep_names_the_module_not_the_driver(ws):
    ws.link_to("/sys/bus/pci/drivers/xhci_hcd/module", "/sys/module/xhci_pci")
    ws.mkdir("/sys/module/xhci_pci")
    boot = scan(ws, "00:14.0")[("VFIO-013", "0000:00:14.0")].remediation[1]
    assert boot.action["softdeps"] == ["xhci_pci"]
    assert any("'softdep xhci_pci pre: vfio-pci'" in c for c in boot.commands)


def test_builtin_vfio_pci_takes_ids_from_the_command_line(ws):
    ws.modules(loaded=["vfio_iommu_type1"], builtin=["vfio", "vfio_pci"], installed=["vfio_iommu_type1"])
    boot = scan(ws, "02:00.0")[("VFIO-013", IGB)].remediation[1]
    assert boot.phase == "boot" and boot.action["kind"] == "kernel-cmdline"
    assert boot.action["add"] == ["vfio-pci.ids=8086:1521"]
    assert "update-grub" in boot.commands


@pytest.mark.parametrize("address, words", [(ONBOARD_NIC, ["default route (eno1)", "network"]),
                                            (NVME, ["root filesystem", "259:0"])])
def test_host_critical_target_gets_no_command(ws, address, words):
    f = scan(ws, address)[("VFIO-013", address)]
    assert f.status == "fail" and f.message.startswith("HOST DEVICE:")
    for word in words:
        assert word in f.message
    [step] = f.remediation
    assert step.manual and step.commands == () and step.undo == ()
    assert step.action["kind"] == "bind-vfio" and step.action["address"] == address
    assert all(w in step.action["host_critical"] for w in words)


def test_bridged_default_route_is_still_the_hosts_network(ws):
    """A Proxmox-style host: the route is on vmbr0, whose port is the on-board NIC."""
    ws.write("/proc/net/route", "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\n"
                                "vmbr0\t00000000\t0100A8C0\t0003\t0\t0\t0\t00000000\n")
    ws.remove("/sys/class/net/eno1/device")
    ws.link_to("/sys/class/net/enp2s0/device", ws.device_dir(IGB))
    ws.mkdir("/sys/devices/virtual/net/vmbr0")
    ws.link_to("/sys/class/net/vmbr0", "/sys/devices/virtual/net/vmbr0")
    ws.link_to("/sys/devices/virtual/net/vmbr0/lower_enp2s0", "/sys/class/net/enp2s0")
    f = scan(ws, "02:00.0")[("VFIO-013", IGB)]
    assert f.message.startswith("HOST DEVICE:") and "enp2s0 (under vmbr0)" in f.message
    assert commands(f) == []


def test_bound_to_vfio_without_its_dev_node(ws):
    ws.bind(IGB, "vfio-pci")
    ws.remove("/dev/vfio/7")
    f = scan(ws, "02:00.0")[("VFIO-013", IGB)]
    assert f.status == "fail" and "/dev/vfio/7 does not exist" in f.message
    assert f.remediation[0].phase == "access" and f.remediation[0].manual


def test_variant_driver_passes(ws):
    ws.bind(IGB, "igb_vfio_pci")
    ws.write("/dev/vfio/7", "")
    f = scan(ws, "02:00.0")[("VFIO-013", IGB)]
    assert f.status == "pass" and f.message == "bound to igb_vfio_pci; /dev/vfio/7 exists"


def test_without_targets_both_rules_skip(ws):
    rules = [r for r in _REGISTRY.sorted_rules() if r.id in RULES]
    report = scan_host(TreeHost(str(ws.root)), rules, Scan())
    assert [(f.rule_id, f.status) for f in report.findings] == [("VFIO-012", "skip"), ("VFIO-013", "skip")]


# ======================================================================================
# through the real CLI
# ======================================================================================

def test_cli_scan_json(ws):
    proc = run_cli("scan", "--root", ws.root, "--format", "json", "--rule", "VFIO-012", "--rule", "VFIO-013",
                   "--device", "01:00.0", "--device", "06:01.0")
    assert proc.returncode == 1, proc.stderr
    doc = json.loads(proc.stdout)
    got = {(f["rule_id"], f["subject"]): f for f in doc["findings"]}
    assert {k: f["status"] for k, f in got.items()} == {
        ("VFIO-012", GPU): "fail", ("VFIO-012", NIC_A): "fail", ("VFIO-013", GPU): "fail", ("VFIO-013", NIC_A): "fail"}
    step = got[("VFIO-012", GPU)]["remediation"][0]
    assert step["action"]["kind"] == "bind-vfio" and step["action"]["address"] == AUDIO
    assert got[("VFIO-013", NIC_A)]["remediation"][1]["action"]["kind"] == "udev-driver-override"
    assert doc["summary"]["readiness"] == "NOT_READY"
    assert list(jsonschema.Draft202012Validator(load_schema()).iter_errors(doc)) == []
    proc = run_cli("scan", "--root", ws.root, "--rule", "VFIO-013", "--device", "00:1f.6")
    assert proc.returncode == 1
    assert "HOST DEVICE" in proc.stdout and "default route (eno1)" in " ".join(proc.stdout.split())


def test_cli_explain_warns_against_new_id():
    proc = run_cli("explain", "VFIO-013")
    assert proc.returncode == 0
    assert "new_id" in proc.stdout and "driver_override" in proc.stdout and "driverctl" in proc.stdout
    proc = run_cli("explain", "group-isolation")
    assert proc.returncode == 0 and "VFIO-012" in proc.stdout and "pcie_acs_override" in proc.stdout


def test_driver_binding_evidence_names_the_devices_own_group_node_not_all_of_dev_vfio(ws):
    """Thousands of VFs on vfio-pci make thousands of /dev/vfio nodes: each finding shows its own."""
    for group in range(100, 140):
        ws.write(f"/dev/vfio/{group}", "")
    ws.bind("0000:02:00.0", "vfio-pci")  # the I350, alone in group 7: /dev/vfio/7 is made with it
    bound = {e.source: e.value for e in scan(ws, "02:00.0")[("VFIO-013", "0000:02:00.0")].evidence}
    assert bound["/dev/vfio/7"] == "present" and "/dev/vfio" not in bound
    ws.remove("/dev/vfio/7")
    missing = scan(ws, "02:00.0")[("VFIO-013", "0000:02:00.0")]
    assert missing.status == "fail"
    shown = {e.source: e.value for e in missing.evidence}["/dev/vfio/7"]
    assert shown.startswith("absent; /dev/vfio has: ") and shown.endswith("(41 in all)")
    assert len(shown.split(":", 1)[1].split("...")[0].split()) == 8
