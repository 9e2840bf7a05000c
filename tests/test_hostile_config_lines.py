"""A hostile host's configuration lines cost it time in proportion to their length, and odd digits no error.

A 64 KiB ``softdep a pre:pre:pre:...`` line in modprobe.d, a megabyte of empty lines in an initramfs
module list or a udev rule of ``modprobe modprobe ...`` made the next-boot patterns retry from every
starting point: quadratic, minutes of one CPU with the interpreter's lock held (a fleet audit's other
hosts starved meanwhile) until the rule's deadline ended it in an error. And ``isdigit()`` says yes to
"²", which ``int()`` refuses: a uid, a memlock limit or an IOMMU group named so ended a rule or the
HTML report in a traceback. Here each such host is scanned with a generous rule deadline: a rule that
errors (its deadline passed, or an exception) fails the test.
"""

import pytest

from hosttree import workstation
from scriptrun import scan

HUGE = 1 << 20  # the read cap of a configuration file: what a host can hand over


def errors(report):
    return [(f.rule_id, f.message) for f in report.findings if f.status == "error"]


@pytest.fixture
def deadline(monkeypatch):
    monkeypatch.setenv("VFIO_SCAN_PLUGIN_TIMEOUT", "60")


@pytest.mark.parametrize("path, text", [
    ("/etc/modprobe.d/evil.conf", "softdep a " + "pre:" * (HUGE // 8) + "\n"),
    ("/etc/initramfs-tools/modules", "\n" * (HUGE // 2)),
    ("/etc/initramfs-tools/modules", " \t\n" * (HUGE // 6)),
    ("/etc/mkinitcpio.conf", "MODULES=(\n" * (HUGE // 20)),
    ("/etc/udev/rules.d/99-evil.rules", "modprobe " * (HUGE // 20) + "\n"),
])
def test_a_long_hostile_line_is_read_to_its_end_without_the_rule_running_out_of_time(tmp_path, deadline, path, text):
    tree = workstation(tmp_path / "ws")
    tree.write(path, text)
    report = scan(tree.root, devices=["01:00.0"])
    assert errors(report) == []
    assert {f.rule_id for f in report.findings} >= {"VFIO-016", "VFIO-017"}


def test_the_boot_loaders_of_vfio_pci_are_still_found(tmp_path):
    from scanner.facts.boot_lines import loads_vfio_pci_early, modprobe_vfio_lines

    assert loads_vfio_pci_early("# modules\n  vfio-pci  # for the GPU\n")
    assert loads_vfio_pci_early('force_drivers+="nvme\n vfio-pci"\n')
    assert loads_vfio_pci_early("MODULES=(ext4\nvfio_pci)\n")
    assert not loads_vfio_pci_early("MODULES=(ext4) vfio_pci\n")
    assert not loads_vfio_pci_early('force_drivers="" other="vfio-pci"\n')
    assert not loads_vfio_pci_early("#vfio_pci\n")
    assert modprobe_vfio_lines("softdep nouveau pre: vfio-pci\nsoftdep snd_hda_intel post: vfio-pci\n") \
        == (None, ["nouveau"])


@pytest.mark.parametrize("path, text, options", [
    ("/etc/passwd", "root:x:0:0:root:/root:/bin/bash\nalice:x:\u00b2:\u00b2:A:/home/alice:/bin/sh\n",
     {"vm_user": "alice"}),
    ("/etc/passwd", "root:x:0:0:root:/root:/bin/bash\nalice:x:" + "1" * 5000 + ":100:A:/home/alice:/bin/sh\n",
     {"vm_user": "alice"}),
    ("/etc/security/limits.conf", "alice hard memlock \u00b2\n", {"vm_user": "alice"}),
])
def test_digits_that_are_no_number_are_read_past(tmp_path, deadline, path, text, options):
    from scanner.engine.plugins import load_plugins
    from scanner.engine.runner import Scan
    from scanner.engine.scanning import scan_host
    from scanner.facts.targets import parse_all
    from scanner.host.tree import TreeHost

    tree = workstation(tmp_path / "ws")
    if path != "/etc/passwd":
        tree.write("/etc/passwd", "root:x:0:0:root:/root:/bin/bash\nalice:x:1000:1000:A:/home/alice:/bin/sh\n")
    tree.write(path, text)
    selectors, requests = parse_all(devices=["01:00.0"], vfs=[])
    report = scan_host(TreeHost(str(tree.root)), load_plugins(autoload=False).sorted_rules(),
                       Scan(fail_on="fail", guest_memory=1 << 30, **options), selectors=selectors, vfs=requests)
    assert errors(report) == []


def test_an_iommu_group_named_in_odd_digits_is_drawn_in_the_html_report(tmp_path):
    from clihelpers import run_cli

    tree = workstation(tmp_path / "ws")
    tree.pci_device("0000:07:00.0", "8086", "10d3", "020000", driver="e1000e", group="\u00b2")
    out = tmp_path / "report.html"
    proc = run_cli("scan", "--root", tree.root, "--class", "0200", "--format", "html", "-o", out)
    assert "Traceback" not in proc.stderr and "failed" not in proc.stderr, proc.stderr
    assert proc.returncode in (1, 3)
    assert "0000:07:00.0" in out.read_text("utf-8")
