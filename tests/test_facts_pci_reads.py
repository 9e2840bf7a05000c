"""What a scan reads of the PCI devices it is not about (scanner/facts/pci_devices.py).

A host with thousands of SR-IOV functions has a dozen files per function; a scan with one
target reads that target (and its group, and the devices the host itself runs on) in full, and
of every other device only the ids and class a selector, an index or a name needs. ``groups``
reads the fields it shows, and a scan without targets lists no IOMMU group's members.
These are counts of reads, not timings; that the few fields read agree with a full read of
the same device is checked on every fixture tree, garbled and broken ones included.
"""

from __future__ import annotations

import os
import sys
from collections import defaultdict

import pytest

from clihelpers import REPO
from hardening import RecordingHost, builtin_rules, scan
from snapshottrees import TREES
from scanner.remediation.binding import host_needed
from scanner.engine.runner import Scan
from scanner.facts import Facts
from scanner.host.tree import TreeHost
from scanner.engine.scanning import scan_host
from scanner.facts.targets import parse_all

sys.path.insert(0, str(REPO / "benchmarks"))

import treegen  # noqa: E402

DEVICES = "/sys/bus/pci/devices/"
IDS_AND_CLASS = {("vendor", "read"), ("device", "read"), ("class", "read")}
#: What ``groups`` shows of a device: its ids and class, its driver (a link, trusted only beside
#: the device directory it is listed in), whether it is a bridge (its ``pci_bus``).
GROUPS_READS = IDS_AND_CLASS | {("driver", "resolve"), ("driver", "lists"), ("pci_bus", "lists"), (".", "resolve")}


def reads_by_device(host: RecordingHost) -> dict:
    """address -> {(file under the device directory, how)} of every device the host was asked about."""
    found = defaultdict(set)
    for path, hows in host.seen.items():
        if path.startswith(DEVICES):
            address, _, rest = path[len(DEVICES):].partition("/")
            found[address] |= {(rest or ".", how) for how in hows}
    return found


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    root = tmp_path_factory.mktemp("pci-reads") / "tree"
    treegen.build(root, 100, pci_ids=False)
    return root


def test_a_scan_with_one_target_reads_only_ids_and_class_of_unrelated_devices(tree):
    host, report = scan(tree, host_class=RecordingHost, devices=(), vfs=(), classes=("03",))
    assert report.targets == ["0000:01:00.0"]  # the tree's one GPU
    facts = Facts(TreeHost(str(tree)))
    group = facts.pci["0000:01:00.0"].iommu_group
    about = set(facts.devices_in_group(group)) | host_needed(facts)  # the GPU's group, the root disk's NVMe
    reads = reads_by_device(host)
    assert len(reads) == 100  # every device's class was matched against the selector
    beyond = {address for address, files in reads.items() if not files <= IDS_AND_CLASS}
    assert beyond == about and len(beyond) == 4


def test_a_scan_reports_the_same_when_every_device_was_read_in_full_first(tree):
    """Reading every device in full before the rules run (as the scanner once did) changes nothing."""
    classes, vfs = ("03", "0108"), ("0000:10:00.0=4",)
    _, lazy = scan(tree, devices=(), vfs=vfs, classes=classes)
    host = TreeHost(str(tree))
    facts = Facts(host)
    eager = [facts.pci[address] for address in facts.pci]
    assert len(eager) == 100
    selectors, requests = parse_all(classes=classes, vfs=vfs)
    report = scan_host(host, builtin_rules(), Scan(), selectors=selectors, vfs=requests, facts=facts)
    assert report.targets == lazy.targets and len(report.targets) == 3
    assert [f.to_dict() for f in report.findings] == [f.to_dict() for f in lazy.findings]


def test_groups_reads_of_each_device_only_what_it_shows(tree):
    from scanner.engine.groups_document import groups_document

    host = RecordingHost(str(tree))
    doc = groups_document(Facts(host))
    assert sum(len(g["devices"]) for g in doc["groups"]) == 100
    reads = reads_by_device(host)
    assert len(reads) == 100 and all(files <= GROUPS_READS for files in reads.values())
    assert not any((".", "listdir") in files for files in reads.values())  # a name looked up, no directory listed


def test_a_scan_without_targets_reads_each_iommu_group_name_only(tree):
    host, report = scan(tree, host_class=RecordingHost, devices=(), vfs=())
    groups = {p for p in host.seen if p.startswith("/sys/kernel/iommu_groups/")}
    assert groups and all(p.endswith("/name") for p in groups)
    assert any(f.rule_id == "VFIO-005" and f.status == "pass" for f in report.findings)


@pytest.mark.parametrize("name", sorted(TREES))
def test_the_fields_read_alone_are_those_of_the_full_read(name, tmp_path):
    """Each field PciFields reads by itself (first, on a fresh host) equals the full read's value,
    on every fixture tree: garbled attributes, broken links and unreadable directories included."""
    from scanner.facts.pci_devices import PciFields, read_pci_device

    root = tmp_path / name
    TREES[name](root)
    facts = Facts(TreeHost(str(root)))
    attributes = ("vendor", "device", "pci_class", "subsystem_vendor", "subsystem_device", "driver",
                  "has_pci_bus", "ids", "is_bridge", "slot")
    for address in facts.pci:
        full = read_pci_device(TreeHost(str(root)), address)
        for attribute in attributes:
            alone = PciFields(TreeHost(str(root)), address)
            assert getattr(alone, attribute) == getattr(full, attribute), (address, attribute)


def test_the_mapping_lists_without_reading_and_reads_each_device_once(tree):
    host = RecordingHost(str(tree))
    facts = Facts(host)
    pci = facts.pci
    assert len(pci) == 100 and "0000:01:00.0" in pci and "not-an-address" not in pci
    assert sorted(pci) == sorted(p.name for p in (tree / "sys/bus/pci/devices").iterdir())
    assert not reads_by_device(host)
    assert pci.fields["0000:01:00.0"].pci_class == "030000"
    assert reads_by_device(host) == {"0000:01:00.0": {("class", "read")}}
    device = pci["0000:01:00.0"]
    assert pci["0000:01:00.0"] is device and pci.fields["0000:01:00.0"] is device
    assert pci.get("0000:ff:00.0") is None
    with pytest.raises(KeyError):
        pci["0000:ff:00.0"]


def test_a_target_chosen_by_its_class_has_its_class_read_once_and_shown_as_chosen(tree):
    """The full read takes the class the selector matched: one read of the file, and a class changed
    on disk in between (a function replaced) cannot show in the report as other than the one that chose it."""
    host = RecordingHost(str(tree))
    facts = Facts(host)
    gpu = "0000:01:00.0"
    class_file = tree / "sys/bus/pci/devices" / gpu / "class"
    assert facts.pci.fields[gpu].pci_class == "030000"
    original = class_file.read_text()
    class_file.write_text("0x020000\n")
    try:
        device = facts.pci[gpu]
    finally:
        class_file.write_text(original)
    assert device.pci_class == "030000"
    assert host.reads[f"{DEVICES}{gpu}/class"] == 1
    assert host.reads[f"{DEVICES}{gpu}/vendor"] == 1  # not asked before: read by the full read


def garbled_ids(root):
    """A ready host whose two functions have a garbled vendor and a class that is not text; a
    device file that is a directory, and subsystem ids that are garbled and missing beside a listing."""
    tree = TREES["ready"](root)
    first, second = (f"{DEVICES}{a}" for a in sorted(os.listdir(tree.path(DEVICES))))
    tree.write(f"{first}/vendor", "0xzzzz\n")
    tree.write(f"{first}/subsystem_vendor", "not hex\n")
    tree.write(f"{second}/class", b"\xff\xfe\n")
    tree.remove(f"{second}/device")
    tree.mkdir(f"{second}/device")
    return tree


@pytest.mark.parametrize("name", sorted(TREES) + ["garbled-ids"])
def test_a_device_read_in_full_after_its_fields_is_the_device_read_in_full_alone(name, tmp_path):
    """Every field first, then the full read: the same device, notes included (a garbled id is not
    taken over from the field, whose value is None, but read again for its note), on every fixture tree."""
    root = tmp_path / name
    (garbled_ids if name == "garbled-ids" else TREES[name])(root)
    if name == "garbled-ids":  # the damage shows as notes, which the full read after the fields must keep
        notes = [n for a in Facts(TreeHost(str(root))).pci.values() for n in a.notes]
        assert sum(n.endswith(("garbled: '0xzzzz'", "garbled: 'not hex'")) for n in notes) == 2
        assert any("/class: " in n for n in notes) and any("/device: " in n for n in notes)
    attributes = ("vendor", "device", "pci_class", "subsystem_vendor", "subsystem_device", "driver", "has_pci_bus")
    for address in Facts(TreeHost(str(root))).pci:
        facts = Facts(TreeHost(str(root)))
        for attribute in attributes:
            getattr(facts.pci.fields[address], attribute)
        alone = Facts(TreeHost(str(root))).pci[address]
        assert facts.pci[address] == alone, address
