"""VFIO-011 sriov-pf over the workstation fixture: what a user sees for each state of a PF.

The workstation's I350 (0000:02:00.0, igb, sriov_totalvfs 7, sriov_numvfs 0, autoprobe 1) is the
PF; its VFs sit at routing ids offset 128, stride 4 (0000:02:10.0, 0000:02:10.4, ...), as on the
real card. The kernel behaviour the fixes rely on was checked on Debian's 6.1 kernel under QEMU
with an SR-IOV NVMe (see ``KernelModel``); here the commands are checked for order, shell syntax,
and that they leave the wanted values in a copy of the tree.
"""

import re
import shutil
import subprocess

import pytest

from clihelpers import scan_json
from hosttree import workstation
from scanner.engine.runner import Scan
from scanner.host.tree import TreeHost
from scanner.engine.plugins import load_plugins
from scanner.engine.scanning import scan_host
from scanner.facts.targets import parse_all

PF = "0000:02:00.0"
NVME = "0000:03:00.0"
GPU = "0000:01:00.0"
SYS = f"/sys/bus/pci/devices/{PF}"
AUTOPROBE_0 = f"echo 0 > {SYS}/sriov_drivers_autoprobe"
NUMVFS_0 = f"echo 0 > {SYS}/sriov_numvfs"
UDEV_FILE = "/etc/udev/rules.d/70-vfio-scan-sriov-0000-02-00.0.rules"
_REGISTRY = load_plugins(autoload=False)


def scan(tree, devices=(), vfs=(), rule="VFIO-011"):
    """Scan a tree for one device rule: ``{subject: finding}``, exactly one finding per target."""
    rules = [r for r in _REGISTRY.sorted_rules() if r.id == rule]
    assert len(rules) == 1
    selectors, requests = parse_all(devices=devices, vfs=vfs)
    report = scan_host(TreeHost(str(tree.root)), rules, Scan(), selectors=selectors, vfs=requests)
    found = {}
    for f in report.findings:
        assert f.rule_id == rule
        assert f.status != "error", f.message
        assert f.subject not in found, f"two findings for {f.subject}"
        found[f.subject] = f
    assert sorted(found) == sorted(report.targets)
    return found


def commands(finding):
    return [c for step in finding.remediation for c in step.commands]


@pytest.fixture
def ws(tmp_path):
    return workstation(tmp_path / "ws")


def assert_valid_shell(lines):
    for line in lines:
        proc = subprocess.run(["bash", "-n", "-c", line], capture_output=True, text=True)
        assert proc.returncode == 0, f"not valid shell: {line!r}: {proc.stderr}"


def run_against_copy(tree, finding, tmp_path, phases=("modules", "sriov")):
    """Copy the tree, point every /sys and /etc path of the fix at the copy, run it with bash.
    ``udevadm`` is a stub that records its arguments. Returns the copy's root."""
    copy = tmp_path / "copy"
    shutil.copytree(tree.root, copy, symlinks=True)
    (copy / "etc/udev/rules.d").mkdir(parents=True, exist_ok=True)
    stub = tmp_path / "bin"
    stub.mkdir()
    (stub / "udevadm").write_text(f'#!/bin/sh\necho "$@" >> {tmp_path}/udevadm.log\n')
    (stub / "udevadm").chmod(0o755)
    for step in finding.remediation:
        if step.phase not in phases or step.manual:
            continue
        for line in step.commands:
            line = line.replace("/sys/", f"{copy}/sys/").replace("/etc/udev/", f"{copy}/etc/udev/")
            subprocess.run(["bash", "-e", "-c", line], check=True, env={"PATH": f"{stub}:/usr/bin:/bin"})
    return copy


class KernelModel:
    """What drivers/pci/iov.c does with the writes (observed on 6.1 under QEMU):
    ``> totalvfs`` -ERANGE; no PF driver -ENOENT ("no driver bound to device; cannot configure
    SR-IOV"); non-zero to another non-zero -EBUSY ("N VFs already enabled. Disable before enabling
    M VFs"); the same count again is a no-op; VFs are probed by host drivers when
    ``sriov_drivers_autoprobe`` is 1 at the moment they are created."""

    WRITE = re.compile(r"^echo (\S+) > /sys/bus/pci/devices/(\S+)/(sriov_numvfs|sriov_drivers_autoprobe)$")

    def __init__(self, total, numvfs, autoprobe, driver=True):
        self.total, self.numvfs, self.autoprobe, self.driver = total, numvfs, autoprobe, driver
        self.host_probed_vfs = 0

    def run(self, lines):
        for line in lines:
            m = self.WRITE.match(line)
            assert m, f"unexpected command for the model: {line}"
            value, _, name = int(m.group(1)), m.group(2), m.group(3)
            if name == "sriov_drivers_autoprobe":
                self.autoprobe = value
                continue
            if value > self.total:
                raise OSError("ERANGE: Numerical result out of range")
            if not self.driver:
                raise OSError("ENOENT: no driver bound to device; cannot configure SR-IOV")
            if value == self.numvfs:
                continue
            if self.numvfs and value:
                raise OSError(f"EBUSY: {self.numvfs} VFs already enabled. Disable before enabling {value} VFs")
            self.numvfs = value
            self.host_probed_vfs = value if self.autoprobe else 0


# ---------------------------------------------------------------------------------------------
# not a PF request
# ---------------------------------------------------------------------------------------------

def test_target_without_vfs_request_is_skipped_with_the_reason(ws):
    found = scan(ws, devices=[GPU, PF])
    assert found[GPU].status == "skip"
    assert "no VFs requested; use --vfs 0000:01:00.0=N" in found[GPU].message
    assert found[PF].status == "skip"
    assert "SR-IOV capable (7 VFs max, 0 enabled)" in found[PF].message
    assert found[PF].remediation == ()


def test_vf_target_passes_and_reports_its_pf(ws):
    vfs = ws.enable_vfs(PF, 2, 20, "1520", driver="igbvf")
    assert vfs == ["0000:02:10.0", "0000:02:10.4"]
    found = scan(ws, devices=vfs)
    for n, vf in enumerate(vfs):
        f = found[vf]
        assert f.status == "pass"
        assert f"virtual function virtfn{n} of PF {PF}" in f.message
        assert "driver igb" in f.message and "2 VFs enabled" in f.message
        assert f.evidence[0].source == f"/sys/bus/pci/devices/{vf}/physfn" and f.evidence[0].value == PF


def test_vfs_requested_on_a_vf_fails_naming_the_pf(ws):
    (vf,) = ws.enable_vfs(PF, 1, 20, "1520")
    f = scan(ws, vfs=[f"{vf}=2"])[vf]
    assert f.status == "fail"
    assert "itself a virtual function" in f.message and f"--vfs {PF}=2" in f.message
    assert commands(f) == []


# ---------------------------------------------------------------------------------------------
# no command can fix it
# ---------------------------------------------------------------------------------------------

def test_device_without_sriov_fails_with_a_manual_firmware_step(ws):
    f = scan(ws, vfs=[f"{NVME}=2"])[NVME]
    assert f.status == "fail" and f.severity == "high"
    assert f.message.startswith("no SR-IOV capability: no sriov_totalvfs file; 2 VFs requested")
    assert f.remediation and all(s.manual for s in f.remediation)
    assert commands(f) == []
    summary = f.remediation[-1].summary
    assert '"SR-IOV Support"' in summary and "mlxconfig -d 0000:03:00.0 set SRIOV_EN=1 NUM_OF_VFS=2" in summary
    assert f.remediation[-1].phase == "firmware" and f.remediation[-1].requires_reboot


def test_sriov_totalvfs_zero_is_no_capability(ws):
    ws.write(f"{ws.device_dir(NVME)}/sriov_totalvfs", "0\n")
    ws.write(f"{ws.device_dir(NVME)}/sriov_numvfs", "0\n")
    f = scan(ws, vfs=[f"{NVME}=1"])[NVME]
    assert f.status == "fail"
    assert "sriov_totalvfs is 0; 1 VF requested" in f.message
    assert commands(f) == []


def test_kernel_without_pci_iov_is_named(ws):
    text = ws.path("/boot/config-6.1.0-56-amd64").read_text().replace("CONFIG_PCI_IOV=y", "# CONFIG_PCI_IOV is not set")
    ws.write("/boot/config-6.1.0-56-amd64", text)
    f = scan(ws, vfs=[f"{NVME}=1"])[NVME]
    assert f.status == "fail"
    assert "built without CONFIG_PCI_IOV" in f.message
    assert [s.phase for s in f.remediation] == ["kernel", "firmware"]


def test_more_vfs_than_the_device_offers_fails_without_commands(ws):
    f = scan(ws, vfs=[f"{PF}=8"])[PF]
    assert f.status == "fail"
    assert "8 VFs requested, but the device supports at most 7" in f.message
    assert commands(f) == []
    (step,) = f.remediation
    assert step.manual and f"--vfs {PF}=7" in step.summary


# ---------------------------------------------------------------------------------------------
# enabled as requested
# ---------------------------------------------------------------------------------------------

def test_requested_count_enabled_passes_listing_the_vfs(ws):
    vfs = ws.enable_vfs(PF, 4, 20, "1520")
    ws.write(f"{ws.device_dir(PF)}/sriov_drivers_autoprobe", "0\n")
    f = scan(ws, vfs=[f"{PF}=4"])[PF]
    assert f.status == "pass"
    assert f.message == "4 of 7 VFs enabled as requested: " + ", ".join(vfs)
    assert vfs == ["0000:02:10.0", "0000:02:10.4", "0000:02:11.0", "0000:02:11.4"]
    assert f.remediation == ()
    assert {e.source: e.value for e in f.evidence}[f"{SYS}/sriov_numvfs"] == "4"


def test_pass_notes_that_host_drivers_may_hold_the_vfs_when_autoprobe_is_on(ws):
    ws.enable_vfs(PF, 2, 20, "1520", driver="igbvf")
    f = scan(ws, vfs=[f"{PF}=2"])[PF]
    assert f.status == "pass"
    assert "sriov_drivers_autoprobe is 1" in f.message and "VFIO-013" in f.message


def test_zero_requested_and_none_enabled_passes(ws):
    f = scan(ws, vfs=[f"{PF}=0"])[PF]
    assert f.status == "pass" and f.message == "0 VFs requested and none enabled"


# ---------------------------------------------------------------------------------------------
# the count differs: fixes, their order, and that they work
# ---------------------------------------------------------------------------------------------

def test_no_vfs_yet_sets_autoprobe_off_then_the_count(ws):
    f = scan(ws, vfs=[f"{PF}=4"])[PF]
    assert f.status == "fail" and f.severity == "high"
    assert f.message.startswith("4 VFs requested, 0 enabled")
    assert (f.observed, f.expected) == ("sriov_numvfs 0", "sriov_numvfs 4")
    now, persist, bind = f.remediation
    assert now.phase == "sriov" and not now.persistent and not now.manual and not now.requires_reboot
    assert list(now.commands) == [AUTOPROBE_0, f"echo 4 > {SYS}/sriov_numvfs"]
    assert list(now.undo) == [NUMVFS_0, f"echo 1 > {SYS}/sriov_drivers_autoprobe"]
    assert dict(now.action) == {"kind": "sriov-numvfs", "address": PF, "ids": "8086:1521", "current": 0, "wanted": 4,
                                "autoprobe": 0, "previous_autoprobe": 1}
    # with autoprobe 0 no driver takes the new VFs: they are bound to vfio-pci, now and at boot
    assert bind.phase == "sriov" and bind.persistent and dict(bind.action) == {"kind": "bind-vfs", "address": PF}
    assert "driver_override" in bind.commands[0] and f"{SYS}/virtfn*" in bind.commands[0]
    assert persist.phase == "sriov" and persist.persistent and not persist.manual
    assert persist.action["kind"] == "sriov-persist" and persist.action["file"] == UDEV_FILE
    assert persist.action["wanted"] == 4 and persist.action["address"] == PF


def test_existing_vfs_are_removed_before_the_new_count(ws):
    ws.enable_vfs(PF, 2, 20, "1520")
    f = scan(ws, vfs=[f"{PF}=4"])[PF]
    assert f.status == "fail"
    assert '"2 VFs already enabled. Disable before enabling 4 VFs"' in f.message
    now = f.remediation[0]
    assert list(now.commands) == [AUTOPROBE_0, NUMVFS_0, f"echo 4 > {SYS}/sriov_numvfs"]
    # undo puts the two VFs back, with the old autoprobe value in force when they are created
    assert list(now.undo) == [NUMVFS_0, f"echo 1 > {SYS}/sriov_drivers_autoprobe", f"echo 2 > {SYS}/sriov_numvfs"]
    assert now.action["current"] == 2 and now.action["wanted"] == 4


def test_autoprobe_already_off_is_not_written_again(ws):
    ws.write(f"{ws.device_dir(PF)}/sriov_drivers_autoprobe", "0\n")
    ws.enable_vfs(PF, 3, 20, "1520")
    now = scan(ws, vfs=[f"{PF}=1"])[PF].remediation[0]
    assert list(now.commands) == [NUMVFS_0, f"echo 1 > {SYS}/sriov_numvfs"]
    assert now.action["autoprobe"] == 0


def test_fewer_vfs_requested_to_zero_only_removes_them(ws):
    ws.enable_vfs(PF, 3, 20, "1520")
    f = scan(ws, vfs=[f"{PF}=0"])[PF]
    assert f.status == "fail"
    (now,) = f.remediation  # no persistence step: 0 VFs is what every boot starts with
    assert list(now.commands) == [NUMVFS_0]
    assert now.action["autoprobe"] is None


@pytest.mark.parametrize("existing", [0, 2, 6])
def test_commands_are_accepted_by_the_kernel_in_their_order(ws, existing):
    if existing:
        ws.enable_vfs(PF, existing, 20, "1520")
    now = scan(ws, vfs=[f"{PF}=4"])[PF].remediation[0]
    kernel = KernelModel(total=7, numvfs=existing, autoprobe=1)
    kernel.run(now.commands)
    assert kernel.numvfs == 4
    assert kernel.host_probed_vfs == 0, "VFs were created while host drivers could still probe them"
    assert kernel.autoprobe == 0


def test_the_model_rejects_the_orders_the_kernel_rejects():
    with pytest.raises(OSError, match="already enabled"):
        KernelModel(7, 2, 1).run([f"echo 4 > {SYS}/sriov_numvfs"])
    probed = KernelModel(7, 0, 1)
    probed.run([f"echo 4 > {SYS}/sriov_numvfs", AUTOPROBE_0])
    assert probed.host_probed_vfs == 4


def test_every_command_is_valid_shell(ws):
    ws.enable_vfs(PF, 2, 20, "1520")
    ws.bind(PF, None)
    ws.write(f"{ws.device_dir(PF)}/driver_override", "vfio-pci\n")
    f = scan(ws, vfs=[f"{PF}=5"])[PF]
    lines = commands(f) + [u for s in f.remediation for u in s.undo]
    assert len(lines) >= 8
    assert_valid_shell(lines)


def test_fix_leaves_the_wanted_values_in_a_copy_of_the_tree(ws, tmp_path):
    ws.enable_vfs(PF, 2, 20, "1520")
    f = scan(ws, vfs=[f"{PF}=4"])[PF]
    copy = run_against_copy(ws, f, tmp_path)
    pf_dir = copy / ws.device_dir(PF).lstrip("/")
    assert (pf_dir / "sriov_drivers_autoprobe").read_text() == "0\n"
    assert (pf_dir / "sriov_numvfs").read_text() == "4\n"
    rule = (copy / UDEV_FILE.lstrip("/")).read_text()
    assert rule == ('ACTION=="add|bind", SUBSYSTEM=="pci", KERNEL=="0000:02:00.0", '
                    'ATTR{sriov_drivers_autoprobe}="0", ATTR{sriov_numvfs}="4"\n')
    assert (tmp_path / "udevadm.log").read_text() == "control --reload\n"
    # the original tree is untouched, and the copy now satisfies the request
    assert ws.path(f"{ws.device_dir(PF)}/sriov_numvfs").read_text() == "2\n"
    again = scan(TreeHostTree(copy), vfs=[f"{PF}=4"])[PF]
    assert again.status == "pass" and again.message.startswith("4 of 7 VFs enabled as requested")


class TreeHostTree:
    """The minimal tree shape ``scan`` needs (a ``root``), for a copied directory."""

    def __init__(self, root):
        self.root = root


def test_udev_rule_sets_autoprobe_before_the_count_on_the_bind_event(ws):
    persist = next(s for s in scan(ws, vfs=[f"{PF}=3"])[PF].remediation if s.action["kind"] == "sriov-persist")
    rule = persist.action["rule"]
    assert 'ACTION=="add|bind"' in rule and f'KERNEL=="{PF}"' in rule and 'SUBSYSTEM=="pci"' in rule
    assert rule.index("sriov_drivers_autoprobe") < rule.index("sriov_numvfs")
    assert persist.commands[0].endswith(f">> {UDEV_FILE}")  # appended when missing: the file's other lines stay
    assert list(persist.undo) == [f"rm -f {UDEV_FILE}", "udevadm control --reload"]


# ---------------------------------------------------------------------------------------------
# the PF's driver
# ---------------------------------------------------------------------------------------------

def test_pf_without_driver_fails_and_is_given_its_driver_first(ws, tmp_path):
    ws.bind(PF, None)
    f = scan(ws, vfs=[f"{PF}=4"])[PF]
    assert f.status == "fail"
    assert "no driver bound to device; cannot configure SR-IOV" in f.message
    assert [s.phase for s in f.remediation] == ["modules", "sriov", "sriov", "sriov"]
    probe = f.remediation[0]
    assert list(probe.commands) == [f'modprobe "$(cat {SYS}/modalias)"', f"echo {PF} > /sys/bus/pci/drivers_probe"]
    assert "blacklisted" in probe.summary
    assert probe.action == {"kind": "pci-driver-probe", "address": PF, "ids": "8086:1521", "driver": None,
                            "clear_override": False, "unbind": False}
    kernel = KernelModel(total=7, numvfs=0, autoprobe=1, driver=False)
    with pytest.raises(OSError, match="no driver bound"):
        kernel.run(f.remediation[1].commands)
    kernel.driver = True  # what the first step achieves
    kernel.run(f.remediation[1].commands)
    assert kernel.numvfs == 4 and kernel.host_probed_vfs == 0


def test_pf_driver_override_is_cleared_before_probing(ws):
    ws.bind(PF, None)
    ws.write(f"{ws.device_dir(PF)}/driver_override", "vfio-pci\n")
    probe = scan(ws, vfs=[f"{PF}=4"])[PF].remediation[0]
    assert probe.commands[0] == f"echo > {SYS}/driver_override"
    assert "driver_override (vfio-pci)" in probe.summary and probe.action["clear_override"] is True


def test_pf_on_vfio_pci_without_enable_sriov_is_given_back_to_its_driver(ws):
    ws.bind(PF, "vfio-pci")
    f = scan(ws, vfs=[f"{PF}=2"])[PF]
    assert f.status == "fail"
    assert "bound to vfio-pci" in f.message and "enable_sriov=1" in f.message
    give_back = f.remediation[0]
    assert list(give_back.commands) == [f"echo {PF} > {SYS}/driver/unbind", f"echo {PF} > /sys/bus/pci/drivers_probe"]


def test_pf_on_vfio_pci_with_enable_sriov_only_needs_the_count(ws):
    ws.bind(PF, "vfio-pci")
    ws.write("/sys/module/vfio_pci/parameters/enable_sriov", "Y\n")
    f = scan(ws, vfs=[f"{PF}=2"])[PF]
    assert f.status == "fail" and "vfio-pci" not in f.message
    assert [s.phase for s in f.remediation] == ["sriov", "sriov", "sriov"]


# ---------------------------------------------------------------------------------------------
# MMIO shortfall in the kernel log, unreadable state
# ---------------------------------------------------------------------------------------------

MMIO_LINE = "[    1.234567] pci 0000:02:00.0: not enough MMIO resources for SR-IOV\n"


def test_mmio_shortfall_is_shown_with_above_4g_and_pci_realloc(ws):
    ws.kernel_log(ws.path("/var/log/dmesg").read_text() + MMIO_LINE)
    f = scan(ws, vfs=[f"{PF}=4"])[PF]
    assert f.status == "fail"
    assert ("kernel log", "pci 0000:02:00.0: not enough MMIO resources for SR-IOV") in [
        (e.source, e.value) for e in f.evidence]
    assert "Above 4G Decoding" in f.message and "pci=realloc" in f.message
    phases = [s.phase for s in f.remediation]
    assert phases == ["firmware", "boot", "sriov", "sriov", "sriov"]
    assert "Above 4G Decoding" in f.remediation[0].summary and f.remediation[0].manual
    boot = f.remediation[1]
    assert boot.action["add"] == ["pci=realloc"] and boot.requires_reboot
    assert any("pci=realloc" in c and "/etc/default/grub" in c for c in boot.commands)
    assert_valid_shell(boot.commands)


def test_mmio_advice_skips_pci_realloc_when_it_is_already_on(ws):
    ws.kernel_log(ws.path("/var/log/dmesg").read_text() + MMIO_LINE)
    ws.cmdline(ws.path("/proc/cmdline").read_text().strip() + " pci=realloc,nocrs")
    f = scan(ws, vfs=[f"{PF}=4"])[PF]
    assert [s.phase for s in f.remediation] == ["firmware", "sriov", "sriov", "sriov"]


def test_mmio_line_of_another_device_is_not_evidence(ws):
    ws.kernel_log(ws.path("/var/log/dmesg").read_text() + MMIO_LINE.replace("02:00.0", "05:00.0"))
    f = scan(ws, vfs=[f"{PF}=4"])[PF]
    assert "MMIO" not in f.message and not any(e.source == "kernel log" for e in f.evidence)


def test_garbled_sriov_file_is_a_skip_with_the_reason(ws):
    ws.write(f"{ws.device_dir(PF)}/sriov_numvfs", "lots\n")
    f = scan(ws, vfs=[f"{PF}=4"])[PF]
    assert f.status == "skip"
    assert "cannot read the SR-IOV state" in f.message and "sriov_numvfs: garbled" in f.message


def test_one_finding_per_target_with_mixed_targets(ws):
    vfs = ws.enable_vfs(PF, 1, 20, "1520")
    found = scan(ws, devices=[GPU, vfs[0], "8086:a808"], vfs=[f"{PF}=4", f"{NVME}=1"])
    assert {a: f.status for a, f in found.items()} == {GPU: "skip", PF: "fail", NVME: "fail", vfs[0]: "pass"}


# ---------------------------------------------------------------------------------------------
# through the real CLI
# ---------------------------------------------------------------------------------------------

def test_cli_json_shows_the_sriov_fix(ws):
    ws.enable_vfs(PF, 2, 20, "1520")
    proc, doc = scan_json(ws.root, "--device", "02:10.0", "--vfs", f"{PF}=4",
                          "--rule", "VFIO-010", "--rule", "sriov-pf", "--validate")
    assert proc.returncode == 1, proc.stderr
    assert doc["targets"] == [PF, "0000:02:10.0"]
    assert doc["summary"]["readiness"] == "NOT_READY"
    assert {(f["rule_id"], f["subject"]): f["status"] for f in doc["findings"] if f["rule_id"] == "VFIO-010"} == {
        ("VFIO-010", PF): "pass", ("VFIO-010", "0000:02:10.0"): "pass"}
    findings = {f["subject"]: f for f in doc["findings"] if f["rule_id"] == "VFIO-011"}
    assert set(findings) == {PF, "0000:02:10.0"}
    assert findings["0000:02:10.0"]["status"] == "pass"
    pf = findings[PF]
    assert pf["status"] == "fail" and pf["severity"] == "high" and pf["rule"] == "sriov-pf"
    now, persist, bind = pf["remediation"]
    assert now["commands"] == [AUTOPROBE_0, NUMVFS_0, f"echo 4 > {SYS}/sriov_numvfs"]
    assert bind["action"] == {"kind": "bind-vfs", "address": PF}
    assert now["phase"] == "sriov" and now["action"]["kind"] == "sriov-numvfs"
    assert persist["persistent"] is True and persist["action"]["kind"] == "sriov-persist"
    assert '"2 VFs already enabled. Disable before enabling 4 VFs"' in pf["message"]


def test_a_vf_given_to_vfs_is_not_called_the_physical_function(ws):
    vf = ws.enable_vfs(PF, 2, 20, "1520")[0]
    for rule in ("VFIO-012", "VFIO-013"):
        f = scan(ws, vfs=[f"{vf}=2"], rule=rule)[vf]
        assert f.status == "skip" and f.message.startswith("follows from VFIO-011"), f.message
        assert "is a VF (of 0000:02:00.0)" in f.message and "physical function asked" not in f.message
