"""VFIO-017 does not call a binding "lost at next boot" when the configuration that keeps it cannot be read.

A modprobe.d file with one byte that is not UTF-8 (in a comment), one an unprivileged scan may not
read, or a rules directory it may not list, was taken for "nothing there": the GPU on vfio-pci through
``ids=`` in that very file came out "works now, lost at next boot", NOT_READY, and the fix proposed a
second binding. What cannot be read is a skip naming it, as VFIO-007 already says for vfio-pci itself.
"""

import pytest

from hosttree import workstation
from scriptrun import scan

GPU, AUDIO = "0000:01:00.0", "0000:00:01.0"
KEEPS = "options vfio-pci ids=10de:2204,10de:1aef\nsoftdep nvidia pre: vfio-pci\nsoftdep snd_hda_intel pre: vfio-pci\n"


def binding(tree):
    return next(f for f in scan(tree.root, devices=["01:00.0"]).findings
                if f.rule_id == "VFIO-017" and f.subject == GPU)


@pytest.fixture
def ws(tmp_path):
    tree = workstation(tmp_path / "ws")
    tree.bind(GPU, "vfio-pci")
    tree.bind("0000:01:00.1", "vfio-pci")
    return tree


def test_the_file_that_keeps_it_with_a_byte_that_is_no_text(ws):
    ws.write("/etc/modprobe.d/vfio.conf", KEEPS.encode() + b"# r\xe9sum\xe9\n")
    f = binding(ws)
    assert f.status == "skip", f.message
    assert f.message.startswith(f"cannot tell whether anything binds {GPU} to vfio-pci at boot: cannot read "
                                "/etc/modprobe.d/vfio.conf: garbled")


def test_a_rules_directory_that_cannot_be_listed(ws):
    ws.symlink("/etc/udev/rules.d", "/etc/udev/rules.d")  # a loop: listing it fails, as a denied one does
    f = binding(ws)
    assert f.status == "skip" and "cannot read /etc/udev/rules.d: " in f.message, f.message


def test_with_everything_readable_a_runtime_binding_is_still_lost_at_next_boot(ws):
    f = binding(ws)
    assert f.status == "fail" and f.message.startswith("works now, lost at next boot"), f.message
    ws.write("/etc/modprobe.d/vfio.conf", KEEPS)
    assert binding(ws).status == "pass"
