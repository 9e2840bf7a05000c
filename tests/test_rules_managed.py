"""``--managed``: the VM manager (libvirt managed='yes', Proxmox) detaches each target at VM start.

A target on its host driver is then fine when it can be detached -- the host does not run on it and
its IOMMU group is viable once it is gone -- and a runtime binding needs no keeping across boots.
"""

import json

from clihelpers import run_cli
from hosttree import workstation
from scanner.engine.runner import Scan
from scanner.host.tree import TreeHost
from scanner.engine.plugins import load_plugins
from scanner.engine.scanning import scan_host
from scanner.facts.targets import parse_all

_REGISTRY = load_plugins(autoload=False)
GPU, AUDIO, ONBOARD_NIC, IGB = "0000:01:00.0", "0000:01:00.1", "0000:00:1f.6", "0000:02:00.0"
RULES = ("VFIO-012", "VFIO-013", "VFIO-017")


def scan(tree, *devices, managed=True):
    rules = [r for r in _REGISTRY.sorted_rules() if r.id in RULES]
    report = scan_host(TreeHost(str(tree.root)), rules, Scan(managed=managed),
                       selectors=parse_all(devices=list(devices))[0])
    return {(f.rule_id, f.subject): f for f in report.findings}


def test_a_gpu_and_its_audio_on_host_drivers_pass_when_the_vmm_detaches_them(tmp_path):
    tree = workstation(tmp_path / "ws")
    found = scan(tree, "01:00.0", "01:00.1")
    for target, driver in ((GPU, "nvidia"), (AUDIO, "snd_hda_intel")):
        bind = found[("VFIO-013", target)]
        assert bind.status == "pass", bind.message
        assert bind.message.startswith(f"managed mode: the VMM detaches it from {driver} when the VM starts")
        assert bind.remediation == ()
        assert found[("VFIO-017", target)].status == "pass"
    # without --managed the same host is not ready: the devices are on their host drivers
    plain = scan(tree, "01:00.0", "01:00.1", managed=False)
    assert plain[("VFIO-013", GPU)].status == "fail" and plain[("VFIO-017", GPU)].status == "skip"


def test_a_sibling_left_on_its_host_driver_keeps_the_group_from_being_viable(tmp_path):
    tree = workstation(tmp_path / "ws")
    found = scan(tree, "01:00.0")  # the HDMI audio is not given to the VM
    bind = found[("VFIO-013", GPU)]
    assert bind.status == "fail"
    assert bind.message.startswith("follows from VFIO-012: managed mode, but IOMMU group 1 is not viable")
    assert f"{AUDIO} (on snd_hda_intel)" in bind.message
    assert found[("VFIO-012", GPU)].status == "fail"
    assert [c for s in bind.remediation for c in s.commands] == []


def test_the_hosts_own_nic_is_never_detachable(tmp_path):
    tree = workstation(tmp_path / "ws")  # the on-board NIC carries the default route
    bind = scan(tree, "00:1f.6")[("VFIO-013", ONBOARD_NIC)]
    assert bind.status == "fail" and bind.message.startswith("HOST DEVICE")


def test_a_runtime_binding_needs_no_persistence_under_a_vmm(tmp_path):
    tree = workstation(tmp_path / "ws")
    tree.bind(IGB, "vfio-pci")
    assert scan(tree, "02:00.0", managed=False)[("VFIO-017", IGB)].status == "fail"  # lost at next boot
    found = scan(tree, "02:00.0")
    assert found[("VFIO-017", IGB)].status == "pass"
    assert found[("VFIO-013", IGB)].status == "pass"


def test_the_command_line_option_reaches_the_verdict(tmp_path):
    tree = workstation(tmp_path / "ws")
    args = ["scan", "--root", str(tree.root), "--device", "01:00.0", "--device", "01:00.1", "--format", "json",
            "--rule", "VFIO-013", "--rule", "VFIO-017"]
    plain = run_cli(*args)
    managed = run_cli(*args, "--managed")
    assert plain.returncode == 1 and managed.returncode == 0, managed.stderr
    statuses = {f["status"] for f in json.loads(managed.stdout)["findings"]}
    assert statuses == {"pass"}
