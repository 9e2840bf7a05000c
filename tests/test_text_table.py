"""The table report's own column layout (reports/text_table.py) prints what tabulate printed, byte for byte.

The reference is tabulate itself, called the way the table report called it before it had its
own layout (``tablefmt="simple"``, ``maxcolwidths``), with wide-character measuring off as it is
without the optional ``wcwidth`` package. Held to it: one table over many generated cells (hostile
text escaped for the terminal, words longer than a line, hyphens, numbers, empty cells, cells that
wrap onto many lines), and whole reports (host and device tables, waived and error rows, notes,
policy lines, ``-v`` evidence and fixes) rendered once with each layout.
"""

from __future__ import annotations

from unittest import mock

import textwrap

import pytest
import tabulate as tabulate_module
from hypothesis import HealthCheck, example, given, reject, settings
from hypothesis import strategies as st

import reports.table
from reports.table import CHECK_WIDTH, HEADERS, _wrap, render_one
from reports.text_table import simple_table
from scanner.engine.model import Evidence, Finding, Step
from scanner.engine.report import Report
from scanner.base.terminal_text import for_terminal

#: Words that reach the corners of the layout: hyphens (textwrap breaks after them), em-dashes, numbers
#: (never wrapped; a column of them is right-aligned on the point, floats rewritten), what Python reads
#: as a bool, control characters and bidi overrides (escaped first), wide and combining characters.
TOKENS = ["vfio-pci", "well-known", "a-b-c-d", "x-", "-x", "--", "---", "foo--bar", "0000:01:00.0", "(see VFIO-013)",
          "1", "12", "-3", "1.50", "1e5", "1_000", "0.0000001", "inf", "-inf", "nan", "NaN", "Infinity", "9" * 40,
          "True", "False", "x" * 45, "/sys/bus/pci/devices/0000:01:00.0/driver_override", "", " ", "   ",
          "\x1b[2J", "\n", "\r", "\t", "\u202e", "\u200b", "日本語のホスト", "naïve", "e\u0301", "🚀"]

texts = st.lists(st.one_of(st.sampled_from(TOKENS), st.text(max_size=12)), max_size=30).map(
    lambda parts: "".join(parts)) | st.lists(st.sampled_from(TOKENS), max_size=30).map(" ".join)
cells = texts.map(for_terminal)
widths = st.none() | st.integers(min_value=1, max_value=70)


def tabulate_table(headers, rows, max_widths) -> str:
    """The old layout: tabulate, measuring a character as one column."""
    with mock.patch.object(tabulate_module, "wcwidth", None):
        return tabulate_module.tabulate(rows, headers=headers, tablefmt="simple", maxcolwidths=list(max_widths))


def tabulate_or_reject(headers, rows, max_widths) -> str:
    try:
        return tabulate_table(headers, rows, max_widths)
    except (AttributeError, ValueError):  # a wrapped cell "True", or "True" among floats: tabulate raised
        reject()


# -- one table ---------------------------------------------------------------------------------------

@settings(max_examples=600, deadline=None)
@given(rows=st.lists(st.tuples(cells, cells, cells, cells), min_size=1, max_size=8),
       max_widths=st.tuples(widths, widths, widths, widths))
@example(rows=[("PASS", "R-1", "check", "1.50"), ("FAIL", "R-2", "x", "1e5")], max_widths=(None, None, 30, 20))
@example(rows=[("PASS", "R-1", "inf ", "x" * 80), ("FAIL", "R-2", "2", "")], max_widths=(None, None, 30, 20))
@example(rows=[("", "", "", "")], max_widths=(None, None, 30, 20))
@example(rows=[(" " * 50 + "abc", "a-b", "modules-load.d or /etc/modules", "abc " + "y" * 40)],
         max_widths=(None, None, 5, 4))
def test_one_table_is_laid_out_as_tabulate_did(rows, max_widths):
    expected = tabulate_or_reject(HEADERS, rows, max_widths)
    assert simple_table(HEADERS, rows, max_widths) == expected


@given(headers=st.lists(texts.map(for_terminal), min_size=1, max_size=5))
def test_a_table_without_rows_is_its_header(headers):
    assert simple_table(headers, [], [None] * len(headers)) == tabulate_module.tabulate([], headers=headers,
                                                                                        tablefmt="simple")


@pytest.mark.parametrize("cell", ["True", "False"])
def test_a_wrapped_cell_that_reads_as_a_bool_is_shown(cell):
    with pytest.raises(AttributeError):  # tabulate cast it to a bool and could not wrap it
        tabulate_table(HEADERS, [("PASS", "R-1", cell, "ok")], (None, None, CHECK_WIDTH, 40))
    table = simple_table(HEADERS, [("PASS", "R-1", cell, "ok"), ("FAIL", "R-2", "x", "1.5")],
                         (None, None, CHECK_WIDTH, 40))
    assert table.splitlines()[2].split() == ["PASS", "R-1", cell, "ok"]


def test_long_results_wrap_at_their_width_break_after_hyphens_and_cut_long_words():
    message = "nothing loads vfio_pci at boot (no modules-load.d or /etc/modules entry) " + "z" * 50
    rows = [("FAIL", "VFIO-007", "vfio modules available", message)]
    table = simple_table(HEADERS, rows, (None, None, CHECK_WIDTH, 48))
    assert table == tabulate_table(HEADERS, rows, (None, None, CHECK_WIDTH, 48))
    assert table.splitlines() == [
        "status    rule      check                   result",
        "--------  --------  ----------------------  ------------------------------------------------",
        "FAIL      VFIO-007  vfio modules available  nothing loads vfio_pci at boot (no modules-",
        "                                            load.d or /etc/modules entry) " + "z" * 18,
        "                                            " + "z" * 32]


#: Words of the results most cells are: hyphenated and not, letters and digits mixed, underscores (a letter
#: to textwrap), non-ASCII letters, lone and double hyphens, numbers: where textwrap may break and where not.
RESULT_WORDS = ["vfio-pci", "well-known", "modules-load.d", "a-b-c-d", "ab-c", "a-bc", "x-", "-x", "--", "a--b",
                "0000:01:00.0", "IOMMU", "group", "13", "is", "a", "snake_case-name", "élan-vital", "1-2", "ab-1",
                "re-bind", "x" * 30, "/sys/bus/pci/devices/0000:01:00.0/driver", "(see", "VFIO-013)", "e\u0301-ab"]
result_texts = st.lists(st.sampled_from(RESULT_WORDS), min_size=1, max_size=25).map(" ".join)


@settings(max_examples=800, deadline=None)
@given(text=result_texts, width=st.integers(min_value=1, max_value=60))
@example(text="nothing binds vfio-pci at boot (no modules-load.d entry)", width=12)
@example(text="ab-cd-ef ab-cd", width=3)
def test_results_of_words_one_blank_apart_wrap_as_tabulate_wrapped_them(text, width):
    rows = [("FAIL", "VFIO-007", "check", text)]
    assert simple_table(HEADERS, rows, (None, None, None, width)) == tabulate_or_reject(
        HEADERS, rows, (None, None, None, width))


# -- the lines below the tables ---------------------------------------------------------------------

@settings(max_examples=400, deadline=None)
@given(text=texts, width=st.integers(min_value=10, max_value=100), indent=st.sampled_from(["", "  ", "    "]))
@example(text="   ", width=10, indent="    ")
@example(text="  leading and trailing  ", width=40, indent="  ")
def test_a_message_below_the_tables_wraps_as_textwrap_wraps_it(text, width, indent):
    lines = textwrap.wrap(for_terminal(text), width=width, initial_indent=indent, subsequent_indent=indent + "  ",
                          break_long_words=True, break_on_hyphens=False)
    assert _wrap(text, width, indent) == ("\n".join(lines) or indent)


# -- whole reports -----------------------------------------------------------------------------------

@st.composite
def findings(draw):
    status = draw(st.sampled_from(["pass", "fail", "warn", "skip", "error", "waived"]))
    waiver = None
    if status == "waived" and draw(st.booleans()):
        waiver = {"justification": draw(texts), "expires": draw(st.none() | st.just("2030-01-01"))}
    steps = tuple(Step(summary=draw(texts), phase="binding", requires_reboot=draw(st.booleans()),
                       commands=tuple(draw(st.lists(texts, max_size=2))))
                  for _ in range(draw(st.integers(0, 2))))
    return Finding(status=status, message=draw(texts), subject=draw(st.sampled_from(["host", "0000:01:00.0",
                                                                                   "0000:02:00.0\x1b[2J"])),
                   observed=draw(texts), expected=draw(st.sampled_from(["", "vfio-pci"])),
                   evidence=tuple(Evidence(draw(texts), draw(texts)) for _ in range(draw(st.integers(0, 2)))),
                   remediation=steps, rule_id=draw(st.sampled_from(["VFIO-013", "ACMECORPORATE-1000", "1.5"])),
                   rule=draw(st.sampled_from(["driver-binding", "acme\x07"])), title=draw(texts), waiver=waiver,
                   original_status="fail" if status == "waived" else None)


@st.composite
def scan_reports(draw):
    return Report(host={"hostname": draw(texts), "kernel": "6.1", "arch": "x86_64", "cpu_vendor": "amd",
                        "source": "root"},
                  findings=draw(st.lists(findings(), max_size=8)), started_at="2024-01-01T00:00:00+00:00",
                  duration_s=0.0, notes=draw(st.lists(texts, max_size=2)),
                  policy=draw(st.none() | st.just({"file": "policy.toml", "date": "2024-01-01", "expired_waivers": [],
                                                   "unused_waivers": []})))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(report=scan_reports(), verbose=st.booleans())
def test_a_report_reads_as_it_did_with_tabulate(report, verbose):
    with mock.patch.object(reports.table, "simple_table", tabulate_or_reject):
        expected = render_one(report, verbose)
    assert render_one(report, verbose) == expected

