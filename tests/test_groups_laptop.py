"""IOMMU groups as a laptop APU and an ACS-override host lay them out, with the real ids of a Ryzen 7 5700U.

The APU's group (without ``pcie_acs_override``) holds its dummy host bridge 00:08.0 (class 0x0600,
no driver), the internal GPP bridge 00:08.1 to bus 05, and the APU's functions 05:00.0-7 (GPU,
its HDMI audio, PSP, two USB controllers, ACP, HD audio, sensor hub): one slot to pass together,
not devices to move apart. With ``pcie_acs_override=downstream`` on the command line (as
../shared/data/dmesg/gammaman88-pve-ryzen5700u-headcut.txt was booted) the kernel splits every
function into a group of its own: "isolated" is then the override's word, not the hardware's.
"""

import json

import pytest

from clihelpers import run_cli
from hosttree import ready_host

APU = [("0000:05:00.0", "1002", "164c", "030000", "amdgpu"), ("0000:05:00.1", "1002", "1637", "040300", "snd_hda_intel"),
       ("0000:05:00.2", "1022", "15df", "108000", "ccp"), ("0000:05:00.3", "1022", "1639", "0c0330", "xhci_hcd"),
       ("0000:05:00.4", "1022", "1639", "0c0330", "xhci_hcd"), ("0000:05:00.5", "1022", "15e2", "048000", "snd_rn_pci_acp3x"),
       ("0000:05:00.6", "1022", "15e3", "040300", "snd_hda_intel"), ("0000:05:00.7", "1022", "15e4", "118000", None)]


def apu_host(root, split: bool):
    tree = ready_host(root, vendor="amd")
    tree.pci_device("0000:00:08.0", "1022", "1632", "060000", group="6")  # Renoir PCIe Dummy Host Bridge
    tree.pci_device("0000:00:08.1", "1022", "1635", "060400", driver="pcieport", group="6" if not split else "7")
    for n, (addr, vendor, device, cls, driver) in enumerate(APU):
        tree.pci_device(addr, vendor, device, cls, driver=driver, group=str(15 + n) if split else "6",
                        parent="0000:00:08.1")
    if split:
        tree.cmdline("BOOT_IMAGE=/boot/vmlinuz-6.5.13-1-pve root=/dev/mapper/pve-root ro quiet iommu=pt "
                     "pcie_acs_override=downstream initcall_blacklist=sysfb_init")
    return tree


def groups_json(tree):
    proc = run_cli("groups", "--root", tree.root, "--format", "json")
    assert proc.returncode == 0, proc.stderr

    return {g["group"]: g for g in json.loads(proc.stdout)["groups"]}


def test_the_apu_s_group_is_one_slot(tmp_path):
    group = groups_json(apu_host(tmp_path / "h", split=False))[6]
    assert group["verdict"] == "one slot: pass all its functions together; in use by host drivers"


def test_the_apu_s_gpu_needs_its_functions_not_a_move(tmp_path):
    tree = apu_host(tmp_path / "h", split=False)
    proc = run_cli("scan", "--root", tree.root, "--device", "05:00.0", "--format", "json", "--rule", "VFIO-012")

    (finding,) = [f for f in json.loads(proc.stdout)["findings"] if f["rule_id"] == "VFIO-012"]
    assert finding["status"] == "fail"
    assert "0000:00:08.0" not in finding["message"]  # the dummy host bridge holds nothing
    assert not any(s["action"]["kind"] == "move-slot" for s in finding["remediation"] if s.get("action"))
    bound = {s["action"]["address"] for s in finding["remediation"] if (s.get("action") or {}).get("kind") == "bind-vfio"}
    assert bound == {a for a, *_, driver in APU[1:] if driver}


@pytest.mark.parametrize("address, verdict", [("0000:05:00.0", "isolated"), ("0000:05:00.1", "isolated")])
def test_groups_split_by_the_acs_override_say_so(tmp_path, address, verdict):
    groups = groups_json(apu_host(tmp_path / "h", split=True))
    (group,) = [g for g in groups.values() if [d["address"] for d in g["devices"]] == [address]]
    assert group["verdict"].startswith(f"{verdict} (split by pcie_acs_override, not isolated by the hardware)")


def test_vfio_012_warns_of_an_override_split_group(tmp_path):
    tree = apu_host(tmp_path / "h", split=True)
    proc = run_cli("scan", "--root", tree.root, "--device", "05:00.0", "--format", "json", "--rule", "VFIO-012")

    (finding,) = [f for f in json.loads(proc.stdout)["findings"] if f["rule_id"] == "VFIO-012"]
    assert finding["status"] == "warn" and finding["message"].startswith("alone in IOMMU group 15")
    assert "pcie_acs_override is active" in finding["message"]
