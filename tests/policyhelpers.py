"""Helpers for the policy tests: fixture trees the example policies describe, and policy files."""

from __future__ import annotations

import textwrap
from pathlib import Path

from hosttree import DMESG_INTEL_ON, workstation

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "examples"
GPU, GPU_AUDIO = "0000:01:00.0", "0000:01:00.1"
X520_PF = "0000:04:00.0"


def gpu_workstation(root, bound: bool = True, boot_vga: bool = True, remapping: bool = True):
    """The workstation tree as examples/gpu-workstation.toml wants it: the RTX 3090 and its audio on
    vfio-pci, now and at boot; the firmware boots on the RTX (boot_vga=1: VFIO-015 warns, the example
    waives it)."""
    tree = workstation(root)
    if bound:
        tree.bind(GPU, "vfio-pci")
        tree.bind(GPU_AUDIO, "vfio-pci")
        tree.vfio_ids_at_boot(["10de:2204", "10de:1aef"], softdeps=["nvidia", "snd_hda_intel"])
    if boot_vga:
        tree.write(f"{tree.device_dir(GPU)}/boot_vga", "1\n")
        tree.write(f"{tree.device_dir('0000:00:02.0')}/boot_vga", "0\n")
    if not remapping:
        tree.interrupts(remapped=False)
        tree.kernel_log(DMESG_INTEL_ON.replace("[    0.210809] DMAR-IR: Enabled IRQ remapping in xapic mode\n", ""))
    return tree


def sriov_host(root, vfs: int = 8, hostname: str = "testhost", remapping: bool = True):
    """The workstation plus an Intel 82599 (X520) behind its own root port, PF on ixgbe, ``vfs`` VFs
    enabled (0000:04:10.0, 04:10.2, ... as the 82599's offset 128 / stride 2 places them) on vfio-pci, and udev
    rules that make them again at boot and bind each to vfio-pci."""
    tree = workstation(root)
    tree.pci_device("0000:00:1b.0", "8086", "a340", "060400", driver="pcieport", group="12")
    tree.pci_device(X520_PF, "8086", "10fb", "020000", driver="ixgbe", group="13", parent="0000:00:1b.0",
                    reset_method="flr", sriov_totalvfs="63", sriov_numvfs="0", sriov_offset="128", sriov_stride="2",
                    sriov_vf_device="10ed", sriov_drivers_autoprobe="1")
    tree.vfs = tree.enable_vfs(X520_PF, vfs, 20, "10ed", driver="vfio-pci") if vfs else []
    if vfs:
        tree.write("/etc/udev/rules.d/70-vfio-scan-sriov-0000-04-00.0.rules",
                   f'ACTION=="add|bind", SUBSYSTEM=="pci", KERNEL=="{X520_PF}", ATTR{{sriov_drivers_autoprobe}}="0", '
                   f'ATTR{{sriov_numvfs}}="{vfs}"\n')
        tree.write("/etc/udev/rules.d/70-vfio-scan-vfs-0000-04-00.0.rules", "".join(
            f'ACTION=="add", SUBSYSTEM=="pci", KERNEL=="{vf}", ATTR{{driver_override}}="vfio-pci"\n' for vf in tree.vfs))
    tree.write("/proc/sys/kernel/hostname", hostname + "\n")
    if not remapping:
        tree.interrupts(remapped=False)
        tree.kernel_log(DMESG_INTEL_ON.replace("[    0.210809] DMAR-IR: Enabled IRQ remapping in xapic mode\n", ""))
    return tree


def write_policy(directory, text: str, name: str = "policy.toml") -> Path:
    path = Path(directory) / name
    path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return path
