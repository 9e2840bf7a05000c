"""Device targets: which PCI functions a scan is about, from what the user typed.

Accepted selectors (``--device``): a full address ``0000:01:00.0``, a short one ``01:00.0``
(domain 0000), or ``vendor:device`` ids ``10de:2204`` (every match). ``--class 0300`` selects by
class-code prefix; ``--vfs 0000:3b:00.0=8`` asks for 8 virtual functions on that PF (and makes it
a target). A malformed selector is a usage error; a selector that matches nothing is reported by
rule VFIO-010, not a crash.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

FULL = re.compile(r"^[0-9a-fA-F]{4,8}:[0-9a-fA-F]{2}:[0-1][0-9a-fA-F]\.[0-7]$")
SHORT = re.compile(r"^[0-9a-fA-F]{2}:[0-1][0-9a-fA-F]\.[0-7]$")
IDS = re.compile(r"^[0-9a-fA-F]{4}:[0-9a-fA-F]{4}$")
CLASS = re.compile(r"^(0x)?[0-9a-fA-F]{2,6}$")
MAX_VFS = 65535

DEVICE_FORMS = "a full PCI address (0000:01:00.0), a short one (01:00.0) or vendor:device ids (10de:2204)"


class SelectorError(ValueError):
    """A selector that is not of any accepted form."""


@dataclass(frozen=True)
class Selector:
    kind: str  # address | ids | class
    value: str  # normalized: 0000:01:00.0 | 10de:2204 | 0300
    text: str  # as typed

    def matches(self, device) -> bool:
        if self.kind == "address":
            return device.address == self.value
        if self.kind == "ids":
            return device.ids == self.value
        return bool(device.pci_class) and device.pci_class.startswith(self.value)

    def __str__(self) -> str:
        return self.text


@dataclass(frozen=True)
class Target:
    address: str
    selectors: Tuple[str, ...]  # what the user typed that selected it
    vfs: Optional[int] = None  # requested number of VFs (only for PFs given with --vfs)

    def __str__(self) -> str:
        return self.address


def normalize_address(text: str) -> Optional[str]:
    text = text.strip().lower()
    if FULL.match(text):
        domain, rest = text.split(":", 1)
        return f"{domain.zfill(4)}:{rest}"
    if SHORT.match(text):
        return f"0000:{text}"
    return None


def parse_device(text: str) -> Selector:
    value = (text or "").strip().lower()
    address = normalize_address(value)
    if address:
        return Selector("address", address, text)
    if IDS.match(value):
        return Selector("ids", value, text)
    raise SelectorError(f"--device {text!r}: expected {DEVICE_FORMS}")


def parse_class(text: str) -> Selector:
    value = (text or "").strip().lower()
    if not CLASS.match(value):
        raise SelectorError(f"--class {text!r}: expected a class-code prefix of 2 to 6 hex digits (0300 = VGA, 02 = network)")
    return Selector("class", value[2:] if value.startswith("0x") else value, text)


def parse_vfs(text: str) -> Tuple[str, int]:
    addr, sep, count = (text or "").partition("=")
    address = normalize_address(addr)
    if not sep or not address or not count.strip().isdigit() or int(count) > MAX_VFS:
        raise SelectorError(f"--vfs {text!r}: expected ADDRESS=COUNT, e.g. 0000:3b:00.0=8")
    return address, int(count)


def resolve(selectors: Sequence[Selector], vfs: Mapping[str, int], devices: Mapping[str, object]
            ) -> Tuple[List[Target], List[Selector]]:
    """Match selectors against the host's devices: (targets in address order, unmatched selectors).

    A ``--vfs`` address is a target even when no ``--device`` names it; if it does not exist it
    is reported as unmatched.
    """
    chosen: Dict[str, List[str]] = {}
    unmatched: List[Selector] = []
    for sel in selectors:
        hits = [a for a, d in devices.items() if sel.matches(d)]
        if not hits:
            unmatched.append(sel)
        for a in hits:
            chosen.setdefault(a, []).append(sel.text)
    for address in vfs:
        if address in devices:
            chosen.setdefault(address, []).append(f"--vfs {address}={vfs[address]}")
        elif not any(s.kind == "address" and s.value == address for s in unmatched):
            unmatched.append(Selector("address", address, address))
    targets = [Target(a, tuple(chosen[a]), vfs.get(a)) for a in sorted(chosen)]
    return targets, unmatched


def parse_all(devices: Iterable[str] = (), classes: Iterable[str] = (), vfs: Iterable[str] = ()
              ) -> Tuple[List[Selector], Dict[str, int]]:
    """Parse every selector up front so a typo is exit 2 before any scanning."""
    selectors = [parse_device(d) for d in devices] + [parse_class(c) for c in classes]
    requests: Dict[str, int] = {}
    for item in vfs:
        address, count = parse_vfs(item)
        requests[address] = count
    return selectors, requests
