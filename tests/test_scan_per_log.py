"""What a scan derives once for the host, it derives once however many devices are targets.

A scan with every device a target (and VFs asked of every PF) runs each device rule thousands of times: the kernel log is
searched once per kind of line for the whole scan (then the few lines found are looked through per
device), and an installed tool is looked up once, not once per device's fix. Counted on two
generated trees of different sizes, every device a target: the counts are the same.
"""

from __future__ import annotations

import re
import sys
import tempfile
from pathlib import Path
from unittest import mock

import pytest

from clihelpers import REPO
from hardening import builtin_rules
from scanner.engine.runner import Scan
from scanner.facts import Facts
from scanner.facts.kernel_log import KernelLog
from scanner.host.tree import TreeHost
from scanner.engine.scanning import scan_host
from scanner.facts.targets import parse_all

sys.path.insert(0, str(REPO / "benchmarks"))
import treegen  # noqa: E402


@pytest.fixture(scope="module")
def trees():
    with tempfile.TemporaryDirectory() as where:
        made = {}
        for functions in (40, 120):
            made[functions] = Path(where) / f"tree{functions}"
            treegen.build(made[functions], functions, pci_ids=False)
        yield made


def counted_scan(root):
    """(whole-log searches, tool look-ups, findings) of a scan of ``root`` with every device a target."""
    pfs = sorted(p.parent.name for p in (root / "sys/bus/pci/devices").glob("*/sriov_totalvfs"))
    # one VF asked of every PF: a count other than the enabled one, so the VF-enablement checks run for each
    selectors, requests = parse_all(classes=treegen.TARGET_CLASSES, vfs=[f"{pf}=1" for pf in pfs])
    host = TreeHost(str(root))
    searches, lookups = [], []
    real_grep, real_exists = KernelLog.grep, host.exists

    def grep(log, pattern):
        searches.append(getattr(pattern, "pattern", pattern))
        return real_grep(log, pattern)

    def exists(path):
        if path.startswith(("/usr/sbin/", "/usr/bin/", "/sbin/", "/bin/")):
            lookups.append(path)
        return real_exists(path)

    with mock.patch.object(KernelLog, "grep", grep), mock.patch.object(host, "exists", exists):
        report = scan_host(host, builtin_rules(), Scan(), selectors=selectors, vfs=requests, facts=Facts(host))
    return searches, lookups, report


def test_the_kernel_log_is_searched_once_per_scan_not_once_per_device(trees):
    small, small_lookups, small_report = counted_scan(trees[40])
    big, big_lookups, big_report = counted_scan(trees[120])
    assert len(big_report.targets) > len(small_report.targets) + 50  # the bigger tree has many more targets
    assert sorted(big) == sorted(small)
    assert len(big) == len(set(big))  # each pattern searched once
    addresses = [re.escape(t) for t in big_report.targets] + list(big_report.targets)
    assert not [p for p in big if any(a in p for a in addresses)]  # searched per kind of line, never per device
    assert sorted(big_lookups) == sorted(small_lookups)
    assert len(big_lookups) == len(set(big_lookups))


def test_a_device_the_log_names_still_gets_its_lines():
    """The once-per-log search keeps what the per-device search found: the device's own lines, in log order."""
    log = KernelLog(messages=("pci 0000:01:00.0: BAR 0: can't reserve [mem 0xe0000000-0xefffffff]",
                              "pci 0000:02:00.0: BAR 0: can't reserve [mem 0xd0000000-0xdfffffff]",
                              "pci 0000:01:00.0: can't reserve again",
                              "can't reserve 0000:01:00.0: (address after the words)",
                              "pci 0000:01:00.0: enabling device"))
    assert log.about("0000:01:00.0", "can't reserve") == log.grep(r"0000:01:00\.0:.*can't reserve")
    assert log.about("0000:01:00.0", "can't reserve") == [log.messages[0], log.messages[2]]
    assert log.about("0000:03:00.0", "can't reserve") == []
    mmio = r"(not enough MMIO resources for SR-IOV|Failed to enable PCI sriov: -12)"
    sriov = KernelLog(messages=("pci 0000:3b:00.0: not enough MMIO resources for SR-IOV",
                                "ixgbe 0000:3b:00.0: Failed to enable PCI sriov: -12",
                                "ixgbe 0000:3b:00.1: Failed to enable PCI sriov: -12"))
    assert sriov.about("0000:3b:00.0", mmio) == list(sriov.messages[:2])


def test_which_targets_no_device_rule_can_judge_is_asked_once_per_target(trees):
    asked = []
    real = Facts.device_reason

    def device_reason(facts, address):
        asked.append(address)
        return real(facts, address)

    with mock.patch.object(Facts, "device_reason", device_reason):
        _, _, report = counted_scan(trees[40])
    assert sorted(asked) == sorted(report.targets)
    assert len({f.rule_id for f in report.findings if f.subject in report.targets}) > 5  # many device rules ran
