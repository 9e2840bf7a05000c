"""The boot configuration a fix edits: which boot stack the host has, its files, the tools it has installed.

A mixin of :class:`scanner.facts.Facts` (it reads through ``self.host`` like every fact): what the
persistence rules and the remediation script ask of the boot side, apart from the running kernel.
"""

from __future__ import annotations

from functools import cached_property
from typing import Dict, Optional, Tuple

from scanner.facts.boot import BootStack, parse_grub_files
from scanner.facts.cmdline import parse_cmdline


class BootConfiguration:
    """Boot stack, configuration files and installed tools (``self.host`` is the Host layer)."""

    def _exists_any(self, *paths: str) -> Optional[str]:
        for path in paths:
            if self.host.exists(path):
                return path
        return None

    def _tool(self, name: str) -> Optional[str]:
        """Where a command is installed, looked up once per scan: every target's fix asks for the same few."""
        known = self._tools
        if name not in known:
            known[name] = self._exists_any(f"/usr/sbin/{name}", f"/usr/bin/{name}", f"/sbin/{name}", f"/bin/{name}")
        return known[name]

    @cached_property
    def _tools(self) -> Dict[str, Optional[str]]:
        return {}

    def has_tool(self, name: str) -> bool:
        """Is a command installed on the scanned host (looked up in its sbin/bin directories)?"""
        return self._tool(name) is not None

    @cached_property
    def initramfs_tool(self) -> Optional[str]:
        for tool in ("update-initramfs", "dracut", "mkinitcpio"):
            if self._tool(tool):
                return tool
        return None

    @cached_property
    def boot(self) -> BootStack:
        tool = self.initramfs_tool
        kernel_cmdline = self.host.read("/etc/kernel/cmdline")
        kernel_configured = parse_cmdline(kernel_cmdline.text, "/etc/kernel/cmdline") if kernel_cmdline.ok else None
        ostree = self._exists_any("/run/ostree-booted", "/sysroot/ostree")
        if ostree:
            return BootStack("rpm-ostree", regenerate=(), initramfs_tool=tool, detected_by=ostree)
        if self.host.exists("/etc/NIXOS"):
            return BootStack("nixos", config_file="/etc/nixos/configuration.nix",
                             regenerate=("nixos-rebuild boot",), initramfs_tool=tool, detected_by="/etc/NIXOS")
        if self._tool("proxmox-boot-tool") and kernel_cmdline.ok and self.host.exists("/etc/kernel/proxmox-boot-uuids"):
            return BootStack("proxmox-boot-tool", config_file="/etc/kernel/cmdline",
                             regenerate=("proxmox-boot-tool refresh",), configured=kernel_configured,
                             initramfs_tool=tool, files=(self.etc_file("/etc/kernel/cmdline"),))
        if self._tool("kernelstub"):
            return BootStack("kernelstub", config_file="/etc/kernelstub/configuration",
                             configured=self.kernelstub_cmdline(), initramfs_tool=tool,
                             detected_by=self._tool("kernelstub"))
        grub = self.host.read("/etc/default/grub")
        grub_files = self.grub_files if grub.ok else ()
        readable = [(path, text) for path, text, _ in grub_files if text is not None]
        grub_configured = parse_grub_files(readable, source=grub.path) if grub.ok else None
        if self._tool("grubby"):
            entry = self.bls_cmdline()  # what grubby edits, and what the next boot of this kernel reads
            return BootStack("grubby", config_file=entry.source if entry else ("/etc/default/grub" if grub.ok else None),
                             configured=entry or grub_configured, initramfs_tool=tool, files=grub_files,
                             detected_by=self._tool("grubby"))
        if grub.ok:
            from scanner.facts.grub import grub_winner

            if self._tool("update-grub"):
                regen = ("update-grub",)
            elif self._tool("grub2-mkconfig"):
                regen = ("grub2-mkconfig -o /boot/grub2/grub.cfg",)
            else:
                regen = ("grub-mkconfig -o /boot/grub/grub.cfg",)
            return BootStack("grub", config_file=grub_winner(readable) or "/etc/default/grub", regenerate=regen,
                             configured=grub_configured, initramfs_tool=tool, files=grub_files)
        if kernel_cmdline.ok:
            return BootStack("kernel-cmdline", config_file="/etc/kernel/cmdline",
                             regenerate=('kernel-install add "$(uname -r)" "/lib/modules/$(uname -r)/vmlinuz"',),
                             configured=kernel_configured, initramfs_tool=tool,
                             files=(self.etc_file("/etc/kernel/cmdline"),))
        entry = self.systemd_boot_cmdline()
        if entry is not None:
            return BootStack("systemd-boot", config_file=entry.source, configured=entry, initramfs_tool=tool,
                             detected_by=entry.source)
        unread = [r.describe() for r in (grub, kernel_cmdline) if not r.ok]
        return BootStack("unknown", initramfs_tool=tool, detected_by="; ".join(unread) or None)

    def etc_file(self, path: str) -> Tuple[str, Optional[str], Optional[str]]:
        """(path, text, reason) of a configuration file a fix may change: text None and no reason when it
        does not exist. What scanner/remediation/confedit.py merges a change into."""
        got = self.host.read(path)
        if got.ok:
            return (path, got.text, None)
        return (path, None, None if got.missing else got.reason)

    @cached_property
    def grub_files(self) -> Tuple[Tuple[str, Optional[str], Optional[str]], ...]:
        """/etc/default/grub, then each /etc/default/grub.d/*.cfg in the order grub-mkconfig sources them."""
        from scanner.facts.grub import GRUB_DROPINS, GRUB_MAIN

        names = [n for n in self.host.listdir(GRUB_DROPINS).entries() if n.endswith(".cfg") and self._plain_name(n)]
        return tuple(self.etc_file(p) for p in [GRUB_MAIN] + [f"{GRUB_DROPINS}/{n}" for n in sorted(names)])

    @cached_property
    def modprobe_files(self) -> Tuple[Tuple[str, Optional[str], Optional[str]], ...]:
        """Every /etc/modprobe.d/*.conf: where ``options vfio-pci ids=`` may already be (another device's)."""
        names = [n for n in self.host.listdir("/etc/modprobe.d").entries() if n.endswith(".conf") and self._plain_name(n)]
        return tuple(self.etc_file(f"/etc/modprobe.d/{n}") for n in sorted(names))
