"""Which names ``Facts.pci_ids`` parses, and what it says of a file that names none of the devices.

Naming only the host's own devices needs every device's ids read first; naming every device in
the file needs none. Facts takes whichever costs less (by the file's size against the number of
devices), and both give the same names. Either way a pci.ids that knows none of this host's
devices is still a pci.ids: its names are simply not there.
"""

from __future__ import annotations

import pytest

from hardening import RecordingHost
from hosttree import workstation
from scanner.facts import BYTES_PER_DEVICE_READ, FULL_NAMING_MAX_BYTES, Facts
from scanner.host.tree import TreeHost

PATH = "/usr/share/misc/pci.ids"
#: two vendors no fixture device has
STRANGERS = "abcd  Vadatech Inc.\n\tbeef  Some board\ndead  Indigita Corporation\n"
NVIDIA = "10de  NVIDIA Corporation\n\t2204  GA102 [GeForce RTX 3090]\n\t1aef  GA102 High Definition Audio Controller\n"


def padded(text: str, devices: int) -> str:
    """``text`` with comments enough to make the file worth naming only the host's devices."""
    return "# pci.ids\n" * (BYTES_PER_DEVICE_READ * devices // 10 + 1) + text


@pytest.fixture
def ws(tmp_path):
    return workstation(tmp_path / "ws")


@pytest.mark.parametrize("size", ["small", "large"])
def test_a_pci_ids_that_names_none_of_the_devices_is_still_the_source(ws, size):
    devices = len(Facts(TreeHost(str(ws.root))).pci)
    ws.write(PATH, STRANGERS if size == "small" else padded(STRANGERS, devices))
    ids = Facts(TreeHost(str(ws.root))).pci_ids
    assert ids.found and ids.source == PATH and ids.notes == ()
    assert ids.vendor_name("10de") is None


def test_a_host_with_no_pci_device_still_has_its_pci_ids(ws):
    for address in list(Facts(TreeHost(str(ws.root))).pci):
        ws.remove(f"/sys/bus/pci/devices/{address}")
    ws.write(PATH, STRANGERS)
    ids = Facts(TreeHost(str(ws.root))).pci_ids
    assert ids.found and ids.source == PATH and ids.notes == ()


@pytest.mark.parametrize("size", ["small", "large"])
def test_the_names_are_the_same_whichever_way_they_are_parsed(ws, size):
    """A file small for the host is named in full without reading a device; a large one names the
    host's devices after reading their ids: the same names either way."""
    devices = len(Facts(TreeHost(str(ws.root))).pci)
    ws.write(PATH, (NVIDIA + STRANGERS) if size == "small" else padded(NVIDIA + STRANGERS, devices))
    host = RecordingHost(str(ws.root))
    ids = Facts(host).pci_ids
    assert ids.source == PATH and ids.describe("10de", "2204") == "NVIDIA Corporation GA102 [GeForce RTX 3090]"
    ids_read = any(p.startswith("/sys/bus/pci/devices/") and p.endswith("/vendor") for p in host.seen)
    assert ids_read == (size == "large")
    assert ("abcd" in ids.vendors) == (size == "small")  # named in full: strangers too


def test_a_file_larger_than_any_pci_ids_names_only_the_hosts_devices(ws, monkeypatch):
    """However many devices the host has, a file past any real pci.ids is not named in full: what is
    kept stays bounded by the devices, not by a hostile file's size."""
    import scanner.facts as facts_module

    monkeypatch.setattr(facts_module, "BYTES_PER_DEVICE_READ", 1 << 40)  # as if the host had countless devices
    strangers = "".join(f"{v:04x}  Vendor {v}\n" + "".join(f"\t{d:04x}  Device {d}\n" for d in range(40))
                        for v in range(0x1000, 0x1000 + FULL_NAMING_MAX_BYTES // 600))
    ws.write(PATH, NVIDIA + strangers)
    assert len(NVIDIA + strangers) > FULL_NAMING_MAX_BYTES
    ids = Facts(TreeHost(str(ws.root))).pci_ids
    assert ids.describe("10de", "2204") == "NVIDIA Corporation GA102 [GeForce RTX 3090]"
    assert len(ids.devices) < 10 and "1000" not in ids.vendors
