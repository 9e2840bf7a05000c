"""Which boot stack sets the kernel command line, and what it will pass at the next boot.

The fix for a missing ``intel_iommu=on`` depends on the stack (GRUB and ``update-grub``,
``grubby``, ``/etc/kernel/cmdline`` with systemd-boot or ``proxmox-boot-tool``, ``kernelstub``,
``rpm-ostree``, NixOS). Detection looks only at files in the tree, never runs the tools.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from typing import Optional, Tuple

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
    "unknown": "unknown boot loader",
}

_GRUB_VAR = re.compile(r"^\s*(GRUB_CMDLINE_LINUX(?:_DEFAULT)?)=(.*)$")


@dataclass(frozen=True)
class BootStack:
    """How this host boots: the boot stack, the file its next boot's parameters live in, and what applies it."""

    stack: str  # a key of STACKS
    config_file: Optional[str] = None  # the file that holds the next boot's parameters
    regenerate: Tuple[str, ...] = ()  # command(s) that apply the edited file
    configured: Optional[Cmdline] = None  # parameters the next boot will get, when readable
    initramfs_tool: Optional[str] = None  # update-initramfs | dracut | mkinitcpio

    @property
    def name(self) -> str:
        return STACKS[self.stack]


def parse_default_grub(text: str, source: str = "/etc/default/grub") -> Cmdline:
    """The parameters ``GRUB_CMDLINE_LINUX`` and ``GRUB_CMDLINE_LINUX_DEFAULT`` set (shell quoting)."""
    values = {}
    for line in text.splitlines():
        m = _GRUB_VAR.match(line)
        if not m:
            continue
        try:
            words = shlex.split(m.group(2), comments=True)
        except ValueError:
            words = [m.group(2).strip("'\"")]
        value = " ".join(words)
        # ``${GRUB_CMDLINE_LINUX_DEFAULT}`` in drop-ins refers to the earlier value
        # (whole names only: ``$GRUB_CMDLINE_LINUX`` is a prefix of ``$GRUB_CMDLINE_LINUX_DEFAULT``)
        for name, previous in values.items():
            value = re.sub(r"\$(?:\{%s\}|%s(?![A-Za-z0-9_]))" % (name, name), lambda _m, v=previous: v, value)
        values[m.group(1)] = value
    joined = " ".join(v for k, v in sorted(values.items()) if v)
    return parse_cmdline(joined, source=source)
