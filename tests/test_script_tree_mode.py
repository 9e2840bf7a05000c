"""Tree mode touches the tree and nothing else; every run can be undone.

``ROOT=tree DRY_RUN=0 bash fix.sh`` must never reach the machine that runs it: no host tool runs
(each is printed as ``not run (tree mode): CMD``), and an absolute symlink inside the tree leads
back into the tree, as under a chroot. Each run keeps a copy of every file it changes and an
``undo.sh`` that puts files, bindings and VF counts back.
"""

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from hosttree import workstation
from scriptrun import SHIMMED, Shims, fingerprint, run_script, scan, script_for, tree_commands
from systools import require_tool
from test_script_host import no_iommu_request

TARGETS = dict(devices=["01:00.0", "06:01.0"], vfs=["0000:02:00.0=4"])


def files_of(found: dict) -> dict:
    """A fingerprint without its directories (the undo leaves the directories the fix made)."""
    return {path: what for path, what in found.items() if what != "dir"}


def backups(root) -> Path:
    (run,) = sorted(Path(root, "var/backups/vfio-scan").iterdir())
    return run


def test_absolute_links_in_the_tree_lead_back_into_it(tmp_path):
    tree = workstation(tmp_path / "ws")
    outside = tmp_path / "outside"  # exists on this machine: a naive script would write here
    (outside / "modprobe.d").mkdir(parents=True)
    (outside / "modprobe.d" / "keep.conf").write_text("options keep me\n")
    (outside / "rules.d").mkdir()
    before = fingerprint(outside)
    # /etc/modprobe.d and /etc/udev/rules.d of the tree are absolute links to that place
    os.symlink(str(outside / "modprobe.d"), tree.path("/etc/modprobe.d"))
    tree.path("/etc/udev").mkdir(parents=True)
    os.symlink(str(outside / "rules.d"), tree.path("/etc/udev/rules.d"))
    script = script_for(tree.root, **TARGETS)
    shims = Shims(tmp_path)
    proc = run_script(script, tree.root, shims)
    assert fingerprint(outside) == before, proc.stdout + proc.stderr
    # ... and the files landed inside the tree, where that path lies under ROOT
    inside = Path(str(tree.root) + str(outside))
    assert (inside / "modprobe.d/vfio.conf").read_text().startswith("options vfio-pci ids=10de:2204,10de:1aef\n")
    assert (inside / "rules.d/70-vfio-pci-0000-06-01.0.rules").exists()
    assert shims.calls() == []


def test_an_absolute_driver_link_never_unbinds_outside(tmp_path):
    tree = workstation(tmp_path / "ws")
    script = script_for(tree.root, devices=["01:00.0"])
    # after the scan, the tree's driver link becomes absolute: /sys/.../driver -> /abs/outside/drivers/nvidia
    outside = tmp_path / "outside" / "drivers" / "nvidia"
    outside.mkdir(parents=True)
    link = tree.path(tree.device_dir("0000:01:00.0") + "/driver")
    link.unlink()
    os.symlink(str(outside), link)
    proc = run_script(script, tree.root, Shims(tmp_path))
    assert list(outside.iterdir()) == [], proc.stdout
    assert tree.path(tree.device_dir("0000:01:00.0") + "/driver_override").read_text() == "vfio-pci\n"


STACKS = {
    # stack: (files and tools that make the scan pick it, the tools its fix would run)
    "grub": ({}, ["update-grub"]),
    "grubby": ({"/usr/sbin/grubby": "#!/bin/sh\n", "/boot/loader/entries/a.conf": "options root=/dev/sda1 ro\n"},
               ["grubby --update-kernel=ALL --args=intel_iommu=on"]),
    "kernelstub": ({"/usr/bin/kernelstub": "#!/bin/sh\n", "/etc/kernelstub/configuration": "{}\n"},
                   ["kernelstub --add-options intel_iommu=on"]),
    "proxmox-boot-tool": ({"/usr/sbin/proxmox-boot-tool": "#!/bin/sh\n", "/etc/kernel/proxmox-boot-uuids": "x\n",
                           "/etc/kernel/cmdline": "root=ZFS=rpool/ROOT/pve-1 boot=zfs\n"},
                          ["proxmox-boot-tool refresh"]),
}


def no_iommu_host(root):
    """No intel_iommu=on anywhere (the kernel does not turn VT-d on by itself), the vfio modules not loaded."""
    tree = no_iommu_request(root)
    tree.grub(default="quiet")
    tree.modules(loaded=["kvm_intel", "kvm"], installed=["vfio", "vfio_iommu_type1", "vfio_pci"])
    for name in ("vfio", "vfio_iommu_type1", "vfio_pci"):
        shutil.rmtree(tree.path(f"/sys/module/{name}"), ignore_errors=True)
    return tree


@pytest.mark.parametrize("stack", sorted(STACKS))
def test_tree_mode_runs_no_host_tool(stack, tmp_path):
    tree = no_iommu_host(tmp_path / "h")
    files, expected = STACKS[stack]
    for path, text in files.items():
        tree.write(path, text, mode=0o755 if "/bin/" in path else None)
    shims = Shims(tmp_path)
    assert set(SHIMMED) >= {"update-grub", "grubby", "kernelstub", "proxmox-boot-tool", "modprobe", "driverctl",
                            "udevadm", "update-initramfs"}
    proc = run_script(script_for(tree.root), tree.root, shims)
    assert shims.calls() == [], "a host tool ran in tree mode"
    said = tree_commands(proc)
    for command in expected + ["modprobe vfio", "modprobe vfio_pci"]:
        assert command in said, (command, said)
    assert all(f"not run (tree mode): {c}" in proc.stdout for c in said)


def test_tree_mode_runs_no_device_tool(tmp_path):
    tree = workstation(tmp_path / "ws")
    tree.write("/usr/sbin/driverctl", "#!/bin/sh\n", mode=0o755)
    shims = Shims(tmp_path)
    proc = run_script(script_for(tree.root, devices=["01:00.0", "06:01.0"]), tree.root, shims)
    assert shims.calls() == [], "a host tool ran in tree mode"
    assert {"driverctl set-override 0000:01:00.0 vfio-pci", "driverctl set-override 0000:01:00.1 vfio-pci",
            "driverctl set-override 0000:06:01.0 vfio-pci"} <= set(tree_commands(proc))
    # the undo script runs no tool in tree mode either
    undo = backups(tree.root) / "undo.sh"
    env = dict(os.environ, ROOT=tree.root, DRY_RUN="0", PATH=f"{shims.dir}:{os.environ['PATH']}")
    done = subprocess.run(["bash", str(undo)], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    assert shims.calls() == []


def test_undo_puts_files_bindings_and_vf_counts_back(tmp_path):
    tree = workstation(tmp_path / "ws")
    tree.write("/etc/modprobe.d/vfio.conf", "# mine\nblacklist nouveau\noptions vfio-pci ids=1002:67df\n")
    tree.write("/etc/modules-load.d/vfio.conf", "# mine\nkvmgt\n")
    tree.modules(loaded=["vfio", "vfio_iommu_type1", "kvm_intel", "kvm"], installed=["vfio_pci"])
    shutil.rmtree(tree.path("/sys/module/vfio_pci"), ignore_errors=True)
    etc_before = fingerprint(tree.path("/etc"))
    sysfs = {a: tree.path(tree.device_dir(a)) for a in ("0000:01:00.0", "0000:06:01.0", "0000:02:00.0")}
    state_before = {a: {n: (d / n).read_text() for n in ("driver_override", "sriov_numvfs", "sriov_drivers_autoprobe")
                        if (d / n).exists()} for a, d in sysfs.items()}
    proc = run_script(script_for(tree.root, **TARGETS), tree.root, Shims(tmp_path))
    assert proc.returncode == 0, proc.stderr
    assert fingerprint(tree.path("/etc")) != etc_before
    run = backups(tree.root)
    assert f"Backups and the undo script: /var/backups/vfio-scan/{run.name}" in proc.stdout
    # the backup holds the file as it was
    assert (run / "files/etc/modprobe.d/vfio.conf").read_text() == "# mine\nblacklist nouveau\noptions vfio-pci ids=1002:67df\n"
    shellcheck = shutil.which("shellcheck")
    if shellcheck:
        lint = subprocess.run([shellcheck, "-s", "bash", str(run / "undo.sh")], capture_output=True, text=True)
        assert lint.returncode == 0, lint.stdout
    # undo.sh dry-runs by default, then puts everything back
    env = dict(os.environ, DRY_RUN="1")
    dry = subprocess.run(["bash", str(run / "undo.sh")], env=env, capture_output=True, text=True, timeout=60)
    assert dry.returncode == 0 and "would restore /etc/modprobe.d/vfio.conf" in dry.stdout
    env["DRY_RUN"] = "0"  # no ROOT given: it knows the tree it was made for
    done = subprocess.run(["bash", str(run / "undo.sh")], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    assert files_of(fingerprint(tree.path("/etc"))) == files_of(etc_before)
    for address, files in state_before.items():
        for name, text in files.items():
            now = (sysfs[address] / name).read_text()
            assert now.strip() == text.strip() or (text == "(null)\n" and now == "\n"), (address, name, now)
    assert "not run (tree mode): modprobe -r vfio_pci" not in done.stdout  # nothing was loaded in tree mode


def test_undo_of_a_live_run_unloads_what_it_loaded_and_regenerates(tmp_path):
    """The undo script's own steps, as a live run records them (read from the script, not run live)."""
    tree = workstation(tmp_path / "ws")
    script = script_for(tree.root, **TARGETS)
    assert "undo_live unload_module" in script  # load_module records its undo on a live host only
    assert "undo_step rebind" in script and "undo_step set_numvfs" in script


def test_dry_run_writes_nothing_anywhere(tmp_path):
    tree = workstation(tmp_path / "ws")
    tree.write("/etc/modprobe.d/vfio.conf", "options vfio-pci ids=1002:67df\n")
    before = fingerprint(tree.root)
    proc = run_script(script_for(tree.root, **TARGETS), tree.root, Shims(tmp_path), dry_run=True)
    assert proc.returncode == 0, proc.stderr
    assert fingerprint(tree.root) == before
    assert "-options vfio-pci ids=1002:67df" in proc.stdout
    assert "+options vfio-pci ids=1002:67df,10de:2204,10de:1aef" in proc.stdout


def test_the_script_passes_shellcheck_with_every_kind_of_block(tmp_path):
    shellcheck = require_tool("shellcheck")
    tree = workstation(tmp_path / "ws")
    tree.write("/etc/default/grub.d/50-cloudimg-settings.cfg", 'GRUB_CMDLINE_LINUX_DEFAULT="console=tty1"\n')
    tree.cmdline("BOOT_IMAGE=/boot/vmlinuz root=/dev/sda1 ro quiet")
    tree.enable_vfs("0000:02:00.0", 2, 30, "1520", driver="igbvf")
    path = tmp_path / "fix.sh"
    path.write_text(script_for(tree.root, devices=["01:00.0", "06:01.0", "00:17.0"], vfs=["0000:02:00.0=4"]))
    proc = subprocess.run([shellcheck, "-s", "bash", str(path)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout
    assert scan(tree.root, devices=["01:00.0"]).exit_code == 1


def test_ids_never_claim_a_twin_the_host_runs_on(tmp_path):
    """Both e1000e of a pair as targets, one carrying the default route: ids= at boot would take that
    one too, so the other is kept on vfio-pci by address (a udev rule), never by ids."""
    tree = workstation(tmp_path / "ws")
    tree.pci_device("0000:00:19.0", "8086", "15bc", "020000", driver="e1000e", group="12", reset_method="flr")
    report = scan(tree.root, devices=["8086:15bc"])
    boot = next(f for f in report.findings if f.rule_id == "VFIO-013" and f.subject == "0000:00:19.0").remediation[1]
    assert boot.action["kind"] == "udev-driver-override" and boot.action["twins"] == ["0000:00:1f.6"]
    script = script_for(tree.root, devices=["8086:15bc"])
    assert "8086:15bc" not in "".join(line for line in script.splitlines() if line.startswith("options vfio-pci"))
