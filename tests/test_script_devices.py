"""The remediation script on device problems: SR-IOV counts, binding, refusals, idempotency."""

import subprocess

from systools import require_tool
from hosttree import workstation
from scriptrun import Shims, fake_kernel, fake_reboot, fingerprint, run_script, scan, script_for, tree_commands

TARGETS = dict(devices=["01:00.0", "01:00.1", "06:01.0", "00:1f.6"], vfs=["0000:02:00.0=4"])


def by_subject(report, rule_id):
    return {f.subject: f.status for f in report.findings if f.rule_id == rule_id}


def test_device_script_is_shellcheck_clean(tmp_path):
    shellcheck = require_tool("shellcheck")
    tree = workstation(tmp_path / "ws")
    path = tmp_path / "fix.sh"
    path.write_text(script_for(tree.root, **TARGETS))
    proc = subprocess.run([shellcheck, "-s", "bash", str(path)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout


def test_refuses_the_device_that_carries_the_default_route(tmp_path):
    tree = workstation(tmp_path / "ws")
    script = script_for(tree.root, **TARGETS)
    block = script.split("# BEGIN VFIO-013 0000:00:1f.6")[1].split("# END")[0]
    assert "REFUSED" in block and "default route" in block
    assert "bind_vfio" not in block and "driver_override" not in block.replace("REFUSED", "")
    shims = Shims(tmp_path)
    proc = run_script(script, tree.root, shims)
    assert proc.returncode == 0, proc.stderr
    assert "REFUSED: not binding 0000:00:1f.6" in proc.stderr
    assert tree.path(tree.device_dir("0000:00:1f.6") + "/driver_override").read_text() == "(null)\n"


def test_script_order_and_no_new_id(tmp_path):
    tree = workstation(tmp_path / "ws")
    script = script_for(tree.root, **TARGETS)
    assert script.index("===== SR-IOV") < script.index("===== driver binding") < script.index("===== initramfs")
    code = [line for line in script.splitlines() if not line.lstrip().startswith("#")]
    assert not any("new_id" in line for line in code)
    # the SR-IOV PF stays on its host driver: no block binds it
    assert "bind_vfio 0000:02:00.0" not in script
    # the bridge of the shared group is never touched
    assert "0000:05:00.0" not in "\n".join(code)


def test_binding_and_vfs_apply_once_and_rescan_passes(tmp_path):
    tree = workstation(tmp_path / "ws")
    shims = Shims(tmp_path)
    before_report = scan(tree.root, **TARGETS)
    assert by_subject(before_report, "VFIO-013")["0000:01:00.0"] == "fail"
    assert by_subject(before_report, "VFIO-011")["0000:02:00.0"] == "fail"
    script = script_for(tree.root, **TARGETS)
    proc = run_script(script, tree.root, shims)
    assert proc.returncode == 0, proc.stderr

    sysfs = tree.path(tree.device_dir("0000:02:00.0"))
    assert (sysfs / "sriov_numvfs").read_text() == "4\n"
    assert (sysfs / "sriov_drivers_autoprobe").read_text() == "0\n"
    for addr in ("0000:01:00.0", "0000:01:00.1", "0000:06:01.0"):
        assert tree.path(tree.device_dir(addr) + "/driver_override").read_text() == "vfio-pci\n", addr
    for addr in ("0000:06:02.0", "0000:00:1f.6", "0000:02:00.0"):  # the twin, the host NIC, the PF: untouched
        assert tree.path(tree.device_dir(addr) + "/driver_override").read_text() == "(null)\n", addr
    conf = tree.path("/etc/modprobe.d/vfio.conf").read_text()
    assert conf.startswith("options vfio-pci ids=") and "8086:100e" not in conf and "8086:1521" not in conf
    assert tree.path("/etc/udev/rules.d/70-vfio-pci-0000-06-01.0.rules").exists()
    assert tree_commands(proc).count("update-initramfs -u -k all") == 1 and shims.calls() == []

    # the kernel binds what driver_override asked for; the modules the script loaded are loaded
    fake_kernel(tree.root)
    fake_reboot(tree.root, tree_commands(proc))
    after = scan(tree.root, **TARGETS)
    assert by_subject(after, "VFIO-011")["0000:02:00.0"] == "pass"
    assert by_subject(after, "VFIO-013")["0000:01:00.0"] == "pass"
    assert by_subject(after, "VFIO-013")["0000:06:01.0"] == "pass"
    assert by_subject(after, "VFIO-012")["0000:01:00.0"] == "pass"
    # the shared-group e1000 stays blocked until its twin is given up too; the host NIC stays refused
    assert by_subject(after, "VFIO-012")["0000:06:01.0"] == "fail"
    assert by_subject(after, "VFIO-013")["0000:00:1f.6"] == "fail"

    # a second run of the same script changes nothing and would run nothing
    before = fingerprint(tree.root)
    proc = run_script(script, tree.root, shims)
    assert proc.returncode == 0, proc.stderr
    assert fingerprint(tree.root) == before
    assert tree_commands(proc) == [] and shims.calls() == []


def test_the_gpu_s_audio_is_kept_on_vfio_pci_at_boot_too(tmp_path):
    """Only the GPU is named: its HDMI audio shares its slot and group, so it is bound now (VFIO-012)
    and kept at boot in the same ids= line, not left to its host driver after the next reboot."""
    tree = workstation(tmp_path / "ws")
    proc = run_script(script_for(tree.root, devices=["01:00.0"]), tree.root, Shims(tmp_path))
    assert proc.returncode == 0, proc.stderr
    assert tree.path(tree.device_dir("0000:01:00.1") + "/driver_override").read_text() == "vfio-pci\n"
    assert tree.path("/etc/modprobe.d/vfio.conf").read_text().startswith("options vfio-pci ids=10de:2204,10de:1aef\n")


def test_vfs_made_with_autoprobe_off_go_to_vfio_pci_now_and_at_boot(tmp_path):
    tree = workstation(tmp_path / "ws")
    vfs = tree.enable_vfs("0000:02:00.0", 2, 30, "1520")  # driverless, as autoprobe 0 leaves them
    script = script_for(tree.root, vfs=["0000:02:00.0=4"])
    assert "bind_vfs 0000:02:00.0" in script
    proc = run_script(script, tree.root, Shims(tmp_path))
    assert proc.returncode == 0, proc.stderr
    for vf in vfs:
        assert tree.path(tree.device_dir(vf) + "/driver_override").read_text() == "vfio-pci\n", vf
    rules = tree.path("/etc/udev/rules.d/70-vfio-scan-vfs-0000-02-00.0.rules").read_text().splitlines()
    assert [r.split('KERNEL=="')[1].split('"')[0] for r in rules] == vfs
    assert all('ATTR{driver_override}="vfio-pci"' in r and "drivers_probe" in r for r in rules)
