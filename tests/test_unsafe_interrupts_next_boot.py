"""VFIO-006: ``allow_unsafe_interrupts`` set at run time only is lost at the next boot.

Reproduced on Debian's 6.1 kernel under QEMU (no interrupt remapping): ``echo Y >
/sys/module/vfio_iommu_type1/parameters/allow_unsafe_interrupts`` made QEMU start the VM, and the
scan said READY_WITH_WARNINGS with nothing lost at next boot; after a reload of vfio_iommu_type1 (as
a reboot does) the parameter was N and QEMU failed with "Failed to set iommu for container:
Operation not permitted". Only what the next boot reads keeps the override: ``options
vfio_iommu_type1 allow_unsafe_interrupts=1`` in /etc/modprobe.d, or the parameter on the next boot's
command line.
"""

import json

import pytest

from clihelpers import run_cli
from hosttree import RELEASE, ready_host
from scanner.engine.plugins import load_plugins
from scanner.engine.runner import Scan, run_rules
from scanner.facts import Facts
from scanner.host.tree import TreeHost

_REGISTRY = load_plugins(autoload=False)
PARAM = "/sys/module/vfio_iommu_type1/parameters/allow_unsafe_interrupts"
CONF = "/etc/modprobe.d/vfio-unsafe.conf"
OPTION = "options vfio_iommu_type1 allow_unsafe_interrupts=1\n"
BOOT = f"BOOT_IMAGE=/boot/vmlinuz-{RELEASE} root=/dev/sda1 ro quiet intel_iommu=on"
LOST = "works now, lost at next boot: "


@pytest.fixture
def host(tmp_path):
    """No interrupt remapping (device MSIs on plain PCI-MSI), the override written to sysfs by hand."""
    tree = ready_host(tmp_path / "intel")
    tree.interrupts(remapped=False)
    tree.kernel_log("[    0.0] Linux version 6.1.0-56-amd64\n[    0.08] DMAR: IOMMU enabled\n")
    tree.write(PARAM, "Y\n")
    return tree


def finding(tree):
    (rule,) = [r for r in _REGISTRY.sorted_rules() if r.id == "VFIO-006"]
    (f,) = run_rules([rule], Facts(TreeHost(str(tree.root))), Scan())
    return f


def evidence(f):
    return [(e.source, e.value) for e in f.evidence]


def test_set_at_run_time_only_is_lost_at_next_boot_and_fails_as_without_it(host):
    f = finding(host)
    assert f.status == "fail"
    assert f.message.startswith(LOST + "without interrupt remapping VFIO works only through allow_unsafe_interrupts, "
                                "set now by the running module's parameter (set at run time), but not for the next "
                                "boot (/etc/default/grub: no vfio_iommu_type1.allow_unsafe_interrupts=; "
                                "/etc/modprobe.d/*.conf: no options vfio_iommu_type1 allow_unsafe_interrupts=)")
    assert "QEMU fails to start" in f.message
    assert (PARAM, "Y") in evidence(f)
    assert ("next boot", "/etc/modprobe.d/*.conf: no options vfio_iommu_type1 allow_unsafe_interrupts=") in evidence(f)
    firmware, last_resort = f.remediation
    assert firmware.phase == "firmware" and last_resort.manual  # the override is never applied by the fix script
    assert any("allow_unsafe_interrupts=1" in c for c in last_resort.commands)


def test_the_verdict_names_the_loss(host):
    proc = run_cli("scan", "--root", host.root, "--format", "json")
    doc = json.loads(proc.stdout)
    assert doc["summary"]["readiness"] == "NOT_READY" and doc["summary"]["lost_at_next_boot"] == 1, doc["summary"]
    host.write(CONF, OPTION)
    doc = json.loads(run_cli("scan", "--root", host.root, "--format", "json").stdout)
    assert doc["summary"]["readiness"] == "READY_WITH_WARNINGS" and doc["summary"]["lost_at_next_boot"] == 0


@pytest.mark.parametrize("where, text, shown", [
    (CONF, OPTION, f"options vfio_iommu_type1 allow_unsafe_interrupts=1 in {CONF}"),
    (CONF, "options vfio-iommu-type1 allow-unsafe-interrupts=Y\n",
     f"options vfio-iommu-type1 allow-unsafe-interrupts=Y in {CONF}"),
    ("/etc/default/grub", 'GRUB_CMDLINE_LINUX_DEFAULT="quiet intel_iommu=on vfio_iommu_type1.allow_unsafe_interrupts=1"\n',
     "vfio_iommu_type1.allow_unsafe_interrupts=1 on /etc/default/grub"),
])
def test_set_for_the_next_boot_too_stays_the_warning_naming_where(host, where, text, shown):
    host.write(where, text)
    f = finding(host)
    assert f.status == "warn" and not f.message.startswith(LOST)
    assert "allow_unsafe_interrupts override" in f.message
    assert ("next boot", shown) in evidence(f)


def test_on_the_running_command_line_but_not_the_next_boots_is_lost(host):
    """A parameter typed at the GRUB prompt: VFIO-016 never puts a security downgrade back, but with no
    remapping the VM depends on it, so its going is what VFIO-006 reports."""
    host.cmdline(f"{BOOT} vfio_iommu_type1.allow_unsafe_interrupts=1")
    f = finding(host)
    assert f.status == "fail" and f.message.startswith(LOST)
    assert "set now by vfio_iommu_type1.allow_unsafe_interrupts=1 on /proc/cmdline" in f.message


def test_turned_off_in_modprobe_d_is_lost(host):
    host.write(CONF, "options vfio_iommu_type1 allow_unsafe_interrupts=0\n")
    f = finding(host)
    assert f.status == "fail" and f.message.startswith(LOST)
    assert f"allow_unsafe_interrupts=0 in {CONF}" in f.message


def test_a_builtin_module_never_reads_modprobe_d(host):
    host.write(CONF, OPTION)
    host.modules(loaded=["vfio", "vfio_pci", "vfio_pci_core", "kvm_intel", "kvm"], builtin=["vfio_iommu_type1"],
                 installed=["vfio", "vfio_pci", "vfio_pci_core"])
    f = finding(host)
    assert f.status == "fail" and "/etc/modprobe.d: not read, vfio_iommu_type1 is built in" in f.message


def test_with_no_boot_configuration_the_running_command_line_stands_for_the_next(host):
    """The audit's host booted its kernel directly (no GRUB): what it runs with is what boots again."""
    host.remove("/etc/default/grub")
    f = finding(host)
    assert f.status == "fail"
    assert "/proc/cmdline (the next boot's is unknown: unknown boot loader; this one's stands for it)" in f.message
    host.cmdline(f"{BOOT} vfio_iommu_type1.allow_unsafe_interrupts=1")
    assert finding(host).status == "warn"


def test_an_unreadable_modprobe_d_file_is_a_warning_that_says_so_never_a_fail(host):
    host.mkdir("/etc/modprobe.d/vfio.conf")  # a directory where a file is expected: cannot be read
    f = finding(host)
    assert f.status == "warn" and not f.message.startswith(LOST)
    assert "whether the next boot sets it too cannot be told (/etc/modprobe.d/vfio.conf:" in f.message


def test_with_remapping_not_seen_but_not_disproved_the_loss_is_a_warning(host):
    """No MSI line to judge: remapping is only not seen, so losing the override is said, as a warning."""
    host.write("/proc/interrupts", "           CPU0\n  0:  44  IO-APIC  2-edge  timer\n")
    f = finding(host)
    assert f.status == "warn" and f.message.startswith(LOST)
