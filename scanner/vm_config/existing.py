"""The PCI devices an existing VM definition asks for: a libvirt domain XML or a Proxmox VM config.

``vfio-scan vm-config --check FILE`` reads one of these and asks, per device, whether this host can
honour it. Both are the user's files, yet read as hostile input all the same: the XML parser of the
standard library resolves no external entity and (expat 2.4+) refuses entity expansion bombs; each
address must match a strict pattern before it is looked at; a line or element that cannot be read is
one error naming where it is.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import List, Optional, Tuple  # noqa: F401

from scanner.remediation.shell import PCI_ADDRESS

#: Proxmox's host PCI ids: ``0000:01:00.0``, ``01:00.0``, or a whole slot ``0000:01:00`` / ``01:00``.
_PVE_ID = re.compile(r"^(?:([0-9a-fA-F]{4}):)?([0-9a-fA-F]{2}):([0-9a-fA-F]{2})(?:\.([0-7]))?\Z")
_PVE_LINE = re.compile(r"^(hostpci[0-9]+):\s*(\S.*)$")
_MAPPING_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_.-]{0,127}\Z")
#: Where Proxmox keeps the cluster's PCI resource mappings.
PVE_MAPPING_FILE = "/etc/pve/mapping/pci.cfg"


@dataclass(frozen=True)
class MappedDevice:
    """One ``map`` line of a mapping: the node it is for, the path(s) there, the ids it expects."""

    node: str
    paths: Tuple[str, ...]
    ids: Optional[str]
    group: Optional[str]


def parse_pve_mappings(text: str) -> dict:
    """``pci.cfg``: mapping name -> its ``map`` lines (an entry is a name at column 0, then indented lines)."""
    mappings: dict = {}
    current = None
    for line in text.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        if not line[0].isspace():
            current = line.strip()
            mappings.setdefault(current, [])
            continue
        words = line.split(None, 1)
        if current is None or len(words) != 2 or words[0] != "map":
            continue
        fields = dict(part.split("=", 1) for part in words[1].split(",") if "=" in part)
        paths = tuple(p for p in fields.get("path", "").split(";") if p)
        mappings[current].append(MappedDevice(fields.get("node", ""), paths, fields.get("id"), fields.get("iommugroup")))
    return mappings


def pve_path(item: str) -> Optional[Tuple[str, Optional[str]]]:
    """(``0000:01:00``, function or None) of a Proxmox PCI id, or None when it is none."""
    parsed = _PVE_ID.match(item)
    if not parsed:
        return None
    domain, bus, slot, function = parsed.groups()
    return f"{(domain or '0000').lower()}:{bus.lower()}:{slot.lower()}", function


class DefinitionError(ValueError):
    """The file is neither a readable libvirt domain nor a Proxmox VM config; ``str()`` says where."""


@dataclass(frozen=True)
class Requested:
    """One device the definition asks for: where it is named, the address(es), whether the VM
    manager detaches it itself, or why it cannot be checked here."""

    where: str  # "hostdev 1", "hostpci0"
    addresses: Tuple[str, ...] = ()  # a Proxmox whole slot: every function the host has there
    managed: bool = False
    slots: Tuple[str, ...] = ()  # Proxmox whole-slot requests (0000:01:00): their functions come from the host
    unchecked: Optional[str] = None  # why it cannot be checked here
    mapping: Optional[str] = None  # a Proxmox resource mapping's name: its paths come from pci.cfg
    expected: Optional[Tuple[Optional[str], Optional[str]]] = None  # a mapping's (ids, IOMMU group)


def parse_definition(text: str, source: str) -> Tuple[str, List[Requested]]:
    """(``libvirt`` or ``proxmox``, the devices asked for)."""
    if text.lstrip().startswith("<"):
        return "libvirt", _libvirt(text, source)
    return "proxmox", _proxmox(text, source)


def _libvirt(text: str, source: str) -> List[Requested]:
    import xml.etree.ElementTree as ET

    try:
        root = ET.fromstring(text)
    except ET.ParseError as exc:
        raise DefinitionError(f"{source}: not well-formed XML ({exc})") from None
    if root.tag != "domain":
        raise DefinitionError(f"{source}: a libvirt file whose root is <{root.tag[:40]}>, not <domain>")
    found = []
    for number, hostdev in enumerate(root.iter("hostdev"), start=1):
        where = f"hostdev {number}"
        if hostdev.get("mode", "subsystem") != "subsystem" or hostdev.get("type") != "pci":
            continue
        address = hostdev.find("source/address")
        if address is None:
            raise DefinitionError(f"{source}: {where} has no <source><address>")
        try:
            parts = [_number(address.get(k, "0" if k == "domain" else "")) for k in ("domain", "bus", "slot", "function")]
        except ValueError:
            raise DefinitionError(f"{source}: {where}: <address> is not numbers") from None
        domain, bus, slot, function = parts
        if not (0 <= domain <= 0xFFFF and 0 <= bus <= 0xFF and 0 <= slot <= 0x1F and 0 <= function <= 7):
            raise DefinitionError(f"{source}: {where}: <address> is out of range")
        text_address = f"{domain:04x}:{bus:02x}:{slot:02x}.{function}"
        found.append(Requested(where, (text_address,), managed=hostdev.get("managed", "no") == "yes"))
    return found


def _proxmox(text: str, source: str) -> List[Requested]:
    found = []
    for number, line in enumerate(text.splitlines(), start=1):
        if line.startswith("["):  # a snapshot section: the current config ends here
            break
        match = _PVE_LINE.match(line.strip())
        if not match:
            continue
        key, value = match.groups()
        options = value.split(",")
        host = options[0]
        if "=" in host:  # host=... written out, or mapping=...
            named = dict(o.split("=", 1) for o in options if "=" in o)
            if "mapping" in named:
                name = named["mapping"]
                if not _MAPPING_NAME.match(name):
                    raise DefinitionError(f"{source}:{number}: {key}: {name[:60]!r} is not a mapping name")
                found.append(Requested(key, managed=True, mapping=name))
                continue
            host = named.get("host", "")
        requested = []
        for item in host.split(";"):
            parsed = pve_path(item)
            if parsed is None:
                raise DefinitionError(f"{source}:{number}: {key}: {item[:60]!r} is not a PCI address")
            requested.append(parsed)
        whole = tuple(base for base, function in requested if function is None)
        addresses = tuple(f"{base}.{function}" for base, function in requested if function is not None)
        found.append(Requested(key, addresses, managed=True, slots=whole))
    return found


def is_address(text: str) -> bool:
    return bool(PCI_ADDRESS.match(text))


def _number(text: str) -> int:
    """An address attribute as libvirt reads it (``0x01``, ``1``); ASCII only: ``int()`` takes "０１" too."""
    if not text.isascii():
        raise ValueError(text)
    return int(text, 0)
