"""A device's ``resource`` lines parse as they did before parsed lines were shared between devices
(most lines are unused resources, all zeros, on every device)."""

from __future__ import annotations

import re

from hypothesis import given, settings
from hypothesis import strategies as st

from scanner.facts.vm_start_hw import parse_resource


def reference_parse_resource(text):
    """``parse_resource`` as it was: each line matched and made anew."""
    found = []
    for index, line in enumerate(text.splitlines()):
        m = re.match(r"^0x([0-9a-fA-F]{1,16}) 0x([0-9a-fA-F]{1,16}) 0x([0-9a-fA-F]{1,16})$", line.strip())
        if m:
            start, end, flags = (int(g, 16) for g in m.groups())
            found.append((index, start, end, flags, line.strip()))
    return found


RESOURCE_LINES = ["0x0000000000000000 0x0000000000000000 0x0000000000000000",
                  "0x00000000fb000000 0x00000000fbffffff 0x0000000000040200",
                  "0x0000006000000000 0x00000067ffffffff 0x000000000014220c", "  0x1 0x2 0x3  ", "0x1 0x2", "garbage",
                  "0xFFFFFFFFFFFFFFFF 0x0 0x200", "0x1 0x2 0x3\x0b", ""]


@settings(max_examples=200, deadline=None)
@given(lines=st.lists(st.sampled_from(RESOURCE_LINES) | st.text(alphabet="0x12 \t", max_size=12), max_size=20))
def test_resource_lines_parse_as_they_did(lines):
    text = "\n".join(lines)
    got = [(b.index, b.start, b.end, b.flags, b.line) for b in parse_resource(text)]
    assert got == reference_parse_resource(text)
