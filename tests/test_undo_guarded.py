"""undo.sh gives devices back with the fix's own care, and can be run again after it was cut short.

It unbound whatever the fix had once touched: a NIC handed back by hand that carries the default
route by now, the PF of a VF the host routes through, a card swapped for another model in the same
slot; it unloaded vfio-pci under a device parked there since for another VM; a second run (after
one cut short) called every restored file "changed" and regenerated nothing; a restored initramfs
module list was never rebuilt; the fix's own per-PF udev rules were deleted after an operator
edited them; and a configuration file that is a symbolic link was written through to its target.
"""

import os
import subprocess

import pytest
from pathlib import Path

from hosttree import workstation
from scriptrun import Shims, fake_kernel, fingerprint, run_script, script_for
from test_rules_initramfs import AUDIO, GPU, NOUVEAU, put_image, ws  # noqa: F401  (ws: a fixture)
from test_script_tree_mode import backups, no_iommu_host


PF, NIC, TWIN = "0000:02:00.0", "0000:06:01.0", "0000:06:02.0"


def undo(tree, dry_run="0", script=None):
    run = backups(tree.root)
    path = run / "undo.sh"
    if script is not None:
        path = run / "undo-edited.sh"
        path.write_text(script)
    env = dict(os.environ, DRY_RUN=dry_run, ROOT=str(tree.root))
    return subprocess.run(["bash", str(path)], env=env, capture_output=True, text=True, timeout=60)


def nic_on_vfio(tmp_path):
    """The workstation after a fix that bound its e1000 06:01.0 to vfio-pci (the kernel's part played)."""
    tree = workstation(tmp_path / "ws")
    assert run_script(script_for(tree.root, devices=["06:01.0"]), tree.root, Shims(tmp_path)).returncode == 0
    fake_kernel(tree.root)
    return tree


def sysfs(tree):
    return {k: v for k, v in fingerprint(tree.root).items() if k.startswith("sys/")}


def test_the_pf_of_a_vf_the_host_routes_through_keeps_its_vfs_and_its_driver(tmp_path):
    tree = workstation(tmp_path / "ws")
    tree.bind(PF, "vfio-pci")  # the fix gives the PF back to igb to make VFs
    assert run_script(script_for(tree.root, vfs=[f"{PF}=2"]), tree.root, Shims(tmp_path)).returncode == 0
    tree.bind(PF, "igb")
    vfs = tree.enable_vfs(PF, 2, 30, "1520", driver="igbvf")
    tree.net_interface("enp2s16", device=vfs[0])
    tree.default_route("enp2s16")  # since the fix, the host routes through one of the VFs
    before = sysfs(tree)
    done = undo(tree)
    assert f"not removing the VFs of {PF}: its VF {vfs[0]} carries the host's default route (enp2s16)" in done.stderr
    assert f"not unbinding {PF}: its VF {vfs[0]} carries" in done.stderr
    assert sysfs(tree) == before  # no VF removed, the PF not unbound
    assert done.returncode == 1  # some steps were not undone, and it says so


@pytest.mark.parametrize("change, said", [
    (lambda tree: tree.write(tree.device_dir(NIC) + "/device", "0x10d3\n"),  # another model in the slot now
     f"{NIC} holds 8086:10d3 now, not 8086:100e as when the fix changed it: left as it is"),
    (lambda tree: tree.bind(NIC, "igb_uio"),  # someone's DPDK setup since
     f"{NIC} is on igb_uio now, not on vfio-pci as the fix left it: left as it is"),
])
def test_a_device_changed_since_the_fix_is_left_alone(tmp_path, change, said):
    tree = nic_on_vfio(tmp_path)
    change(tree)
    before = sysfs(tree)
    done = undo(tree)
    assert said in done.stderr
    assert sysfs(tree) == before


def test_a_device_handed_back_by_hand_is_not_unbound_again(tmp_path):
    tree = nic_on_vfio(tmp_path)
    tree.bind(NIC, "e1000")
    tree.write(tree.device_dir(NIC) + "/driver_override", "(null)\n")
    before = sysfs(tree)
    done = undo(tree)
    assert done.returncode == 0, done.stderr
    assert f"already on e1000: {NIC}" in done.stdout
    assert sysfs(tree) == before


def test_a_device_as_the_fix_left_it_is_still_given_back(tmp_path):
    tree = nic_on_vfio(tmp_path)
    done = undo(tree)
    assert done.returncode == 0, done.stderr
    assert f"+ echo {NIC} > /sys/bus/pci/devices/{NIC}/driver/unbind" in done.stdout
    assert tree.path(tree.device_dir(NIC) + "/driver_override").read_text() == "\n"


def test_vfio_pci_stays_loaded_while_a_device_uses_it(tmp_path):
    tree = workstation(tmp_path / "ws")
    assert run_script(script_for(tree.root, devices=["06:01.0"]), tree.root, Shims(tmp_path)).returncode == 0
    script = (backups(tree.root) / "undo.sh").read_text()
    # a live run records the unload of the module it loaded (tree mode loads none): add that step
    script = script.replace("\nfinish_undo\n", "\nunload_module vfio_pci\nfinish_undo\n")
    tree.link_to("/sys/module/vfio_pci/drivers/pci:vfio-pci", "/sys/bus/pci/drivers/vfio-pci")
    tree.bind(TWIN, "vfio-pci")  # parked there for another VM since the fix
    kept = undo(tree, script=script)
    assert f"left loaded: vfio_pci (it drives {TWIN} now)" in kept.stdout
    assert "modprobe -r vfio_pci" not in kept.stdout
    tree.bind(TWIN, "e1000")
    tree.remove(f"/sys/bus/pci/drivers/vfio-pci/{TWIN}")
    unused = undo(tree, script=script)
    assert "not run (tree mode): modprobe -r vfio_pci" in unused.stdout


def test_an_undo_cut_short_can_be_run_again_and_still_regenerates(tmp_path):
    tree = no_iommu_host(tmp_path / "h")
    before = tree.path("/etc/default/grub").read_text()
    assert run_script(script_for(tree.root), tree.root, Shims(tmp_path)).returncode == 0
    script = (backups(tree.root) / "undo.sh").read_text()
    cut = undo(tree, script=script.replace("\nfinish_undo\n", "\nkill -KILL $$\n"))  # files back, nothing regenerated
    assert cut.returncode != 0 and "update-grub" not in cut.stdout
    assert tree.path("/etc/default/grub").read_text() == before
    again = undo(tree)
    assert again.returncode == 0, again.stderr
    assert "already as before the fix: /etc/default/grub" in again.stdout
    assert "changed since the fix wrote it" not in again.stderr
    assert "not run (tree mode): update-grub" in again.stdout


def test_a_restored_initramfs_module_list_rebuilds_the_initramfs(ws, tmp_path):
    tree = ws  # the GPU on vfio-pci through ids=, the host driver in the initramfs: the fix edits its module list
    tree.write("/etc/initramfs-tools/modules", "# List of modules\nbtrfs\n")
    put_image(tree, tmp_path / "img", {NOUVEAU: b"x"})
    assert run_script(script_for(tree.root, devices=[GPU, AUDIO]), tree.root, Shims(tmp_path)).returncode == 0
    assert tree.path("/etc/initramfs-tools/modules").read_text() != "# List of modules\nbtrfs\n"
    done = undo(tree)
    assert done.returncode == 0, done.stderr
    assert tree.path("/etc/initramfs-tools/modules").read_text() == "# List of modules\nbtrfs\n"
    assert "not run (tree mode): update-initramfs" in done.stdout


def test_the_fix_s_own_vf_rules_edited_since_are_kept(tmp_path):
    tree = workstation(tmp_path / "ws")
    tree.enable_vfs(PF, 2, 30, "1520")
    tree.write(tree.device_dir(PF) + "/sriov_numvfs", "0\n")  # the links stand in for the VFs the write makes
    assert run_script(script_for(tree.root, vfs=[f"{PF}=2"]), tree.root, Shims(tmp_path)).returncode == 0
    rules = tree.path("/etc/udev/rules.d/70-vfio-scan-vfs-0000-02-00.0.rules")
    edited = rules.read_text() + "# keep VF 1 on vfio-pci for VM 101\n"
    rules.write_text(edited)
    done = undo(tree)
    assert "/etc/udev/rules.d/70-vfio-scan-vfs-0000-02-00.0.rules changed since the fix wrote it" in done.stderr
    assert rules.read_text() == edited


def test_a_configuration_file_that_is_a_link_is_not_written_through(tmp_path):
    tree = workstation(tmp_path / "ws")
    secret = tree.write("/etc/shadow", "root:$6$abc:19000:0:99999:7:::\n")
    tree.symlink("/etc/modprobe.d/vfio.conf", "/etc/shadow")
    proc = run_script(script_for(tree.root, devices=["01:00.0"]), tree.root, Shims(tmp_path))
    assert "/etc/modprobe.d/vfio.conf is a symbolic link: not writing through it" in proc.stderr
    assert secret.read_text() == "root:$6$abc:19000:0:99999:7:::\n"
    assert os.readlink(tree.path("/etc/modprobe.d/vfio.conf")) == "/etc/shadow"


def test_a_run_after_a_cut_one_names_the_cut_run_s_undo_too(tmp_path):
    from test_script_interrupted_rerun import cut_before

    tree = no_iommu_host(tmp_path / "h")
    script = script_for(tree.root)
    shims = Shims(tmp_path)
    assert run_script(cut_before(script, "boot configuration"), tree.root, shims).returncode == 129
    (first,) = [d for d in Path(tree.root, "var/backups/vfio-scan").iterdir() if d.is_dir()]  # its GRUB edit
    again = run_script(script, tree.root, shims)
    assert "unchanged: /etc/default/grub" in again.stdout
    assert "Earlier runs not undone, each with its own undo.sh" in again.stdout
    assert f"/var/backups/vfio-scan/{first.name}" in again.stdout.split("Earlier runs not undone")[1]
    env = dict(os.environ, DRY_RUN="0", ROOT=str(tree.root))
    assert subprocess.run(["bash", str(first / "undo.sh")], env=env, capture_output=True, timeout=60).returncode == 0
    third = run_script(script, tree.root, shims, dry_run=True)  # once undone, it is not named any more
    assert "Earlier runs not undone" in third.stdout and first.name not in third.stdout  # the second run is
