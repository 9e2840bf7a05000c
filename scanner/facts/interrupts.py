"""``/proc/interrupts``: remapped interrupts carry an ``IR-`` chip prefix (``IR-PCI-MSI``)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Tuple

_IR = re.compile(r"(?:^|\s)IR-[A-Za-z]")
_MSI = re.compile(r"PCI-MSI|DMAR-MSI|IO-APIC")


@dataclass(frozen=True)
class Interrupts:
    """What ``/proc/interrupts`` says about interrupt remapping."""

    remapped: Tuple[str, ...]  # lines whose chip is ``IR-...``
    msi_or_ioapic: int  # lines routed through MSI or the IO-APIC (where IR would show)
    lines: int

    @property
    def any_remapped(self) -> bool:
        return bool(self.remapped)


def parse_interrupts(text: str) -> Interrupts:
    remapped, routed, total = [], 0, 0
    for line in text.splitlines()[1:]:  # the first line is the CPU header
        if ":" not in line:
            continue
        total += 1
        if _IR.search(line):
            remapped.append(" ".join(line.split()))
        if _MSI.search(line):
            routed += 1
    return Interrupts(remapped=tuple(remapped), msi_or_ioapic=routed, lines=total)
