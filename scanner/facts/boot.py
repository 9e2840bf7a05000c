"""Which boot stack sets the kernel command line, and what it will pass at the next boot.

The fix for a missing ``intel_iommu=on`` depends on the stack (GRUB and ``update-grub``,
``grubby``, ``/etc/kernel/cmdline`` with systemd-boot or ``proxmox-boot-tool``, ``kernelstub``,
``rpm-ostree``, NixOS). Detection looks only at files in the tree, never runs the tools.
"""

from __future__ import annotations

from typing import Optional, Sequence, Tuple

from scanner.base.record import record
from scanner.facts.cmdline import Cmdline, parse_cmdline

#: (stack id, human name) in the order detection prefers them.
STACKS = {
    "rpm-ostree": "rpm-ostree (Fedora Atomic / CoreOS)",
    "nixos": "NixOS",
    "proxmox-boot-tool": "proxmox-boot-tool (systemd-boot, /etc/kernel/cmdline)",
    "kernelstub": "kernelstub (Pop!_OS)",
    "grubby": "grubby (BLS entries)",
    "grub": "GRUB (/etc/default/grub)",
    "kernel-cmdline": "/etc/kernel/cmdline (kernel-install / systemd-boot)",
    "systemd-boot": "systemd-boot (its loader entry)",
    "unknown": "unknown boot loader",
}


@record(frozen=True)
class BootStack:
    """How this host boots: the boot stack, the file its next boot's parameters live in, and what applies it."""

    stack: str  # a key of STACKS
    config_file: Optional[str] = None  # the file that holds the next boot's parameters
    regenerate: Tuple[str, ...] = ()  # command(s) that apply the edited file
    configured: Optional[Cmdline] = None  # parameters the next boot will get, when readable
    initramfs_tool: Optional[str] = None  # update-initramfs | dracut | mkinitcpio
    #: (path, text, reason) of the files a command-line edit merges into: /etc/default/grub and its
    #: grub.d drop-ins in order, or /etc/kernel/cmdline (scanner/remediation/confedit.py)
    files: Tuple[Tuple[str, Optional[str], Optional[str]], ...] = ()
    #: what decided the stack (a marker file, a tool), or for an unknown one the files that could not be read
    detected_by: Optional[str] = None

    @property
    def name(self) -> str:
        return STACKS[self.stack]


def parse_default_grub(text: str, source: str = "/etc/default/grub") -> Cmdline:
    """The parameters ``GRUB_CMDLINE_LINUX`` and ``GRUB_CMDLINE_LINUX_DEFAULT`` set (shell quoting)."""
    return parse_grub_files([(source, text)], source=source)


def parse_grub_files(files: Sequence[Tuple[str, str]], source: Optional[str] = None) -> Cmdline:
    """What the next boot gets from /etc/default/grub and then each grub.d drop-in, in the order
    grub-mkconfig sources them (a cloud image's drop-in overrides the main file)."""
    from scanner.facts.grub import grub_parameters

    return parse_cmdline(grub_parameters(files), source=source or ", ".join(path for path, _ in files))
