"""``vfio-scan vm-config --for VMM``: the ready devices in each VM manager's own format.

On the workstation fixture (tests/hosttree.py): the GPU 0000:01:00.0 and its HDMI audio 0000:01:00.1
share slot and IOMMU group 1; the I350 0000:02:00.0 is an SR-IOV PF alone in group 7. libvirt's
output is checked by libvirt's own schema (virt-xml-validate, Debian's libvirt-clients).
"""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest

from clihelpers import run_cli
from hosttree import gpu_on_vfio, workstation

GPU, AUDIO, PF = "0000:01:00.0", "0000:01:00.1", "0000:02:00.0"
#: real lines of pci.ids (2023.04.10)
PCI_IDS = ("10de  NVIDIA Corporation\n\t1aef  GA102 High Definition Audio Controller\n"
           "\t2204  GA102 [GeForce RTX 3090]\n8086  Intel Corporation\n\t1521  I350 Gigabit Network Connection\n")


@pytest.fixture
def ws(tmp_path):
    tree = workstation(tmp_path / "ws")
    tree.write("/usr/share/misc/pci.ids", PCI_IDS)
    return tree


@pytest.fixture
def gpu_ready(ws):
    return gpu_on_vfio(ws)


def vm_config(tree, vmm, *args):
    proc = run_cli("vm-config", "--for", vmm, "--root", str(tree.root), *args)
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc


def test_qemu_is_the_qemu_args_line(gpu_ready):
    form = vm_config(gpu_ready, "qemu", "--device", GPU)
    line = run_cli("qemu-args", "--root", str(gpu_ready.root), "--device", GPU)
    assert form.returncode == line.returncode == 0, form.stderr
    assert form.stdout == line.stdout


def test_a_big_bar_asks_for_the_window_and_iommufd_is_used_where_offered(gpu_ready):
    gpu_ready.pci_device(GPU, "10de", "2204", "030000", driver="vfio-pci", group="1", parent="0000:00:01.0",
                         boot_vga="0", reset_method="bus", bars={1: (0x4000000000, 32 << 30, 0x14220C),
                                                                 3: (0x4800000000, 32 << 20, 0x14220C)})
    gpu_ready.mkdir(f"{gpu_ready.device_dir(GPU)}/vfio-dev/vfio0")
    gpu_ready.mkdir(f"{gpu_ready.device_dir(AUDIO)}/vfio-dev/vfio1")
    for node in ("/dev/iommu", "/dev/vfio/devices/vfio0", "/dev/vfio/devices/vfio1"):
        gpu_ready.write(node, "", mode=0o660)
    proc = vm_config(gpu_ready, "qemu", "--device", GPU)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("-object iommufd,id=fd0 -global q35-pcihost.pci-hole64-size=64G "
                                  "-device pcie-root-port,id=vfio-rp1,chassis=101,bus=pcie.0 ")
    assert f"-device vfio-pci,host={GPU},bus=vfio-rp1,addr=00.0,multifunction=on,iommufd=fd0" in proc.stdout
    libvirt = vm_config(gpu_ready, "libvirt", "--device", GPU)
    assert f"<pcihole64 unit='KiB'>{64 << 20}</pcihole64>" in libvirt.stdout


def test_libvirt_hostdevs_keep_the_functions_in_one_guest_slot(gpu_ready):
    proc = vm_config(gpu_ready, "libvirt", "--device", GPU)
    assert proc.returncode == 0, proc.stderr
    text = proc.stdout
    assert text.count("<hostdev mode='subsystem' type='pci' managed='no'>") == 2
    assert "<controller type='pci' index='16' model='pcie-root-port'/>" in text
    assert ("<address domain='0x0000' bus='0x01' slot='0x00' function='0x0'/>" in text
            and "<address domain='0x0000' bus='0x01' slot='0x00' function='0x1'/>" in text)
    assert ("<address type='pci' domain='0x0000' bus='0x10' slot='0x00' function='0x0' multifunction='on'/>" in text
            and "<address type='pci' domain='0x0000' bus='0x10' slot='0x00' function='0x1'/>" in text)


@pytest.mark.skipif(shutil.which("virt-xml-validate") is None or shutil.which("xmllint") is None,
                    reason="needs virt-xml-validate (libvirt-clients) and xmllint (.ci/run installs them)")
@pytest.mark.parametrize("managed", [False, True])
def test_libvirts_own_schema_accepts_the_domain(gpu_ready, tmp_path, managed):
    if managed:  # on their host drivers: libvirt detaches them at VM start
        gpu_ready.bind(GPU, "nvidia")
        gpu_ready.bind(AUDIO, "snd_hda_intel")
    gpu_ready.bind(PF, "vfio-pci")
    proc = vm_config(gpu_ready, "libvirt", "--device", GPU, "--device", AUDIO, "--device", PF,
                     *(["--managed"] if managed else []))
    assert proc.returncode == 0, proc.stderr
    assert f"managed='{'yes' if managed else 'no'}'" in proc.stdout
    domain = tmp_path / "vm.xml"
    domain.write_text("<domain type='kvm'>\n  <name>vm</name>\n  <memory unit='GiB'>4</memory>\n"
                      "  <os><type arch='x86_64' machine='q35'>hvm</type></os>\n  <devices>\n"
                      + proc.stdout + "  </devices>\n</domain>\n")
    check = subprocess.run(["virt-xml-validate", str(domain), "domain"], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr + domain.read_text()
    broken = tmp_path / "broken.xml"  # the validator does reject: the same domain with an invalid hostdev mode
    broken.write_text(domain.read_text().replace("mode='subsystem'", "mode='sideways'"))
    assert subprocess.run(["virt-xml-validate", str(broken), "domain"], capture_output=True).returncode != 0


def test_proxmox_passes_the_whole_slot_and_maps_it(ws):
    """On the host drivers still: Proxmox detaches them itself, so they are ready for it."""
    proc = vm_config(ws, "proxmox", "--device", "10de:2204", "--device", "10de:1aef")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert "hostpci0: 0000:01:00,pcie=1" in lines
    assert "pci-0000-01-00" in lines
    assert "\tmap id=10de:2204,iommugroup=1,node=testhost,path=0000:01:00,subsystem-id=1458:403b" in lines
    assert "hostpci0: mapping=pci-0000-01-00,pcie=1" in lines


def test_a_function_left_out_keeps_the_group_from_a_vmm_that_detaches(ws):
    """Proxmox would detach the GPU, but its HDMI audio stays on snd_hda_intel: group 1 is not viable."""
    proc = vm_config(ws, "proxmox", "--device", GPU)
    assert proc.returncode == 1 and proc.stdout == ""
    assert "VFIO-012 0000:01:00.0: IOMMU group 1 is not viable" in proc.stderr


def test_the_hosts_own_nic_is_never_handed_to_a_vmm_that_detaches(ws):
    proc = vm_config(ws, "proxmox", "--device", "00:1f.6")
    assert proc.returncode == 1 and proc.stdout == ""
    assert "HOST DEVICE" in proc.stderr


def test_kubevirt_needs_vfio_pci_already(ws):
    proc = vm_config(ws, "kubevirt", "--device", GPU)
    assert proc.returncode == 1 and proc.stdout == ""
    assert "vfio-scan vm-config: not ready for passthrough, no configuration printed; blocked by:" in proc.stderr


def test_kubevirt_names_the_resources_from_pci_ids(gpu_ready):
    proc = vm_config(gpu_ready, "kubevirt", "--device", GPU)
    assert proc.returncode == 0, proc.stderr
    assert ('  - pciVendorSelector: "10DE:2204"\n    resourceName: "nvidia.com/GA102_GEFORCE_RTX_3090"'
            in proc.stdout)
    assert 'resourceName: "nvidia.com/GA102_HIGH_DEFINITION_AUDIO_CONTROLLER"' in proc.stdout


def test_nova_device_spec_and_alias(ws):
    proc = vm_config(ws, "nova", "--device", PF)  # on igb: Nova's libvirt detaches it
    assert proc.returncode == 0, proc.stderr
    specs = [json.loads(l.split(" = ", 1)[1]) for l in proc.stdout.splitlines() if l.startswith("device_spec = ")]
    aliases = [json.loads(l.split(" = ", 1)[1]) for l in proc.stdout.splitlines() if l.startswith("alias = ")]
    assert specs == [{"address": PF, "vendor_id": "8086", "product_id": "1521"}]
    assert aliases == [{"name": "i350-gigabit-network-connection", "vendor_id": "8086", "product_id": "1521",
                        "device_type": "type-PF"}]
    assert '"pci_passthrough:alias"="i350-gigabit-network-connection:1"' in proc.stdout


def test_cloud_hypervisor_device_paths(gpu_ready):
    proc = vm_config(gpu_ready, "cloud-hypervisor", "--device", GPU)
    assert proc.stdout == (f"--device path=/sys/bus/pci/devices/{GPU}/ path=/sys/bus/pci/devices/{AUDIO}/\n")


def test_an_unknown_vmm_is_a_usage_error(gpu_ready):
    proc = vm_config(gpu_ready, "vmware", "--device", GPU)
    assert proc.returncode == 2 and proc.stdout == ""


def test_the_plan_reads_only_the_passed_devices_in_full_and_knows_whole_slots(gpu_ready):
    """Whether a slot is passed whole is told from the class of its own functions: the host's other
    devices are not read in full (a host of thousands of VFs would read them all)."""
    from scanner.facts import Facts
    from scanner.host.tree import TreeHost
    from scanner.vm_config.plan import make_plan

    facts = Facts(TreeHost(str(gpu_ready.root)))
    whole = make_plan(facts, [GPU, AUDIO])
    assert whole.whole_slots == frozenset({"0000:01:00"})
    assert set(facts.pci._read) == {GPU, AUDIO}
    facts = Facts(TreeHost(str(gpu_ready.root)))
    assert make_plan(facts, [GPU]).whole_slots == frozenset()  # its HDMI audio is left out
