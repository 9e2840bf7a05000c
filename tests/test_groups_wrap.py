"""The ``groups`` table wraps names and titles exactly as textwrap does, short ones without it."""

import textwrap

from hypothesis import given, settings
from hypothesis import strategies as st

from scanner.commands.groups import WIDTH, wrap

#: What names and titles are made of, and what textwrap treats specially: spaces, tabs, line
#: breaks, other Unicode spaces, hyphens.
ALPHABET = st.sampled_from(list("ab-. ") + ["\t", "\n", "\r", "\x0b", "\x0c", "\x1c", "\u00a0", "\u2003", "é"])


@settings(max_examples=500, deadline=None)
@given(text=st.text(ALPHABET, max_size=130), indent=st.integers(0, 40), hyphens=st.booleans())
def test_wrap_is_textwraps(text, indent, hyphens):
    first, later = " " * indent, " " * (indent + 2)
    assert wrap(text, first, later, break_on_hyphens=hyphens) == textwrap.wrap(
        text, WIDTH, initial_indent=first, subsequent_indent=later, break_on_hyphens=hyphens)


def test_a_name_that_fits_is_one_line_and_a_long_one_wraps():
    name = "Intel Corporation Ethernet Controller E810-C for QSFP"
    assert wrap(name, " " * 16, " " * 18) == [" " * 16 + name]
    long = " ".join([name] * 3)
    lines = wrap(long, " " * 16, " " * 18)
    assert len(lines) == 2 and all(len(line) <= WIDTH for line in lines)
