"""The text of boot configuration as the tools that read it at boot read it: modprobe.d lines (kmod),
udev rules that load vfio-pci, the initramfs tools' module lists. Pure functions of text.

The lines come from the host and may be a megabyte long: each pattern is linear in the text, and
"a loader, then vfio-pci" or "pre:, then vfio-pci" is found in two searches, not in one that retries
from every starting point (a 64 KiB ``softdep a pre:pre:...`` line took minutes so).
"""

from __future__ import annotations

from typing import List, Optional, Tuple

from scanner.base.lazyre import lazy_compile

_OPTIONS = lazy_compile(r"^\s*options\s+(vfio[-_]pci)\s+(.*)$")
_VFIO_PCI_WORD = lazy_compile(r"\bvfio[-_]pci\b")
_LOADER = lazy_compile(r"kmod load|modprobe")
#: vfio_pci alone on a line: initramfs-tools' modules list, modules-load.d.
_LISTED_LINE = lazy_compile(r"(?m)^[ \t]*vfio[-_]pci[ \t]*(?:#.*)?$")
#: where dracut's force_drivers="..." or mkinitcpio's MODULES=(...) starts (group 1: it is the quoted one).
_LIST_OPENER = lazy_compile(r"(?m)^[ \t]*(?:force_drivers\+?=(\")|MODULES\+?=\()")
_SOFTDEP_HEAD = lazy_compile(r"^\s*softdep\s+(\S+)\s")
_PRE = lazy_compile(r"\bpre:")


def modprobe_logical_lines(text: str) -> List[str]:
    """A modprobe.d file's lines as kmod reads them: a line ending in a backslash goes on with the
    next (``options vfio-pci \\`` then ``ids=...``), the backslash and the line break dropped."""
    logical, pending = [], ""
    for line in text.splitlines():
        if line.endswith("\\"):
            pending += line[:-1]
            continue
        logical.append(pending + line)
        pending = ""
    if pending:
        logical.append(pending)
    return logical


def modprobe_vfio_lines(text: str) -> Tuple[Optional[Tuple[str, ...]], List[str]]:
    """(the ids of the last ``options vfio-pci ids=`` line or None, the modules of each ``softdep MODULE
    pre: vfio-pci``) of one modprobe.d file: the host's, or the copy an initramfs holds."""
    ids, modules = None, []
    for line in modprobe_logical_lines(text):
        options = _OPTIONS.match(line)
        if options:
            for token in options.group(2).split():
                if token.startswith("ids="):
                    ids = tuple(i for i in token[4:].split(",") if i)
        dep = _SOFTDEP_HEAD.match(line)
        pre = dep and _PRE.search(line, dep.end())
        if pre and _VFIO_PCI_WORD.search(line, pre.end()):  # softdep MODULE ... pre: ... vfio-pci
            modules.append(dep.group(1).replace("-", "_"))
    return ids, modules


def loads_vfio_pci(line: str) -> bool:
    """Does a udev rule's line run ``modprobe`` or ``kmod load`` of vfio-pci (within one quoted string)?"""
    for segment in line.split('"'):
        loader = _LOADER.search(segment)
        if loader and _VFIO_PCI_WORD.search(segment, loader.end()):
            return True
    return False


def loads_vfio_pci_early(text: str) -> bool:
    """Does a module list (initramfs-tools' ``modules``, modules-load.d, dracut's ``force_drivers``,
    mkinitcpio's ``MODULES``) load vfio_pci? A quoted or bracketed list may span lines; the search for the
    next list starts where this one ends, as the shell reads them."""
    if _LISTED_LINE.search(text):
        return True
    start = 0
    while True:
        opener = _LIST_OPENER.search(text, start)
        if opener is None:
            return False
        end = text.find('"' if opener.group(1) else ")", opener.end())
        end = len(text) if end < 0 else end
        if _VFIO_PCI_WORD.search(text, opener.end(), end):
            return True
        start = end + 1


__all__ = ["loads_vfio_pci", "loads_vfio_pci_early", "modprobe_logical_lines", "modprobe_vfio_lines"]
