"""``vfio-scan vm-config --check FILE``: can this host honour an existing libvirt domain or Proxmox VM?"""

from __future__ import annotations

import os

import pytest

from clihelpers import run_cli
from hosttree import gpu_on_vfio, workstation

GPU, AUDIO, PF = "0000:01:00.0", "0000:01:00.1", "0000:02:00.0"


def hostdev(address: str, managed: str = "yes") -> str:
    domain, bus, rest = address.split(":")
    slot, function = rest.split(".")
    return (f"    <hostdev mode='subsystem' type='pci' managed='{managed}'>\n"
            f"      <source><address domain='0x{domain}' bus='0x{bus}' slot='0x{slot}' function='0x{function}'/>"
            "</source>\n    </hostdev>\n")


def domain(*hostdevs: str) -> str:
    return ("<domain type='kvm'>\n  <name>win11</name>\n  <memory unit='GiB'>16</memory>\n  <devices>\n"
            + "".join(hostdevs) + "  </devices>\n</domain>\n")


@pytest.fixture
def ws(tmp_path):
    return workstation(tmp_path / "ws")


def check(tree, tmp_path, text, name="vm.xml"):
    path = tmp_path / name
    path.write_text(text)
    proc = run_cli("vm-config", "--check", str(path), "--root", str(tree.root))
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc, proc.stdout.splitlines()


def test_managed_hostdevs_on_their_host_drivers_are_honoured(ws, tmp_path):
    proc, lines = check(ws, tmp_path, domain(hostdev(GPU), hostdev(AUDIO)))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert lines[0].endswith("(libvirt domain): 2 PCI device(s) asked for")
    assert lines[1] == f"  hostdev 1 {GPU} (10de:2204, on nvidia): yes"
    assert lines[2] == f"  hostdev 2 {AUDIO} (10de:1aef, on snd_hda_intel): yes"


def test_an_unmanaged_hostdev_must_be_on_vfio_pci(ws, tmp_path):
    proc, lines = check(ws, tmp_path, domain(hostdev(PF, managed="no")))
    assert proc.returncode == 1
    assert lines[1] == f"  hostdev 1 {PF} (8086:1521, on igb): no"
    assert lines[2].startswith(f"      {PF} VFIO-013: not on vfio-pci: bound to igb")
    ws.bind(PF, "vfio-pci")
    proc, lines = check(ws, tmp_path, domain(hostdev(PF, managed="no")))
    assert lines[1].endswith(": yes")


def test_a_gpu_without_its_audio_leaves_the_group_unviable(ws, tmp_path):
    proc, lines = check(ws, tmp_path, domain(hostdev(GPU)))
    assert proc.returncode == 1
    assert lines[1].endswith(": no")
    assert any("VFIO-012: IOMMU group 1 is not viable" in line and AUDIO in line for line in lines)


def test_a_device_this_host_does_not_have(ws, tmp_path):
    proc, lines = check(ws, tmp_path, domain(hostdev("0000:09:00.0")))
    assert proc.returncode == 1
    assert lines[1] == "  hostdev 1 0000:09:00.0: no" and lines[2] == "      no device at 0000:09:00.0 on this host"


def test_a_proxmox_config_with_a_whole_slot_and_a_mapping(ws, tmp_path):
    gpu_on_vfio(ws)
    text = "boot: order=scsi0\nhostpci0: 0000:01:00,pcie=1,x-vga=1\nhostpci1: mapping=gpu1\nmachine: q35\n"
    proc, lines = check(ws, tmp_path, text, name="100.conf")
    assert lines[0].endswith("(Proxmox VM config): 2 PCI device(s) asked for")
    assert lines[1] == f"  hostpci0 {GPU} (10de:2204, on vfio-pci) {AUDIO} (10de:1aef, on vfio-pci): yes"
    assert lines[2] == "  hostpci1 -: unchecked"
    assert proc.returncode == 3  # nothing fails, but one device could not be judged here


def test_a_snapshot_section_of_a_proxmox_config_is_not_the_vm(ws, tmp_path):
    text = "hostpci0: 01:00\n\n[before-upgrade]\nhostpci0: 09:00.0\n"
    proc, lines = check(ws, tmp_path, text, name="100.conf")
    assert lines[0].endswith("1 PCI device(s) asked for")


@pytest.mark.parametrize("text, said", [
    ("<domain><devices><hostdev", "not well-formed XML"),
    ("<network><name>x</name></network>", "whose root is <network>, not <domain>"),
    (domain("<hostdev mode='subsystem' type='pci'><source><address bus='zz'/></source></hostdev>"),
     "hostdev 1: <address> is not numbers"),
    # full-width digits: int() reads them, libvirt does not
    (domain("<hostdev mode='subsystem' type='pci'><source><address domain='0x0000' bus='0x\uff101' slot='0x00' "
            "function='0x0'/></source></hostdev>"), "hostdev 1: <address> is not numbers"),
    ("hostpci0: 0000:01:00.0;$(reboot)\n", "hostpci0: '$(reboot)' is not a PCI address"),
])
def test_a_file_that_is_no_definition_is_one_line_and_exit_2(ws, tmp_path, text, said):
    proc, _ = check(ws, tmp_path, text)
    assert proc.returncode == 2 and proc.stdout == ""
    assert said in proc.stderr and len(proc.stderr.splitlines()) == 1


def test_an_entity_bomb_is_refused_not_expanded(ws, tmp_path):
    lol = "<!DOCTYPE d [<!ENTITY a 'aaaaaaaaaa'>" + "".join(
        f"<!ENTITY {chr(98 + i)} '{('&' + chr(97 + i) + ';') * 10}'>" for i in range(9)) + "]>"
    proc, _ = check(ws, tmp_path, lol + "<domain><name>&j;</name></domain>")
    assert proc.returncode == 2 and "not well-formed XML" in proc.stderr


def test_a_fifo_is_refused_at_once(ws, tmp_path):
    fifo = tmp_path / "vm.xml"
    os.mkfifo(fifo)
    proc = run_cli("vm-config", "--check", str(fifo), "--root", str(ws.root))
    assert proc.returncode == 2 and "not a regular file (a FIFO)" in proc.stderr


def test_for_and_check_are_one_or_the_other(ws, tmp_path):
    proc = run_cli("vm-config", "--root", str(ws.root), "--device", GPU)
    assert proc.returncode == 2 and "give --for VMM" in proc.stderr


PCI_CFG = ("gpu1\n\tdescription the RTX\n"
           "\tmap id=10de:2204,iommugroup=1,node=testhost,path=0000:01:00,subsystem-id=1458:403b\n"
           "\tmap id=10de:2204,iommugroup=3,node=pve2,path=0000:41:00\n"
           "nic\n\tmap id=8086:1521,iommugroup=7,node=testhost,path=0000:02:00.0\n")


def test_a_resource_mapping_is_followed_to_this_nodes_path(ws, tmp_path):
    gpu_on_vfio(ws)
    ws.write("/etc/pve/mapping/pci.cfg", PCI_CFG)
    proc, lines = check(ws, tmp_path, "hostpci0: mapping=gpu1,pcie=1\nhostpci1: mapping=nic\n", name="100.conf")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert lines[1] == f"  hostpci0 {GPU} (10de:2204, on vfio-pci) {AUDIO} (10de:1aef, on vfio-pci): yes"
    assert lines[2] == f"  hostpci1 {PF} (8086:1521, on igb): yes"  # Proxmox detaches it


@pytest.mark.parametrize("edit, said", [
    (("8086:1521,iommugroup=7", "8086:10fb,iommugroup=7"), f"mapping 'nic' expects 8086:10fb at {PF}; this host has 8086:1521 there"),
    (("8086:1521,iommugroup=7", "8086:1521,iommugroup=9"), f"mapping 'nic' expects IOMMU group 9 for {PF}; it is in group 7 now"),
])
def test_a_mapping_that_no_longer_matches_the_host(ws, tmp_path, edit, said):
    ws.write("/etc/pve/mapping/pci.cfg", PCI_CFG.replace(*edit))
    proc, lines = check(ws, tmp_path, "hostpci0: mapping=nic\n", name="100.conf")
    assert proc.returncode == 1 and lines[1].endswith(": no")
    assert f"      {said}" in lines


def test_a_mapping_without_a_line_for_this_node_is_unchecked(ws, tmp_path):
    ws.write("/etc/pve/mapping/pci.cfg", PCI_CFG.replace("node=testhost", "node=pve3"))
    proc, lines = check(ws, tmp_path, "hostpci0: mapping=gpu1\n", name="100.conf")
    assert proc.returncode == 3
    assert lines[2] == "      mapping 'gpu1' in /etc/pve/mapping/pci.cfg: no map line for node 'testhost'"
