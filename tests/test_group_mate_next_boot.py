"""VFIO-012: a group mate that holds nothing now, but that its host driver takes again at the next boot.

Reproduced on Debian's 6.1 kernel under QEMU: the target 04:01.0 on vfio-pci, kept there at boot by
a udev ``driver_override`` rule; its IOMMU-group mate, an e1000, merely unbound by hand. QEMU starts
the VM now; after a reboot e1000 takes the mate again and QEMU says "group 10 is not viable". The
scan said READY. Here the workstation's group 11 (a PCIe-to-PCI bridge and two e1000, 06:01.0 and
06:02.0) plays that host.
"""

import json

import pytest

from clihelpers import run_cli
from hosttree import RELEASE, workstation
from scanner.engine.plugins import load_plugins
from scanner.engine.runner import Scan
from scanner.engine.scanning import scan_host
from scanner.facts.targets import parse_all
from scanner.host.tree import TreeHost

_REGISTRY = load_plugins(autoload=False)
TARGET, MATE = "0000:06:01.0", "0000:06:02.0"
ALIAS_FILE = f"/lib/modules/{RELEASE}/modules.alias"
#: lines as in Debian's modules.alias for 6.1 (e1000 names each of its device ids)
ALIASES = ("alias pci:v00008086d0000100Esv*sd*bc*sc*i* e1000\n"
           "alias pci:v00008086d000015BCsv*sd*bc*sc*i* e1000e\n"
           "alias vfio_pci:v*d*sv*sd*bc*sc*i* vfio_pci\n")


def udev_rule(address, driver="vfio-pci"):
    return f'ACTION=="add", SUBSYSTEM=="pci", KERNEL=="{address}", ATTR{{driver_override}}="{driver}"\n'


@pytest.fixture
def host(tmp_path):
    """The audit's host: target on vfio-pci and kept there at boot, its group mate unbound by hand."""
    tree = workstation(tmp_path / "ws")
    tree.bind(TARGET, "vfio-pci")
    tree.bind(MATE, None)
    tree.write("/etc/udev/rules.d/70-vfio.rules", udev_rule(TARGET))
    tree.write(ALIAS_FILE, ALIASES)
    return tree


def group_finding(tree, snapshot=False):
    """VFIO-012's finding on the tree, or on the collector's snapshot of it (which must say the same)."""
    host = TreeHost(str(tree.root))
    if snapshot:
        from scanner import collector
        from scanner.host.snapshot import SnapshotHost, parse_snapshot

        host = SnapshotHost(parse_snapshot(collector.dumps(collector.collect(str(tree.root))), "snapshot"))
    rules = [r for r in _REGISTRY.sorted_rules() if r.id == "VFIO-012"]
    report = scan_host(host, rules, Scan(), selectors=parse_all(devices=[TARGET])[0])
    (finding,) = report.findings
    return finding


def test_an_unbound_mate_its_driver_takes_at_boot_is_lost_at_next_boot(host):
    f = group_finding(host)
    assert f.status == "fail"
    assert f.message.startswith("works now, lost at next boot: IOMMU group 11 is viable now, but at the next boot "
                                f"e1000 takes {MATE}")
    assert "(no driver now)" in f.message and '"group 11 is not viable"' in f.message
    assert {e.source: e.value for e in f.evidence}[ALIAS_FILE].endswith(f"({MATE}) matches e1000")
    (step,) = f.remediation
    assert step.persistent and step.action["kind"] == "udev-driver-override" and step.action["address"] == MATE
    assert f"Keep {MATE} off e1000 at every boot" in step.summary


def test_the_verdict_is_not_ready_and_the_loss_is_named(host):
    proc = run_cli("scan", "--root", host.root, "--format", "json", "--device", "06:01.0")
    doc = json.loads(proc.stdout)
    assert doc["summary"]["readiness"] == "NOT_READY" and doc["summary"]["lost_at_next_boot"] == 1, doc["summary"]
    assert proc.returncode == 1
    # with the mate kept off e1000 at boot as well, nothing else stood between this host and READY
    host.write("/etc/udev/rules.d/71-mate.rules", udev_rule(MATE))
    doc = json.loads(run_cli("scan", "--root", host.root, "--format", "json", "--device", "06:01.0").stdout)
    assert doc["summary"]["readiness"] == "READY" and doc["summary"]["lost_at_next_boot"] == 0


def test_a_mate_on_vfio_pci_through_a_runtime_binding_only_is_lost_too(host):
    host.bind(MATE, "vfio-pci")
    f = group_finding(host)
    assert f.status == "fail" and f.message.startswith("works now, lost at next boot")
    assert f"e1000 takes {MATE}" in f.message and "(on vfio-pci now)" in f.message


@pytest.mark.parametrize("keeper, shown", [
    (("/etc/udev/rules.d/71-mate.rules", udev_rule(MATE)), "udev rule /etc/udev/rules.d/71-mate.rules (vfio-pci)"),
    (("/etc/udev/rules.d/71-mate.rules", udev_rule(MATE, "pci-stub")), "(pci-stub)"),
    ((f"/etc/driverctl.d/pci-{MATE}", "vfio-pci\n"), f"driverctl override /etc/driverctl.d/pci-{MATE}"),
    (("/etc/modprobe.d/blacklist-e1000.conf", "blacklist e1000\n"), "blacklist e1000 in /etc/modprobe.d/"),
    (("/etc/modprobe.d/vfio.conf", "options vfio-pci ids=8086:100e\nsoftdep e1000 pre: vfio-pci\n"),
     "vfio-pci ids=8086:100e in /etc/modprobe.d/vfio.conf; softdep e1000 pre: vfio-pci"),
])
def test_a_mate_kept_off_its_driver_at_boot_keeps_the_group_viable(host, keeper, shown):
    host.write(*keeper)
    f = group_finding(host)
    assert f.status == "pass", f.message
    assert f.message.endswith("the group is viable")
    assert any(e.source == "next boot" and e.value.startswith(f"{MATE}: kept off by ") and shown in e.value
               for e in f.evidence)


def test_pci_stub_ids_on_the_next_boots_command_line_keeps_it_off(host):
    host.grub(default="quiet intel_iommu=on iommu=pt pci-stub.ids=8086:100e")
    assert group_finding(host).status == "pass"


def test_a_blacklist_on_the_running_command_line_only_does_not_keep_it_off(host):
    """GRUB's configuration is what the next boot passes: a blacklist typed at the boot prompt is gone."""
    host.cmdline("BOOT_IMAGE=/boot/vmlinuz-6.1.0-56-amd64 root=/dev/sda1 ro quiet intel_iommu=on iommu=pt "
                 "modprobe.blacklist=e1000")
    assert group_finding(host).status == "fail"
    host.grub(default="quiet intel_iommu=on iommu=pt modprobe.blacklist=e1000")
    assert group_finding(host).status == "pass"


def test_a_mate_no_driver_claims_keeps_passing(host):
    """An unbound function that no module's alias matches (an ISA bridge, a device without a Linux driver)
    stays unbound at the next boot too."""
    host.write(ALIAS_FILE, ALIASES.replace("d0000100E", "d00001000"))
    f = group_finding(host)
    assert f.status == "pass"
    assert f"unrelated device(s) {MATE} (no driver)" in f.message


def test_a_builtin_driver_is_found_in_modules_builtin_alias(host):
    host.write(ALIAS_FILE, "alias vfio_pci:v*d*sv*sd*bc*sc*i* vfio_pci\n")
    assert group_finding(host).status == "pass"
    host.write(f"/lib/modules/{RELEASE}/modules.builtin.alias", "alias pci:v00008086d0000100Esv*sd*bc*sc*i* e1000\n")
    f = group_finding(host)
    assert f.status == "fail" and f"e1000 takes {MATE}" in f.message
    assert group_finding(host, snapshot=True).message == f.message  # the collector captures that file too


def test_an_unreadable_modules_alias_is_a_warning_that_says_so_never_a_fail(host):
    host.remove(ALIAS_FILE)
    f = group_finding(host)
    assert f.status == "warn"
    assert f.message.endswith(f"but whether a host driver takes {MATE} again at the next boot cannot be told: "
                              f"cannot read {ALIAS_FILE} (missing)")
    assert not f.message.startswith("works now, lost at next boot")
