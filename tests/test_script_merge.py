"""Configuration files are merged, never clobbered; boot-configuration edits work in every quoting style.

Each case runs the generated script for real on a fixture tree (``ROOT``), then reads the files,
and where it matters plays the reboot (``fake_reboot``) and scans again. The commands the table
shows a person are run too, on a copy of the file: they must not clobber it either.
"""

import subprocess

import pytest

from hosttree import workstation
from scanner.remediation.confedit import EditError, edit_commands, grub_edit, merge_vfio_ids
from scanner.facts.boot import parse_grub_files
from scriptrun import Shims, fake_kernel, fake_reboot, fingerprint, run_script, scan, script_for, tree_commands
from test_script_tree_mode import no_iommu_host

OTHER = "# another GPU, passed through since last year\nblacklist nouveau\noptions vfio-pci ids=1002:67df\n"


def vfio004(tree):
    return next(f for f in scan(tree.root).findings if f.rule_id == "VFIO-004")


def run_twice(tree, tmp_path, **targets):
    """Run the script, check a second run changes nothing; the first run's process."""
    shims = Shims(tmp_path)
    proc = run_script(script_for(tree.root, **targets), tree.root, shims)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    fake_kernel(tree.root)  # the kernel binds what driver_override asked for
    before = fingerprint(tree.root)
    again = run_script(script_for(tree.root, **targets), tree.root, shims)
    assert again.returncode == 0 and fingerprint(tree.root) == before, again.stdout
    assert shims.calls() == []
    return proc


# -- modprobe.d and modules-load.d ---------------------------------------------------------------

def test_existing_modprobe_conf_keeps_its_lines_and_gains_the_ids(tmp_path):
    tree = workstation(tmp_path / "ws")
    tree.write("/etc/modprobe.d/vfio.conf", OTHER)
    proc = run_script(script_for(tree.root, devices=["01:00.0"]), tree.root, Shims(tmp_path))
    assert proc.returncode == 0, proc.stderr
    assert tree.path("/etc/modprobe.d/vfio.conf").read_text() == (
        "# another GPU, passed through since last year\nblacklist nouveau\n"
        "options vfio-pci ids=1002:67df,10de:2204,10de:1aef\n"
        "softdep nvidia pre: vfio-pci\nsoftdep snd_hda_intel pre: vfio-pci\n")
    assert "wrote /etc/modprobe.d/vfio.conf" in proc.stdout


def test_the_ids_go_where_modprobe_takes_them_from(tmp_path):
    """ids= in another file (the last one modprobe reads wins): the new ids join that line there."""
    tree = workstation(tmp_path / "ws")
    tree.write("/etc/modprobe.d/zz-gpu.conf", "options vfio_pci ids=1002:67df disable_vga=1\n")
    run_twice(tree, tmp_path, devices=["01:00.0"])
    assert tree.path("/etc/modprobe.d/zz-gpu.conf").read_text() == (
        "options vfio_pci ids=1002:67df,10de:2204,10de:1aef disable_vga=1\n"
        "softdep nvidia pre: vfio-pci\nsoftdep snd_hda_intel pre: vfio-pci\n")
    assert not tree.path("/etc/modprobe.d/vfio.conf").exists()


def test_modules_load_keeps_its_lines(tmp_path):
    tree = no_iommu_host(tmp_path / "h")
    tree.write("/etc/modules-load.d/vfio.conf", "# mine\nkvmgt\nvfio-pci\n")
    run_twice(tree, tmp_path)
    assert tree.path("/etc/modules-load.d/vfio.conf").read_text() == "# mine\nkvmgt\nvfio-pci\nvfio\nvfio_iommu_type1\n"


def test_the_commands_shown_to_a_person_merge_too(tmp_path):
    tree = workstation(tmp_path / "ws")
    tree.write("/etc/modprobe.d/vfio.conf", OTHER)
    report = scan(tree.root, devices=["01:00.0"])
    step = next(s for f in report.findings for s in f.remediation if s.action and s.action["kind"] == "vfio-ids")
    copy = tmp_path / "vfio.conf"
    copy.write_text(OTHER)
    lines = [c.replace("/etc/modprobe.d/vfio.conf", str(copy)) for c in step.commands if "/etc/modprobe.d" in c]
    for _ in range(2):  # twice: the second time changes nothing
        for line in lines:
            subprocess.run(["bash", "-c", line], check=True)
    assert copy.read_text() == ("# another GPU, passed through since last year\nblacklist nouveau\n"
                                "options vfio-pci ids=1002:67df,10de:2204,10de:1aef\n"
                                "softdep nvidia pre: vfio-pci\nsoftdep snd_hda_intel pre: vfio-pci\n")
    assert (tmp_path / "vfio.conf.vfio-scan.bak").read_text() == OTHER


def test_merge_is_pure_and_names_an_unreadable_file():
    files = [{"path": "/etc/modprobe.d/a.conf", "text": "options vfio-pci ids=1111:2222\n", "reason": None},
             {"path": "/etc/modprobe.d/b.conf", "text": "options vfio-pci ids=3333:4444\n", "reason": None}]
    path, changes = merge_vfio_ids(files, ["3333:4444", "5555:6666"])
    assert path == "/etc/modprobe.d/b.conf"
    assert changes == {path: "options vfio-pci ids=3333:4444,5555:6666\n"}
    files[0]["reason"] = "permission denied"
    with pytest.raises(EditError, match="/etc/modprobe.d/a.conf could not be read"):
        merge_vfio_ids(files, ["5555:6666"])


# -- GRUB --------------------------------------------------------------------------------------------

GRUB_FORMS = {
    "double quotes": ('GRUB_CMDLINE_LINUX_DEFAULT="quiet splash"', 'GRUB_CMDLINE_LINUX_DEFAULT="intel_iommu=on quiet splash"'),
    "single quotes": ("GRUB_CMDLINE_LINUX_DEFAULT='quiet splash'", "GRUB_CMDLINE_LINUX_DEFAULT='intel_iommu=on quiet splash'"),
    "no quotes": ("GRUB_CMDLINE_LINUX_DEFAULT=quiet", 'GRUB_CMDLINE_LINUX_DEFAULT="intel_iommu=on quiet"'),
    "empty": ("GRUB_CMDLINE_LINUX_DEFAULT=", 'GRUB_CMDLINE_LINUX_DEFAULT="intel_iommu=on"'),
    "exported, with a comment": ('export GRUB_CMDLINE_LINUX_DEFAULT="quiet"   # mine',
                                 'export GRUB_CMDLINE_LINUX_DEFAULT="intel_iommu=on quiet"   # mine'),
}


@pytest.mark.parametrize("form", sorted(GRUB_FORMS))
def test_grub_gets_the_parameter_in_every_quoting_style(form, tmp_path):
    line, edited = GRUB_FORMS[form]
    tree = no_iommu_host(tmp_path / "h")
    tree.write("/etc/default/grub", f"GRUB_DEFAULT=0\n{line}\nGRUB_CMDLINE_LINUX=\"\"\n")
    assert vfio004(tree).status == "fail"
    proc = run_twice(tree, tmp_path)
    assert tree.path("/etc/default/grub").read_text() == f"GRUB_DEFAULT=0\n{edited}\nGRUB_CMDLINE_LINUX=\"\"\n"
    assert "update-grub" in tree_commands(proc)
    fake_reboot(tree.root)
    assert vfio004(tree).status == "pass"


def test_a_grub_d_drop_in_that_wins_is_the_file_edited(tmp_path):
    """Ubuntu cloud images set GRUB_CMDLINE_LINUX_DEFAULT again in /etc/default/grub.d/50-cloudimg-settings.cfg."""
    tree = no_iommu_host(tmp_path / "h")
    dropin = "/etc/default/grub.d/50-cloudimg-settings.cfg"
    tree.write(dropin, 'GRUB_CMDLINE_LINUX_DEFAULT="console=tty1 console=ttyS0"\nGRUB_TERMINAL=console\n')
    main = tree.path("/etc/default/grub").read_text()
    finding = vfio004(tree)
    assert dropin in finding.remediation[0].summary
    run_twice(tree, tmp_path)
    assert tree.path("/etc/default/grub").read_text() == main
    assert tree.path(dropin).read_text().startswith('GRUB_CMDLINE_LINUX_DEFAULT="intel_iommu=on console=tty1 console=ttyS0"\n')
    fake_reboot(tree.root)
    assert vfio004(tree).status == "pass"


def test_a_drop_in_configured_elsewhere_is_not_taken_for_the_next_boot(tmp_path):
    """The main file has intel_iommu=on, a drop-in overrides it: the next boot does not get it."""
    tree = no_iommu_host(tmp_path / "h")
    tree.grub(default="quiet intel_iommu=on")
    tree.write("/etc/default/grub.d/50-cloudimg-settings.cfg", 'GRUB_CMDLINE_LINUX_DEFAULT="console=tty1"\n')
    step = vfio004(tree).remediation[0]
    assert step.action["add"] == ["intel_iommu=on"], step.summary  # not "already configured"


def test_a_drop_in_that_appears_after_the_scan_stops_the_edit(tmp_path):
    tree = no_iommu_host(tmp_path / "h")
    script = script_for(tree.root)
    tree.write("/etc/default/grub.d/60-late.cfg", 'GRUB_CMDLINE_LINUX_DEFAULT="quiet"\n')
    grub = tree.path("/etc/default/grub").read_text()
    proc = run_script(script, tree.root, Shims(tmp_path))
    assert proc.returncode == 1
    assert "FAILED: /etc/default/grub.d changed since the scan" in proc.stderr
    assert tree.path("/etc/default/grub").read_text() == grub
    assert "update-grub" not in tree_commands(proc)


def test_every_switch_off_goes(tmp_path):
    tree = no_iommu_host(tmp_path / "h")
    tree.cmdline("BOOT_IMAGE=/boot/vmlinuz root=/dev/sda1 ro quiet intel_iommu=off intel_iommu=off")
    tree.write("/etc/default/grub", 'GRUB_CMDLINE_LINUX_DEFAULT="quiet intel_iommu=off intel_iommu=off"\n'
                                    "GRUB_CMDLINE_LINUX='intel_iommu=off'\n")
    run_twice(tree, tmp_path)
    text = tree.path("/etc/default/grub").read_text()
    assert "intel_iommu=off" not in text and text.count("intel_iommu=on") == 1
    assert text == 'GRUB_CMDLINE_LINUX_DEFAULT="intel_iommu=on quiet"\nGRUB_CMDLINE_LINUX=\'\'\n'


def test_a_form_it_cannot_rewrite_is_named_not_edited(tmp_path):
    tree = no_iommu_host(tmp_path / "h")
    tree.write("/etc/default/grub", 'GRUB_CMDLINE_LINUX_DEFAULT="quiet \\"splash\\""\n')
    step = vfio004(tree).remediation[0]
    assert step.manual and not step.commands
    assert "/etc/default/grub line 1" in step.summary
    script = script_for(tree.root)
    assert "put_file /etc/default/grub" not in script and "# NO AUTOMATED FIX: VFIO-004 host" in script


@pytest.mark.parametrize("param", ["root=/dev/mapper/vg-root", "resume=UUID=1/2+3", "vfio-pci.ids=10de:2204,10de:1aef"])
def test_parameters_with_slashes_and_commas_are_plain_words(param):
    files = [{"path": "/etc/default/grub", "text": f'GRUB_CMDLINE_LINUX="{param} ro"\n', "reason": None}]
    assert grub_edit(files, [], [param]) == {"/etc/default/grub": 'GRUB_CMDLINE_LINUX="ro"\n'}
    added = grub_edit([{"path": "/etc/default/grub", "text": 'GRUB_CMDLINE_LINUX_DEFAULT="quiet"\n', "reason": None}],
                      [param], [])
    assert added == {"/etc/default/grub": f'GRUB_CMDLINE_LINUX_DEFAULT="{param} quiet"\n'}


def test_the_person_s_commands_edit_the_line_as_scanned(tmp_path):
    old = "GRUB_DEFAULT=0\nGRUB_CMDLINE_LINUX_DEFAULT='quiet splash'\n"
    new = "GRUB_DEFAULT=0\nGRUB_CMDLINE_LINUX_DEFAULT='intel_iommu=on quiet splash'\n"
    copy = tmp_path / "grub"
    copy.write_text(old)
    for _ in range(2):
        for line in edit_commands(str(copy), old, new):
            subprocess.run(["bash", "-c", line], check=True)
    assert copy.read_text() == new
    # a file that changed since does not get a stale line
    copy.write_text("GRUB_DEFAULT=0\nGRUB_CMDLINE_LINUX_DEFAULT='changed'\n")
    for line in edit_commands(str(copy), old, new):
        subprocess.run(["bash", "-c", line], check=True)
    assert copy.read_text() == "GRUB_DEFAULT=0\nGRUB_CMDLINE_LINUX_DEFAULT='changed'\n"


def test_next_boot_is_read_from_every_file_in_order():
    files = [("/etc/default/grub", 'GRUB_CMDLINE_LINUX_DEFAULT="quiet intel_iommu=on"\n'),
             ("/etc/default/grub.d/50-cloud.cfg", 'GRUB_CMDLINE_LINUX_DEFAULT="console=tty1"\n'),
             ("/etc/default/grub.d/60-iommu.cfg", 'GRUB_CMDLINE_LINUX_DEFAULT+=" iommu=pt"\n')]
    assert parse_grub_files(files).raw == "console=tty1 iommu=pt"


@pytest.mark.parametrize("cfg, ok", [
    ("menuentry 'Debian' {\n\tlinux /vmlinuz-6.1 root=UUID=1 ro intel_iommu=on quiet\n}\n", True),
    ("menuentry 'Debian' {\n\tlinux /vmlinuz-6.1 root=UUID=1 ro quiet\n}\n", False),
    ("menuentry 'Debian' {\n\tlinux /vmlinuz-6.1 root=UUID=1 ro xintel_iommu=on\n}\n", False),
])
def test_a_live_regeneration_is_checked_in_the_generated_grub_cfg(cfg, ok, tmp_path):
    """After update-grub on a live host, the linux lines must carry the parameter: when a file the
    edit did not reach overrides it, the boot-configuration block fails instead of promising a reboot."""
    from scanner.remediation.script_paths import INROOT
    from scanner.remediation.script_runtime import runtime

    (tmp_path / "boot/grub").mkdir(parents=True)
    (tmp_path / "boot/grub/grub.cfg").write_text(cfg)
    probe = tmp_path / "probe.sh"
    probe.write_text(runtime(INROOT, [], []) + INROOT + '\napplied() { return 0; }  # as on a live host\n'
                     'check() { generated_has intel_iommu=on; }\nblock boot check\nfinish\n')
    proc = subprocess.run(["bash", str(probe)], env={"ROOT": str(tmp_path), "PATH": "/usr/bin:/bin"},
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == (0 if ok else 1), proc.stdout + proc.stderr
    if not ok:
        assert "FAILED: /boot/grub/grub.cfg does not carry intel_iommu=on after regenerating it" in proc.stderr
