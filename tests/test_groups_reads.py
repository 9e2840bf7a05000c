"""What ``groups`` reads of a host with more devices than the tree keeps directories open."""

import collections
import os

from hosttree import HostTree
from scanner.commands.groups import groups_document, render_table
from scanner.facts import Facts
from scanner.host.descriptors import OPEN_DIRECTORIES
from scanner.host.tree import TreeHost

DEVICES = OPEN_DIRECTORIES * 2


def server(root) -> HostTree:
    """Functions whose IOMMU groups run against their addresses: the last function is in group 0."""
    tree = HostTree(root)
    tree.cmdline("quiet intel_iommu=on")
    tree.write("/usr/share/misc/pci.ids", "8086  Intel Corporation\n\t1889  Ethernet Adaptive Virtual Function\n")
    for n in range(DEVICES):
        address = f"0000:{1 + n // 8:02x}:00.{n % 8}"
        tree.pci_device(address, "8086", "1889", "020000", driver="iavf" if n % 2 else None,
                        group=str(DEVICES - 1 - n))
    return tree


def count_opens(monkeypatch) -> collections.Counter:
    """From now on, how often each name (a path's last) is opened."""
    opened, real_open = collections.Counter(), os.open

    def recording(path, flags, mode=0o777, *, dir_fd=None):
        opened[os.path.basename(os.fsdecode(path))] += 1
        return real_open(path, flags, mode, dir_fd=dir_fd)

    monkeypatch.setattr(os, "open", recording)
    return opened


def test_each_device_directory_is_opened_once(tmp_path, monkeypatch):
    """The document asks for devices group by group, and pci.ids' names for all of them first: the
    fields are read one device after the other, so that no directory is opened twice."""
    facts = Facts(TreeHost(str(server(tmp_path / "host").root)))
    opened = count_opens(monkeypatch)
    doc = groups_document(facts)
    addresses = [name for name in opened if name.startswith("0000:")]
    assert len(addresses) == DEVICES
    assert max(opened[a] for a in addresses) == 1
    assert [g["group"] for g in doc["groups"]] == list(range(DEVICES))
    bound = [d["driver"] for g in doc["groups"] for d in g["devices"]]
    assert bound == ["iavf" if (DEVICES - 1 - n) % 2 else None for n in range(DEVICES)]
    assert doc["groups"][0]["devices"][0]["device_name"] == "Ethernet Adaptive Virtual Function"
    assert render_table(doc).endswith(f"{DEVICES} IOMMU groups, {DEVICES} devices in them\n")


def test_each_group_directory_is_opened_once(tmp_path, monkeypatch):
    """A group's name, members and type are read one after the other, so that its directory is
    opened once, though the groups outnumber the directories the tree keeps open."""
    facts = Facts(TreeHost(str(server(tmp_path / "host").root)))
    opened = count_opens(monkeypatch)
    doc = groups_document(facts)
    assert facts.iommu.real_groups and not facts.iommu.noiommu_groups
    groups = {name: count for name, count in opened.items() if name.isdigit()}
    assert len(groups) == DEVICES and set(groups.values()) == {1}
    held = ["isolated; in use by host drivers", "isolated; ready for vfio"]
    assert [g["verdict"] for g in doc["groups"]] == [held[n % 2] for n in range(DEVICES)]
