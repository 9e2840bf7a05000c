"""Real rules on real kernel logs and command lines, against MANIFEST.tsv's hand-read ground truth."""

import csv

import pytest

from hosttree import SHARED_DATA, ready_host
from scanner.engine.runner import Scan
from scanner.host.tree import TreeHost
from scanner.engine.plugins import load_plugins
from scanner.engine.scanning import scan_host

GAMMAMAN88_CMDLINE = ("BOOT_IMAGE=/boot/vmlinuz-6.5.13-1-pve root=/dev/mapper/pve-root ro quiet amd_iommu=on "
                      "iommu=pt nomodeset pcie_acs_override=downstream initcall_blacklist=sysfb_init")


def _full_logs():
    manifest = SHARED_DATA / "MANIFEST.tsv"
    if not manifest.is_file():
        return []
    with manifest.open(newline="") as fh:
        rows = [r for r in csv.DictReader(fh, delimiter="\t")
                if r["file"].startswith("dmesg/") and not r["file"].startswith("dmesg/fragments/")
                and r["gt_interrupt_remapping"].startswith(("yes", "no"))]
    return [pytest.param(r["file"], r["gt_vendor"], r["gt_interrupt_remapping"].split()[0], id=r["file"][6:])
            for r in rows]


FULL_LOGS = _full_logs()


@pytest.fixture(scope="module")
def rules():
    return load_plugins(autoload=False).sorted_rules()


def finding(tree, rules, rule_id):
    report = scan_host(TreeHost(str(tree.root)), rules, Scan())
    (found,) = [f for f in report.findings if f.rule_id == rule_id]
    return found


def test_ground_truth_covers_both_answers():
    if not FULL_LOGS:
        pytest.skip("shared data not found")
    answers = [p.values[2] for p in FULL_LOGS]
    assert answers.count("yes") >= 5 and answers.count("no") >= 3


@pytest.mark.parametrize("path, vendor, remapping", FULL_LOGS)
def test_interrupt_remapping_from_the_real_log(tmp_path, rules, path, vendor, remapping):
    tree = ready_host(tmp_path / "root", vendor=vendor)
    tree.remove("/proc/interrupts")  # only the log can tell now
    tree.kernel_log((SHARED_DATA / path).read_bytes())
    got = finding(tree, rules, "VFIO-006")
    if remapping == "yes":
        assert got.status == "pass", got.message
        assert any(e.source == "kernel log" for e in got.evidence)
    else:
        assert got.status == "warn", got.message
        assert "no interrupt remapping" in got.message
        assert any("allow_unsafe_interrupts" in " ".join(s.commands) for s in got.remediation)


def test_gammaman88_cmdline_invalid_option_and_downgrade(tmp_path, rules, shared_data):
    tree = ready_host(tmp_path / "root", vendor="amd", cmdline=GAMMAMAN88_CMDLINE)
    tree.grub(default="quiet amd_iommu=on iommu=pt nomodeset pcie_acs_override=downstream initcall_blacklist=sysfb_init")
    tree.kernel_log((shared_data / "dmesg/gammaman88-pve-ryzen5700u-headcut.txt").read_bytes())
    got = finding(tree, rules, "VFIO-004")
    assert got.status == "warn"
    assert "amd_iommu=on is not a valid option" in got.message
    assert "pcie_acs_override is a security downgrade" in got.message
    assert ("kernel log", "AMD-Vi: Unknown option - 'on'") in [(e.source, e.value) for e in got.evidence]
    (step,) = got.remediation
    assert step.action["remove"] == ["amd_iommu=on"] and step.action["add"] == []
    assert step.requires_reboot
    # the one line that holds it is rewritten without it, the other words kept
    (edit,) = [c for c in step.commands if "sed -i" in c]
    assert '"quiet iommu=pt nomodeset pcie_acs_override=downstream initcall_blacklist=sysfb_init"' in edit
    assert step.commands[-1] == "update-grub"


def test_dmar_enabled_log_line_is_not_a_dmar_table(tmp_path, rules, shared_data):
    tree = ready_host(tmp_path / "root")
    tree.remove("/sys/firmware/acpi/tables/DMAR")
    log = (shared_data / "dmesg/fragments/frag-ravada-docs-dmar-enabled-groups.txt").read_text()
    assert "DMAR: IOMMU enabled" in log and "ACPI: DMAR" not in log
    tree.kernel_log(log)
    got = finding(tree, rules, "VFIO-002")
    assert got.status == "fail"
    assert "no ACPI DMAR table" in got.message
    assert any("not evidence" in e.value for e in got.evidence if e.source == "kernel log")
    assert all(s.manual and s.phase == "firmware" for s in got.remediation)
