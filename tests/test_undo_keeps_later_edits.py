"""undo.sh leaves a file alone when it changed after the fix wrote it, and says so.

It restored every file from its copy (and deleted every file the fix had made) whatever had been
done to it since: an administrator's GRUB_TIMEOUT or console=ttyS0 added after the fix was silently
gone. Now each file is put back only while it still holds what the fix wrote.
"""

import os
import shutil
import subprocess

from hosttree import workstation
from scriptrun import Shims, run_script, script_for
from test_script_tree_mode import backups, no_iommu_host


def undo(tree, dry_run="0"):
    run = backups(tree.root)
    shellcheck = shutil.which("shellcheck")
    if shellcheck:
        lint = subprocess.run([shellcheck, "-s", "bash", str(run / "undo.sh")], capture_output=True, text=True)
        assert lint.returncode == 0, lint.stdout
    env = dict(os.environ, DRY_RUN=dry_run)
    return subprocess.run(["bash", str(run / "undo.sh")], env=env, capture_output=True, text=True, timeout=60)


def test_a_file_edited_after_the_fix_is_left_as_it_is(tmp_path):
    tree = no_iommu_host(tmp_path / "h")
    before = tree.path("/etc/default/grub").read_text()
    assert run_script(script_for(tree.root), tree.root, Shims(tmp_path)).returncode == 0
    grub = tree.path("/etc/default/grub")
    fixed = grub.read_text()
    assert fixed != before
    grub.write_text(fixed + "GRUB_TIMEOUT=1\n")  # the administrator's own edit, after the fix
    dry = undo(tree, dry_run="1")
    assert "/etc/default/grub changed since the fix wrote it: left as it is" in dry.stderr
    done = undo(tree)
    assert done.returncode == 1
    assert "/etc/default/grub changed since the fix wrote it: left as it is" in done.stderr
    assert grub.read_text() == fixed + "GRUB_TIMEOUT=1\n"


def test_a_file_the_fix_made_and_someone_added_to_is_not_removed(tmp_path):
    tree = workstation(tmp_path / "ws")
    assert run_script(script_for(tree.root, devices=["01:00.0"]), tree.root, Shims(tmp_path)).returncode == 0
    conf = tree.path("/etc/modprobe.d/vfio.conf")
    conf.write_text(conf.read_text() + "options vfio-pci disable_vga=1\n")
    done = undo(tree)
    assert done.returncode == 1
    assert "/etc/modprobe.d/vfio.conf changed since the fix wrote it" in done.stderr
    assert conf.exists() and "disable_vga=1" in conf.read_text()


def test_files_as_the_fix_left_them_are_still_put_back(tmp_path):
    tree = no_iommu_host(tmp_path / "h")
    before = tree.path("/etc/default/grub").read_text()
    assert run_script(script_for(tree.root), tree.root, Shims(tmp_path)).returncode == 0
    done = undo(tree)
    assert done.returncode == 0, done.stderr
    assert tree.path("/etc/default/grub").read_text() == before
