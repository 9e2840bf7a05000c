"""Snapshots keep only the pci.ids lines of the host's own devices, and name them as the file does.

The whole file is 1.4 MB, nearly all of a snapshot; the scanner only looks up the devices the
host has. These tests hold the excerpt to the promise that makes it safe: ``vfio-scan groups``
shows the same names from the snapshot as from the host, and any file the parser would find
junk in is kept whole.
"""

from __future__ import annotations

import gzip
import json

from hypothesis import given, settings
from hypothesis import strategies as st

from clihelpers import run_cli
from hosttree import workstation
from scanner import collector
from scanner.facts.pciids import parse_pci_ids
from scanner.host.snapshot import SnapshotHost, parse_snapshot
from test_groups_cmd import PCI_IDS

ALL_IDS = sorted(parse_pci_ids(PCI_IDS).devices)


def groups_doc(*args) -> dict:
    done = run_cli("groups", "--format", "json", *args)
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    doc.pop("host")
    return doc


def snapshot_of(root, tmp_path):
    out = tmp_path / "snap.json"
    out.write_text(collector.dumps(collector.collect(str(root))))
    return out


def test_a_snapshot_names_every_device_as_the_host_does_from_a_fraction_of_pci_ids(tmp_path):
    tree = workstation(tmp_path / "ws")
    tree.write("/usr/share/misc/pci.ids", PCI_IDS)
    snap = snapshot_of(tree.root, tmp_path)
    kept = json.loads(snap.read_text())["entries"]["/usr/share/misc/pci.ids"]["text"]
    assert groups_doc("--snapshot", snap) == groups_doc("--root", tree.root)
    assert "GA102 [GeForce RTX 3090]" in kept and "I350 Gigabit Network Connection" in kept
    assert "3080 Ti" not in kept  # a device this host does not have
    assert "Allied Telesis" not in kept and "Founders Edition" not in kept and "C 04" not in kept


def test_a_gzipped_pci_ids_is_cut_down_and_stays_gzipped(tmp_path):
    tree = workstation(tmp_path / "ws")
    tree.write("/usr/share/hwdata/pci.ids.gz", gzip.compress(PCI_IDS.encode()))
    snap = snapshot_of(tree.root, tmp_path)
    host = SnapshotHost(parse_snapshot(snap.read_text(), str(snap)))
    kept = gzip.decompress(host.read_bytes("/usr/share/hwdata/pci.ids.gz", cap=1 << 24).data).decode()
    assert "GA102 [GeForce RTX 3090]" in kept and "3080 Ti" not in kept
    assert groups_doc("--snapshot", snap) == groups_doc("--root", tree.root)


def test_a_pci_ids_with_junk_is_kept_whole_so_its_note_stays(tmp_path):
    junky = PCI_IDS.replace("144d  Samsung", "junk line here\n144d  Samsung")
    assert collector.pci_ids_excerpt(junky, {("10de", "2204")}) is None
    tree = workstation(tmp_path / "ws")
    tree.write("/usr/share/misc/pci.ids", junky)
    snap = snapshot_of(tree.root, tmp_path)
    assert json.loads(snap.read_text())["entries"]["/usr/share/misc/pci.ids"]["text"] == junky


def test_a_host_the_pci_ids_knows_nothing_of_keeps_it_as_a_pci_ids(tmp_path):
    """Cut down to the lines of no device, the file must still read as a pci.ids, not as a garbled one."""
    tree = workstation(tmp_path / "ws")
    tree.write("/usr/share/misc/pci.ids", "abcd  Vadatech Inc.\n\tbeef  Some board\ndead  Indigita Corporation\n")
    snap = snapshot_of(tree.root, tmp_path)
    doc = groups_doc("--snapshot", snap)
    assert doc == groups_doc("--root", tree.root) and doc["pci_ids"] == "/usr/share/misc/pci.ids"


@settings(max_examples=200, deadline=None)
@given(st.sets(st.sampled_from(ALL_IDS + [("10de", "ffff"), ("abcd", "0001")])))
def test_the_excerpt_gives_the_same_names_for_the_devices_present(present):
    whole, cut = parse_pci_ids(PCI_IDS), parse_pci_ids(collector.pci_ids_excerpt(PCI_IDS, present))
    for vendor, device in present:
        assert cut.vendor_name(vendor) == whole.vendor_name(vendor)
        assert cut.device_name(vendor, device) == whole.device_name(vendor, device)
    assert not cut.notes and cut.found
    assert set(cut.devices) <= set(present)


LINES = st.sampled_from(PCI_IDS.splitlines() + ["junk here", "\tzz  not a device", "C 02  Network", "\t00  Ethernet",
                                                 "10de  ", "\t2204  ", "\t\t147d 10de  x", "", "# c"])


@settings(max_examples=300, deadline=None)
@given(st.lists(LINES, max_size=40), st.sets(st.sampled_from(ALL_IDS + [("10de", "2205"), ("0010", "8139")])))
def test_naming_only_the_wanted_devices_gives_their_names_and_notes_as_a_full_parse(lines, wanted):
    text = "\n".join(lines)
    whole, some = parse_pci_ids(text), parse_pci_ids(text, wanted=wanted)
    assert some.notes == whole.notes
    for vendor, device in wanted:
        assert some.vendor_name(vendor) == whole.vendor_name(vendor)
        assert some.device_name(vendor, device) == whole.device_name(vendor, device)
    assert set(some.devices) <= set(wanted)
