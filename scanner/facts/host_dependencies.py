"""What the host itself runs on: the NICs carrying its default route, the disks holding ``/``.

A mixin of :class:`scanner.facts.Facts` (it reads through ``self.host`` like every fact): the
device rules and the remediation script refuse to take such a device away from the host, so
these are followed through every layer a real host puts between them and the PCI function --
bridges, bonds and VLANs for a route; device-mapper, MD, NVMe multipath and partitions for a
root filesystem.
"""

from __future__ import annotations

from functools import cached_property
from typing import Dict, List, Optional

from scanner.facts.pci import ADDRESS


class HostDependencies:
    """The PCI functions the host needs for itself (``self.host`` is the Host layer)."""

    def _pci_address_of(self, sysfs_path: str) -> Optional[str]:
        """The PCI function a sysfs device path sits under (the last PCI address in its path)."""
        got = self.host.resolve(sysfs_path)
        if not got.ok:
            return None
        found = [part for part in got.text.split("/") if ADDRESS.match(part)]
        return found[-1] if found else None

    @cached_property
    def default_route_devices(self) -> Dict[str, str]:
        """PCI address -> interface for interfaces that carry a default route.

        IPv4 (``/proc/net/route``) and IPv6 (``/proc/net/ipv6_route``). A route on a bridge, bond
        or VLAN (``vmbr0`` on a Proxmox host) is followed down its ``lower_*`` links to the NIC
        that really carries it: the value then reads ``enp3s0 (under vmbr0)``.
        """
        interfaces = []
        for line in self.host.read("/proc/net/route").value().splitlines()[1:]:
            parts = line.split()
            if len(parts) >= 2 and parts[1] == "00000000":
                interfaces.append(parts[0])
        for line in self.host.read("/proc/net/ipv6_route").value().splitlines():
            parts = line.split()
            # dest, prefix length, src, src prefix, next hop, metric, refcnt, use, flags, iface
            if len(parts) >= 10 and parts[0] == "0" * 32 and parts[1] == "00" and parts[9] != "lo":
                flags = int(parts[8], 16) if all(c in "0123456789abcdefABCDEF" for c in parts[8]) else 0
                if flags & 0x1 and not flags & 0x200:  # RTF_UP, not RTF_REJECT
                    interfaces.append(parts[9])
        found: Dict[str, str] = {}
        for iface in dict.fromkeys(interfaces):
            for address, leaf in self._net_pci_devices(iface, depth=0):
                found.setdefault(address, leaf if leaf == iface else f"{leaf} (under {iface})")
        return found

    @staticmethod
    def _plain_name(name: str) -> bool:
        return bool(name) and "/" not in name and name not in (".", "..")

    def _net_pci_devices(self, iface: str, depth: int) -> List[tuple]:
        """(PCI address, interface) pairs under a network interface, through bridges/bonds/VLANs."""
        if depth > 6 or not self._plain_name(iface):
            return []
        address = self._pci_address_of(f"/sys/class/net/{iface}/device")
        if address:
            return [(address, iface)]
        found = []
        for name in self.host.listdir(f"/sys/class/net/{iface}").entries():
            if name.startswith("lower_"):
                found += self._net_pci_devices(name[len("lower_"):], depth + 1)
        return found

    @cached_property
    def root_fs_devices(self) -> Dict[str, str]:
        """PCI address -> block device for the device(s) holding ``/`` (``/proc/self/mountinfo``).

        Followed through device-mapper and MD layers (LVM, LUKS, RAID: ``slaves/``), NVMe
        multipath heads (``multipath/``) and partitions; a btrfs root shows an anonymous ``0:NN``
        device, so its mount source (``/dev/nvme0n1p3``, ``/dev/mapper/NAME``) is used instead.
        """
        found: Dict[str, str] = {}
        for line in self.host.read("/proc/self/mountinfo").value().splitlines():
            parts = line.split()
            if len(parts) <= 4 or parts[4] != "/" or ":" not in parts[2]:
                continue
            addresses = self._block_pci_devices(f"/sys/dev/block/{parts[2]}", depth=0)
            sep = parts.index("-", 6) if "-" in parts[6:] else len(parts)
            source = parts[sep + 2] if len(parts) > sep + 2 else ""  # after "- fstype"
            if not addresses and source.startswith("/dev/"):
                name = source.rsplit("/", 1)[-1]
                if source.startswith("/dev/mapper/"):
                    name = self._dm_by_name(name) or name
                addresses = self._block_pci_devices(f"/sys/class/block/{name}", depth=0)
            for address in addresses:
                found.setdefault(address, parts[2] + (f" ({source})" if source.startswith("/dev/") else ""))
        return found

    def _dm_by_name(self, name: str) -> Optional[str]:
        """``dm-N`` for a device-mapper name (``/dev/mapper/NAME``)."""
        for entry in self.host.listdir("/sys/class/block").entries():
            if entry.startswith("dm-") and self.host.read(f"/sys/class/block/{entry}/dm/name").value().strip() == name:
                return entry
        return None

    def _block_pci_devices(self, path: str, depth: int) -> List[str]:
        """PCI functions under a block device, through its slaves, multipath paths and parent disk."""
        if depth > 8:
            return []
        address = self._pci_address_of(path)
        if address:
            return [address]
        found: List[str] = []
        for sub in ("slaves", "multipath"):
            for name in self.host.listdir(f"{path}/{sub}").entries():
                if self._plain_name(name):
                    found += self._block_pci_devices(f"{path}/{sub}/{name}", depth + 1)
        if not found and self.host.exists(f"{path}/partition"):
            found = self._block_pci_devices(f"{path}/..", depth + 1)
        return list(dict.fromkeys(found))
