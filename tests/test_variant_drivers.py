"""vfio-pci variant drivers: the fix binds the one libvirt would pick from the kernel's modules.alias.

The fixture is the ready host (tests/hosttree.py) plus a ConnectX VF (15b3:101e, "ConnectX Family
mlx5Gen Virtual Function") on mlx5_core, alone in IOMMU group 5. Its running kernel's
modules.alias has the lines mlx5_vfio_pci, hisi_acc_vfio_pci and vfio_pci carry upstream. Debian's
own kernels (6.1 and 6.12, as booted by the QEMU harness) carry only vfio_pci's line, the
``DEBIAN`` case: there every device gets plain vfio-pci.
"""

from __future__ import annotations

import json

from clihelpers import run_cli
from hosttree import RELEASE, ready_host
from scanner.facts.variants import best_alias, driver_of, vfio_aliases
from scriptrun import Shims, fake_kernel, fake_reboot, run_script, scan, script_for, tree_commands

VF = "0000:05:00.0"
ALIAS_FILE = f"/lib/modules/{RELEASE}/modules.alias"
DEBIAN = "# Aliases extracted from modules themselves.\nalias vfio_pci:v*d*sv*sd*bc*sc*i* vfio_pci\n"
UPSTREAM = ("# Aliases extracted from modules themselves.\n"
            "alias pci:v000015B3d0000101Esv*sd*bc*sc*i* mlx5_core\n"
            "alias vfio_pci:v000019E5d0000A256sv*sd*bc*sc*i* hisi_acc_vfio_pci\n"
            "alias vfio_pci:v000015B3d0000101Esv*sd*bc*sc*i* mlx5_vfio_pci\n"
            "alias vfio_pci:v*d*sv*sd*bc*sc*i* vfio_pci\n")
MODALIAS = "pci:v000015B3d0000101Esv000015B3sd00000061bc02sc00i00"


def host_with_vf(root, aliases=UPSTREAM, driver="mlx5_core"):
    tree = ready_host(root)
    tree.pci_device(VF, "15b3", "101e", "020000", driver=driver, group="5", reset_method="flr",
                    subsystem_vendor="0x15b3", subsystem_device="0x0061")
    if aliases is not None:
        tree.write(ALIAS_FILE, aliases)
    return tree


def finding(report, rule_id, subject=VF):
    (found,) = [f for f in report.findings if f.rule_id == rule_id and f.subject == subject]
    return found


# -- the choice itself, as libvirt makes it ----------------------------------------------------------

def test_the_most_specific_alias_wins_whatever_its_place_in_the_file():
    wide = "alias vfio_pci:v000015B3d*sv*sd*bc*sc*i* wide_vfio_pci\n"
    for text in (wide + UPSTREAM, UPSTREAM + wide):
        assert best_alias(vfio_aliases(text.splitlines()), MODALIAS)[1] == "mlx5_vfio_pci"


def test_on_a_tie_the_first_line_wins_and_other_devices_get_vfio_pci():
    twin = "alias vfio_pci:v000015B3d0000101Esv*sd*bc*sc*i* other_vfio_pci\n"
    aliases = vfio_aliases((twin + UPSTREAM).splitlines())
    assert best_alias(aliases, MODALIAS)[1] == "other_vfio_pci"
    gpu = "pci:v000010DEd00002204sv00001458sd0000403Bbc03sc00i00"
    assert best_alias(aliases, gpu)[1] == "vfio_pci" and driver_of("vfio_pci") == "vfio-pci"


def test_a_module_name_that_is_no_vfio_driver_is_never_a_choice():
    assert driver_of("evil$(reboot)_vfio_pci") is None and driver_of("mlx5_core") is None
    assert driver_of("mlx5_vfio_pci") == "mlx5_vfio_pci"
    assert best_alias(vfio_aliases(["alias vfio_pci:v*d* a b c", "alias pci:v*d* x_vfio_pci"]), MODALIAS) is None


# -- what the scan and its fix say -------------------------------------------------------------------

def test_the_fix_binds_the_variant_and_keeps_it_per_device(tmp_path):
    tree = host_with_vf(tmp_path / "h")
    f = finding(scan(tree.root, devices=[VF]), "VFIO-013")
    assert f.status == "fail" and "QEMU needs it on mlx5_vfio_pci" in f.message
    assert any(e.source == ALIAS_FILE and "mlx5_vfio_pci" in e.value for e in f.evidence)
    now, boot = f.remediation
    assert list(now.commands) == ["modprobe mlx5_vfio_pci",
                            f"echo mlx5_vfio_pci > /sys/bus/pci/devices/{VF}/driver_override",
                            f"echo {VF} > /sys/bus/pci/devices/{VF}/driver/unbind",
                            f"echo {VF} > /sys/bus/pci/drivers_probe"]
    # a variant takes no ids=: the device is kept by address, never in vfio-pci's ids=
    assert boot.action["kind"] == "udev-driver-override" and boot.action["driver"] == "mlx5_vfio_pci"
    assert 'ATTR{driver_override}="mlx5_vfio_pci"' in boot.action["rule"]
    assert not any("ids=" in c for step in f.remediation for c in step.commands)


def test_with_driverctl_the_override_names_the_variant(tmp_path):
    tree = host_with_vf(tmp_path / "h")
    tree.write("/usr/sbin/driverctl", "#!/bin/sh\n", mode=0o755)
    (_, boot) = finding(scan(tree.root, devices=[VF]), "VFIO-013").remediation
    assert list(boot.commands) == [f"driverctl set-override {VF} mlx5_vfio_pci"]


def test_a_kernel_with_only_vfio_pci_s_alias_binds_vfio_pci(tmp_path):
    tree = host_with_vf(tmp_path / "h", aliases=DEBIAN)
    f = finding(scan(tree.root, devices=[VF]), "VFIO-013")
    assert f.remediation[0].commands[0] == f"echo vfio-pci > /sys/bus/pci/devices/{VF}/driver_override"
    assert not any(e.source == ALIAS_FILE for e in f.evidence)


def test_an_unreadable_modules_alias_binds_vfio_pci_and_says_why(tmp_path):
    tree = host_with_vf(tmp_path / "h", aliases=None)
    f = finding(scan(tree.root, devices=[VF]), "VFIO-013")
    assert "echo vfio-pci >" in f.remediation[0].commands[0]
    (seen,) = [e for e in f.evidence if e.source == ALIAS_FILE]
    assert "cannot read" in seen.value and "variant" in seen.value


def test_the_script_binds_the_variant_and_a_rescan_passes_now_and_at_boot(tmp_path):
    tree = host_with_vf(tmp_path / "h")
    script = script_for(tree.root, devices=[VF])
    assert f"bind_vfio {VF} 15b3:101e mlx5_vfio_pci" in script
    proc = run_script(script, tree.root, Shims(tmp_path))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert tree.path(tree.device_dir(VF) + "/driver_override").read_text().strip() == "mlx5_vfio_pci"
    assert "modprobe mlx5_vfio_pci" in tree_commands(proc)
    rule = tree.path(f"/etc/udev/rules.d/70-vfio-pci-{VF.replace(':', '-')}.rules").read_text()
    assert 'ATTR{driver_override}="mlx5_vfio_pci", RUN{builtin}+="kmod load mlx5_vfio_pci"' in rule

    fake_kernel(tree.root)
    fake_reboot(tree.root, tree_commands(proc))
    after = scan(tree.root, devices=[VF])
    assert finding(after, "VFIO-013").status == "pass" and "mlx5_vfio_pci" in finding(after, "VFIO-013").message
    assert finding(after, "VFIO-017").status == "pass"


def test_a_variant_kept_at_boot_for_vfio_pci_only_is_lost_at_next_boot(tmp_path):
    tree = host_with_vf(tmp_path / "h", driver="mlx5_vfio_pci")
    tree.write("/dev/vfio/5", "")
    tree.write("/etc/driverctl.d/pci-" + VF, "vfio-pci\n")  # brings it back on plain vfio-pci
    f = finding(scan(tree.root, devices=[VF]), "VFIO-017")
    assert f.status == "fail" and "lost at next boot" in f.message
    tree.write("/etc/driverctl.d/pci-" + VF, "mlx5_vfio_pci\n")
    assert finding(scan(tree.root, devices=[VF]), "VFIO-017").status == "pass"


def test_a_forged_driver_in_an_action_never_reaches_the_script(tmp_path):
    from reports.script import render_report

    report = scan(host_with_vf(tmp_path / "h").root, devices=[VF])
    finding(report, "VFIO-013").remediation[0].action["driver"] = "x; reboot #_vfio_pci"
    script = render_report(report)
    # only in a comment, or quoted in the message the run prints
    assert all(line.lstrip().startswith(("#", "say 'MANUAL:")) for line in script.splitlines() if "x; reboot" in line)
    assert "refused: refusing to put vfio driver" in script and f"bind_vfio {VF}" not in script


def test_libvirt_gets_the_variant_as_its_driver_model(tmp_path):
    tree = host_with_vf(tmp_path / "h")
    proc = run_cli("vm-config", "--for", "libvirt", "--managed", "--root", tree.root, "--device", VF)
    assert proc.returncode == 0, proc.stderr
    assert "<driver name='vfio' model='mlx5_vfio_pci'/>" in proc.stdout


def test_a_snapshot_chooses_as_the_host_does(tmp_path):
    tree = host_with_vf(tmp_path / "h")
    snap = tmp_path / "snap.json"
    assert run_cli("collect", "--root", tree.root, "-o", snap).returncode == 0
    proc = run_cli("scan", "--snapshot", snap, "--device", VF, "--format", "json")
    (f,) = [f for f in json.loads(proc.stdout)["findings"] if f["rule_id"] == "VFIO-013"]
    assert f["remediation"][0]["commands"][0] == "modprobe mlx5_vfio_pci"


def test_the_vfs_a_connectx_pf_is_about_to_get_are_bound_to_the_variant(tmp_path):
    tree = host_with_vf(tmp_path / "h")
    pf = "0000:06:00.0"
    tree.pci_device(pf, "15b3", "101d", "020000", driver="mlx5_core", group="6", sriov_totalvfs="8",
                    sriov_numvfs="0", sriov_drivers_autoprobe="1", sriov_vf_device="101e")
    report = scan(tree.root, devices=[pf], vfs=[f"{pf}=4"])
    (bind,) = [s for s in finding(report, "VFIO-011", pf).remediation if s.action["kind"] == "bind-vfs"]
    assert bind.action["driver"] == "mlx5_vfio_pci" and "echo mlx5_vfio_pci >" in bind.commands[0]
    assert f"bind_vfs {pf} mlx5_vfio_pci" in script_for(tree.root, devices=[pf], vfs=[f"{pf}=4"])
    tree.write(ALIAS_FILE, DEBIAN)  # a kernel without the variant: plain vfio-pci, the action as it always was
    (bind,) = [s for s in finding(scan(tree.root, devices=[pf], vfs=[f"{pf}=4"]), "VFIO-011", pf).remediation
               if s.action["kind"] == "bind-vfs"]
    assert dict(bind.action) == {"kind": "bind-vfs", "address": pf}
