"""A run cut short after a configuration file changed, before the regeneration, is finished by the next run.

The boot configuration and the initramfs are regenerated once, at the end of their phase, when a
block changed what they are made from. A run stopped in between (Ctrl-C, a dropped ssh: SIGHUP) left
/etc/default/grub edited and update-grub never run; running the script again found the file
unchanged, regenerated nothing, and said Done: the next boot came up without the parameter. What a
change owes is now kept on disk until it is done.
"""

from scriptrun import Shims, run_script, script_for, tree_commands
from test_script_tree_mode import no_iommu_host
from hosttree import workstation


def cut_before(script: str, block: str) -> str:
    """The script stopping dead (as on SIGHUP) just before the named block runs."""
    lines = script.splitlines(keepends=True)
    at = next(i for i, line in enumerate(lines) if line.startswith((f"block '{block}' ", f"block {block} ")))
    return "".join(lines[:at] + ["exit 129\n"] + lines[at:])


def test_the_next_run_regenerates_the_boot_configuration_the_cut_run_owed(tmp_path):
    tree = no_iommu_host(tmp_path / "h")
    script = script_for(tree.root)
    shims = Shims(tmp_path)
    cut = run_script(cut_before(script, "boot configuration"), tree.root, shims)
    assert cut.returncode == 129
    assert "intel_iommu=on" in tree.path("/etc/default/grub").read_text()
    assert "update-grub" not in tree_commands(cut)
    again = run_script(script, tree.root, shims)
    assert again.returncode == 0, again.stderr
    assert "unchanged: /etc/default/grub" in again.stdout
    assert "stopped before it was regenerated: this run does it" in again.stdout
    assert "update-grub" in tree_commands(again)
    third = run_script(script, tree.root, shims)  # once done, it is not owed any more
    assert "update-grub" not in tree_commands(third)


def test_the_next_run_rebuilds_the_initramfs_the_cut_run_owed(tmp_path):
    tree = workstation(tmp_path / "ws")
    script = script_for(tree.root, devices=["01:00.0"])
    shims = Shims(tmp_path)
    cut = run_script(cut_before(script, "initramfs"), tree.root, shims)
    assert cut.returncode == 129 and tree.path("/etc/modprobe.d/vfio.conf").exists()
    again = run_script(script, tree.root, shims)
    assert "update-initramfs -u -k all" in tree_commands(again)


def test_a_dry_run_shows_the_owed_work_and_leaves_it_owed(tmp_path):
    tree = no_iommu_host(tmp_path / "h")
    script = script_for(tree.root)
    shims = Shims(tmp_path)
    run_script(cut_before(script, "boot configuration"), tree.root, shims)
    dry = run_script(script, tree.root, shims, dry_run=True)
    assert "stopped before it was regenerated" in dry.stdout
    assert "update-grub" in tree_commands(run_script(script, tree.root, shims))


def test_a_hangup_is_an_interruption_that_says_what_did_not_run(tmp_path):
    """SIGHUP, what a dropped ssh session sends, is handled as Ctrl-C is: a line, the undo hint, exit 130."""
    tree = no_iommu_host(tmp_path / "h")
    script = script_for(tree.root)
    lines = script.splitlines(keepends=True)
    at = next(i for i, line in enumerate(lines) if line.startswith("block 'boot configuration' "))
    hung = "".join(lines[:at] + ['kill -HUP "$$"\n'] + lines[at:])
    proc = run_script(hung, tree.root, Shims(tmp_path))
    assert proc.returncode == 130
    assert "interrupted: the blocks after this point did not run" in proc.stderr
    assert "update-grub" not in tree_commands(proc)
