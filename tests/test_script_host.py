"""The remediation script on host-level problems: shape, shellcheck, real runs on trees, idempotency."""

import shutil
import subprocess

import pytest

from systools import require_tool
from hosttree import ready_host
from scriptrun import Shims, fake_reboot, fingerprint, run_script, scan, script_for, tree_commands


def statuses(report):
    return {f.rule_id: f.status for f in report.findings if f.subject == "host"}


def no_iommu_request(root):
    """Intel host whose kernel does not turn VT-d on by itself and whose command line lacks it."""
    tree = ready_host(root)
    tree.cmdline("BOOT_IMAGE=/boot/vmlinuz root=/dev/sda1 ro quiet")
    tree.grub(default="quiet splash")
    tree.kconfig({"IOMMU_SUPPORT": "y", "INTEL_IOMMU": "y", "INTEL_IOMMU_DEFAULT_ON": "n", "VFIO": "m",
                  "VFIO_PCI": "m", "VFIO_IOMMU_TYPE1": "m"})
    shutil.rmtree(tree.path("/sys/kernel/iommu_groups"))
    shutil.rmtree(tree.path("/sys/class/iommu"))
    return tree


def modules_missing(root):
    tree = ready_host(root)
    tree.modules(loaded=["kvm_intel", "kvm"], installed=["vfio", "vfio_iommu_type1", "vfio_pci"])
    for name in ("vfio", "vfio_iommu_type1", "vfio_pci"):
        shutil.rmtree(tree.path(f"/sys/module/{name}"))
    return tree


SCENARIOS = {
    "ready": ready_host,
    "no-iommu-request": no_iommu_request,
    "modules-missing": modules_missing,
}


def unsafe_host(root):
    tree = no_iommu_request(root)
    tree.cmdline("BOOT_IMAGE=/boot/vmlinuz root=/dev/sda1 ro quiet intel_iommu=off")
    tree.grub(default="quiet intel_iommu=off")
    tree.interrupts(remapped=False)
    tree.kernel_log("[    0.1] Linux version 6.1\n")
    return tree


SCENARIOS["intel-iommu-off-no-ir"] = unsafe_host


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_scripts_are_shellcheck_clean(name, tmp_path):
    shellcheck = require_tool("shellcheck")
    script = script_for(SCENARIOS[name](tmp_path / name).root)
    path = tmp_path / "fix.sh"
    path.write_text(script)
    proc = subprocess.run([shellcheck, "-s", "bash", str(path)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout


def test_shape_of_a_script(tmp_path):
    tree = no_iommu_request(tmp_path / "h")
    tree.modules(loaded=["kvm_intel"], installed=["vfio", "vfio_iommu_type1", "vfio_pci"])
    for name in ("vfio", "vfio_iommu_type1", "vfio_pci"):
        shutil.rmtree(tree.path(f"/sys/module/{name}"))
    script = script_for(tree.root)
    lines = script.splitlines()
    assert lines[0] == "#!/usr/bin/env bash"
    assert "set -euo pipefail" in lines
    assert "DRY_RUN=${DRY_RUN:-1}        # 1: only print what would be done; 0: do it" in lines
    assert any(line.startswith("ROOT=${ROOT:-}") for line in lines)
    assert "# host: testhost" in script and "vfio-scan 0.1.0" in script
    assert "#   VFIO-004 kernel-cmdline host:" in script  # the header lists what it addresses
    assert script.count("# BEGIN VFIO-004 host") == 1 and script.count("# END VFIO-004 host") == 1
    # phases in order: boot configuration before modules, reboot section last, then the re-check line
    assert script.index("===== boot configuration") < script.index("===== kernel modules")
    assert script.index("===== the end") > script.index("===== kernel modules")
    assert lines[-1] == "finish"  # the summary, then "Done. Run 'vfio-scan scan' again to check the result."
    assert "new_id" not in script.replace("never uses new_id", "")


def test_nothing_to_fix_on_a_ready_host(tmp_path):
    script = script_for(ready_host(tmp_path / "h").root)
    assert "Nothing to fix" in script
    assert "# BEGIN" not in script


def test_manual_steps_are_explicit(tmp_path):
    tree = ready_host(tmp_path / "h")
    tree.remove("/sys/firmware/acpi/tables/DMAR")
    script = script_for(tree.root)
    assert "# NO AUTOMATED FIX: VFIO-002 host — " in script
    assert "VT-d" in script.split("# NO AUTOMATED FIX: VFIO-002 host")[1].splitlines()[0]


def test_dry_run_changes_nothing(tmp_path):
    tree = no_iommu_request(tmp_path / "h")
    shims = Shims(tmp_path)
    before = fingerprint(tree.root)
    proc = run_script(script_for(tree.root), tree.root, shims, dry_run=True)
    assert proc.returncode == 0, proc.stderr
    # the diff of the file it would change, and the tool it would run on a live host
    assert "would change /etc/default/grub:" in proc.stdout
    assert '-GRUB_CMDLINE_LINUX_DEFAULT="quiet splash"' in proc.stdout
    assert '+GRUB_CMDLINE_LINUX_DEFAULT="intel_iommu=on quiet splash"' in proc.stdout
    assert "not run (tree mode): update-grub" in proc.stdout
    assert fingerprint(tree.root) == before
    assert shims.calls() == []


def test_command_line_fix_applies_once_then_rescan_passes(tmp_path):
    tree = no_iommu_request(tmp_path / "h")
    shims = Shims(tmp_path)
    assert statuses(scan(tree.root))["VFIO-004"] == "fail"
    first = script_for(tree.root)
    proc = run_script(first, tree.root, shims)
    assert proc.returncode == 0, proc.stderr
    grub = tree.path("/etc/default/grub").read_text()
    assert 'GRUB_CMDLINE_LINUX_DEFAULT="intel_iommu=on quiet splash"' in grub
    assert tree_commands(proc) == ["update-grub"] and shims.calls() == []  # tree mode: printed, never run
    assert "A reboot is needed for:\n  - the kernel command line" in proc.stdout

    # a second run (the same script, or one from a new scan) changes nothing and runs nothing
    for again in (first, script_for(tree.root)):
        before = fingerprint(tree.root)
        proc = run_script(again, tree.root, shims)
        assert proc.returncode == 0, proc.stderr
        assert fingerprint(tree.root) == before
        assert tree_commands(proc) == [] and shims.calls() == []
    assert tree.path("/etc/default/grub").read_text().count("intel_iommu=on") == 1
    assert "A reboot is needed" in proc.stdout  # configured, not yet booted

    # after the reboot the command line carries it: the rule passes
    fake_reboot(tree.root)
    assert statuses(scan(tree.root))["VFIO-004"] == "pass"


def test_disabling_parameter_is_removed_and_kept_out(tmp_path):
    tree = unsafe_host(tmp_path / "h")
    shims = Shims(tmp_path)
    proc = run_script(script_for(tree.root), tree.root, shims)
    assert proc.returncode == 0, proc.stderr
    grub = tree.path("/etc/default/grub").read_text()
    assert "intel_iommu=off" not in grub and grub.count("intel_iommu=on") == 1
    fake_reboot(tree.root)
    assert statuses(scan(tree.root))["VFIO-004"] == "pass"


def test_modules_fix_loads_and_persists_once(tmp_path):
    tree = modules_missing(tmp_path / "h")
    shims = Shims(tmp_path)
    assert statuses(scan(tree.root))["VFIO-007"] == "fail"
    proc = run_script(script_for(tree.root), tree.root, shims)
    assert proc.returncode == 0, proc.stderr
    assert tree_commands(proc) == ["modprobe vfio", "modprobe vfio_iommu_type1", "modprobe vfio_pci"]
    assert shims.calls() == []
    assert tree.path("/etc/modules-load.d/vfio.conf").read_text() == "vfio\nvfio_iommu_type1\nvfio_pci\n"
    fake_reboot(tree.root, tree_commands(proc))  # the modules are loaded now
    before = fingerprint(tree.root)
    proc = run_script(script_for(tree.root), tree.root, shims)
    assert tree_commands(proc) == [] and fingerprint(tree.root) == before
    assert statuses(scan(tree.root))["VFIO-007"] == "pass"


def test_unsafe_interrupt_override_is_only_suggested_under_fail_on_warn(tmp_path):
    """No remapping seen (no MSI to judge by, no log line), and warnings addressed (--fail-on warn): the
    last-resort override is in the script as a suggestion only; nothing is written, nothing rebuilt."""
    tree = ready_host(tmp_path / "h")
    tree.write("/proc/interrupts", "           CPU0\n  0:         44   IO-APIC    2-edge      timer\n")
    tree.kernel_log("[    0.1] Linux version 6.1\n")
    report = scan(tree.root, fail_on="warn")
    from reports.script import render_report

    script = render_report(report, fail_on="warn")
    assert "# BEGIN VFIO-006 host" in script
    assert script.count("# NO AUTOMATED FIX: VFIO-006 host") == 2  # the firmware part, and the override
    shims = Shims(tmp_path)
    proc = run_script(script, tree.root, shims)
    assert proc.returncode == 0, proc.stderr
    assert not tree.path("/etc/modprobe.d/vfio-unsafe-interrupts.conf").exists()
    assert "update-initramfs -u -k all" not in tree_commands(proc)
