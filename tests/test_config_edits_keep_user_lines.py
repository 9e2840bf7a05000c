"""Edits of the boot and module configuration never lose what the user's own lines say.

Two forms the edits did not know: a GRUB ``+=`` (``GRUB_CMDLINE_LINUX_DEFAULT+=" quiet"``), after
which the fix appended a plain assignment that threw the ``+=`` words away; and an ``options
vfio-pci`` line that kmod joins with the next (a backslash at its end), whose ids the scan did not
see and after which the fix added a second ``ids=`` line that the kernel keeps instead.
"""

import pytest

from hosttree import workstation
from scanner.facts.boot_lines import modprobe_vfio_lines
from scanner.remediation.confedit import EditError, grub_edit, merge_vfio_ids
from scriptrun import Shims, fake_reboot, run_script, script_for
from test_script_merge import vfio004
from test_script_tree_mode import no_iommu_host

PLUS_EQUALS = ('GRUB_DEFAULT=0\nGRUB_CMDLINE_LINUX=""\nGRUB_CMDLINE_LINUX_DEFAULT+="quiet mitigations=off"\n'
               'GRUB_CMDLINE_LINUX_DEFAULT+=" intel_iommu=off"\n')
CONTINUED = "# the Radeon\noptions vfio-pci \\\n    ids=1002:67df,1002:aaf0\n"


def grub(text):
    return [{"path": "/etc/default/grub", "text": text, "reason": None}]


def test_a_grub_plus_equals_keeps_its_words_when_a_parameter_is_added(tmp_path):
    tree = no_iommu_host(tmp_path / "h")
    tree.write("/etc/default/grub", PLUS_EQUALS)
    proc = run_script(script_for(tree.root), tree.root, Shims(tmp_path))
    assert proc.returncode == 0, proc.stderr
    text = tree.path("/etc/default/grub").read_text()
    assert text.startswith('GRUB_DEFAULT=0\nGRUB_CMDLINE_LINUX=""\nGRUB_CMDLINE_LINUX_DEFAULT+="quiet mitigations=off"\n')
    assert text.endswith('GRUB_CMDLINE_LINUX_DEFAULT="$GRUB_CMDLINE_LINUX_DEFAULT intel_iommu=on"\n')
    assert "intel_iommu=off" not in text
    fake_reboot(tree.root)
    assert vfio004(tree).status == "pass"
    assert "mitigations=off" in tree.path("/proc/cmdline").read_text()


def test_a_plain_assignment_before_a_plus_equals_takes_the_new_parameter():
    files = grub('GRUB_CMDLINE_LINUX_DEFAULT="quiet"\nGRUB_CMDLINE_LINUX_DEFAULT+=" splash"\n')
    edited = grub_edit(files, ["intel_iommu=on"], [])
    assert edited == {"/etc/default/grub": 'GRUB_CMDLINE_LINUX_DEFAULT="intel_iommu=on quiet"\n'
                                           'GRUB_CMDLINE_LINUX_DEFAULT+=" splash"\n'}


def test_a_continued_options_line_is_read_as_kmod_reads_it():
    ids, _ = modprobe_vfio_lines(CONTINUED)
    assert ids == ("1002:67df", "1002:aaf0")


def test_ids_are_not_merged_into_a_continued_options_line_but_left_to_a_person():
    files = [{"path": "/etc/modprobe.d/radeon.conf", "text": CONTINUED, "reason": None}]
    with pytest.raises(EditError, match="goes on over several lines"):
        merge_vfio_ids(files, ["10de:2204", "10de:1aef"])


def test_the_fix_leaves_a_continued_line_alone_and_says_so(tmp_path):
    tree = workstation(tmp_path / "ws")
    tree.write("/etc/modprobe.d/radeon.conf", CONTINUED)
    script = script_for(tree.root, devices=["01:00.0"])
    proc = run_script(script, tree.root, Shims(tmp_path))
    assert tree.path("/etc/modprobe.d/radeon.conf").read_text() == CONTINUED
    assert not tree.path("/etc/modprobe.d/vfio.conf").exists()
    assert "goes on over several lines" in script
