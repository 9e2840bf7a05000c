"""What binds a device at boot is not written for a device the run-time guard refuses.

The script checks, as it runs, that the host does not need a device before it binds it (the host
may have changed since the scan). The bindings that apply at the next boot were written anyway:
the ``vfio-pci ids=`` line every target shares (emitted in the first target's block, before the
later targets' guards ran) and each VF's udev rule; after a reboot vfio-pci took the NIC that now
carried the host's default route. The ids line is now refused when any function the host needs has
one of its ids (ids= takes every function that has them), and a refused VF gets no rule.
"""

from hosttree import workstation
from scriptrun import Shims, run_script, script_for

GPU, I350 = "0000:01:00.0", "0000:02:00.0"


def route_moves_to_the_i350(tree):
    """Since the scan, the default route went to the I350 (enp2s0), as a re-cabled host has it."""
    tree.net_interface("enp2s0", I350)
    tree.default_route("enp2s0")


def test_the_shared_ids_line_is_refused_when_a_function_it_names_carries_the_route_now(tmp_path):
    tree = workstation(tmp_path / "ws")
    script = script_for(tree.root, devices=[GPU, I350])
    assert "8086:1521" in script  # the scan found the I350 free to go
    route_moves_to_the_i350(tree)
    proc = run_script(script, tree.root, Shims(tmp_path))
    assert proc.returncode == 1
    refused = [line for line in proc.stderr.splitlines() if line.startswith("REFUSED: not keeping ")]
    assert refused and "8086:1521" in refused[0]
    assert refused[0].endswith(f"on vfio-pci at boot: {I350} has those ids and it carries the host's default route "
                               "(enp2s0)")
    conf = tree.path("/etc/modprobe.d/vfio.conf")
    assert not conf.exists() or "8086:1521" not in conf.read_text()


def test_a_refused_vf_gets_no_udev_rule_for_the_next_boot(tmp_path):
    tree = workstation(tmp_path / "ws")
    script = script_for(tree.root, vfs=[f"{I350}=2"])
    vfs = tree.enable_vfs(I350, 2, 20, "1520")  # the VFs exist now; the second carries the route
    tree.net_interface("enp2s0f0v1", vfs[1])
    tree.default_route("enp2s0f0v1")
    proc = run_script(script, tree.root, Shims(tmp_path))
    assert f"REFUSED: not binding {vfs[1]}" in proc.stderr
    rules = tree.path(f"/etc/udev/rules.d/70-vfio-scan-vfs-{I350.replace(':', '-')}.rules")
    assert rules.exists() and f'KERNEL=="{vfs[0]}"' in rules.read_text()
    assert f'KERNEL=="{vfs[1]}"' not in rules.read_text()


def test_ids_for_a_built_in_vfio_pci_are_not_put_on_the_command_line_for_a_device_the_host_needs_now(tmp_path):
    tree = workstation(tmp_path / "ws")
    tree.modules(loaded=["kvm_intel", "kvm", "igb"], builtin=["vfio", "vfio_pci", "vfio_iommu_type1"])
    script = script_for(tree.root, devices=[I350])
    assert "vfio-pci.ids=8086:1521" in script
    route_moves_to_the_i350(tree)
    grub_before = tree.path("/etc/default/grub").read_text()
    proc = run_script(script, tree.root, Shims(tmp_path))
    assert any(line.startswith("REFUSED: not keeping 8086:1521 on vfio-pci at boot") for line in proc.stderr.splitlines())
    assert tree.path("/etc/default/grub").read_text() == grub_before
