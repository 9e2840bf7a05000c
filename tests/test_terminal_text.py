"""Host-supplied text never reaches the terminal raw (scanner/base/terminal_text.py and every human output).

A hostile host (or its snapshot, or a fleet host's ssh error) names itself, its drivers, its
kernel and its ``pci.ids`` entries with terminal escapes, carriage returns, newlines, backspaces
and bidi overrides, to clear the screen, overwrite a row or forge a ``READY`` line. Checked:

* :func:`for_terminal` escapes exactly what ``str.isprintable()`` rejects, as ``repr()`` writes
  it, and hands ordinary text of any script back untouched (the same object: no copy);
* the table, the fleet matrix, ``groups``, ``qemu-args``, ``rules``, ``explain`` and ``plugins``
  print no control, bidi or other invisible character, no host newline starts a line of theirs,
  and the escaped form is there to read;
* JSON of the same scans keeps the host's text exactly.

The CLI's output is captured as bytes: a text-mode capture would turn a raw ``\\r`` into ``\\n``.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from clihelpers import REPO, cli_env, make_plugin, plugin_with_rule
from hosttree import ready_host, workstation
from reports.matrix import render_fleet
from reports.table import render_one
from scanner.engine.model import Evidence, Finding, Step
from scanner.engine.report import Report
from scanner.base.terminal_text import escape_character, for_terminal, lines_for_terminal, row_for_terminal

#: Bytes that must never be printed: ESC, BEL, NUL, CR, BS.
FORBIDDEN_BYTES = b"\x1b\x07\x00\r\x08"

HOSTNAME = "evil\x1b[2J\x1b[H\u202eYDAER"  # a tree's host name is its first line: no newline here
GPU_DRIVER = "nv\x1b]0;pwned\x07"
NIC_DRIVER = "e1000\x08\x08\x08\x08\x08vfio-pci"  # backspaces that would turn e1000 into vfio-pci
RELEASE = "6.1.0\x1b]0;title\x07-evil"
VENDOR_NAME = "NVIDIA \u202eCorporation"
CMDLINE = "BOOT_IMAGE=/boot/vmlinuz root=/dev/sda1 ro quiet intel_iommu=off\rREADY intel_iommu=on,\x1b[2Jx iommu=pt"
OVERRIDE = "vfio-pci\x1b[2K\x1b[1A"
RESET = "bus \x1b[5mflr\u200f"
SNAPSHOT_HOSTNAME = "evil\x1b[2J\nREADY"  # a snapshot carries any string: a newline too
TARGETS = ("--device", "01:00.0", "--device", "06:01.0")


def visible(text: str) -> str:
    """How a hostile string must appear on screen."""
    return for_terminal(text)


def assert_terminal_safe(data: bytes) -> str:
    """No forbidden byte, valid UTF-8, and no character but newline that ``isprintable()`` rejects."""
    assert [hex(b) for b in FORBIDDEN_BYTES if b in data] == []
    text = data.decode("utf-8")
    assert [f"U+{ord(c):04X}" for c in text if c != "\n" and not c.isprintable()] == []
    return text


def cli(*args, env=None) -> subprocess.CompletedProcess:
    """``python -m scanner ARGS`` with stdout and stderr captured as bytes."""
    return subprocess.run([sys.executable, "-m", "scanner", *map(str, args)], cwd=REPO, env=env or cli_env(),
                          capture_output=True, timeout=300)


def no_forged_line(text: str, word: str = "READY") -> None:
    assert [line for line in text.splitlines() if line.startswith(word)] == []


# -- the function ------------------------------------------------------------------------------------

@pytest.mark.parametrize("text", ["", "gpu01", "NVIDIA Corporation GA102 [GeForce RTX 3090]", "naïve café Ünïcødé",
                                  "日本語のホスト", "Ελληνικά עברית العربية", "rocket 🚀", r"C:\path \x1b as typed",
                                  "it's \"quoted\""])
def test_ordinary_text_comes_back_as_it_is(text):
    assert for_terminal(text) is text


def test_every_printable_character_is_kept():
    every = "".join(chr(c) for c in range(0x110000) if chr(c).isprintable())
    assert for_terminal(every) == every


def test_every_other_character_is_escaped_as_repr_writes_it():
    others = [chr(c) for c in range(0x110000) if not chr(c).isprintable()]
    shown = for_terminal("".join(others))
    assert shown == "".join(repr(c)[1:-1] for c in others)
    assert shown.isprintable() and shown.isascii()


@pytest.mark.parametrize("ch, expected", [
    ("\x00", r"\x00"), ("\x07", r"\x07"), ("\x08", r"\x08"), ("\t", r"\t"), ("\n", r"\n"), ("\x0b", r"\x0b"),
    ("\r", r"\r"), ("\x1b", r"\x1b"), ("\x7f", r"\x7f"),  # C0 and DEL
    ("\x85", r"\x85"), ("\x9b", r"\x9b"), ("\x9d", r"\x9d"),  # C1: NEL, CSI, OSC
    ("\u202a", r"\u202a"), ("\u202b", r"\u202b"), ("\u202c", r"\u202c"), ("\u202d", r"\u202d"),
    ("\u202e", r"\u202e"), ("\u2066", r"\u2066"), ("\u2067", r"\u2067"), ("\u2068", r"\u2068"),
    ("\u2069", r"\u2069"), ("\u200e", r"\u200e"), ("\u200f", r"\u200f"), ("\u061c", r"\u061c"),  # bidi
    ("\u200b", r"\u200b"), ("\ufeff", r"\ufeff"), ("\u00ad", r"\xad"), ("\U000e0041", r"\U000e0041"),  # format
    ("\u2028", r"\u2028"), ("\u2029", r"\u2029"),  # line and paragraph separators
    ("\udcff", r"\udcff"), ("\ud800", r"\ud800"),  # lone surrogates
])
def test_each_class_of_invisible_character(ch, expected):
    assert escape_character(ch) == expected
    assert for_terminal(f"a{ch}b") == f"a{expected}b"


@pytest.mark.parametrize("text, expected", [
    ("evil\x1b[2J\nREADY", r"evil\x1b[2J\nREADY"),
    ("\x1b]0;pwned\x07title", r"\x1b]0;pwned\x07title"),
    ("quiet\rintel_iommu=on", r"quiet\rintel_iommu=on"),
    ("naïve\u202eTXT 日本", r"naïve\u202eTXT 日本"),
    ("e1000\x08\x08vfio", r"e1000\x08\x08vfio"),
    ("a\\x1b stays", "a\\x1b stays"),
])
def test_round_examples(text, expected):
    assert for_terminal(text) == expected


def test_text_decoded_with_surrogateescape_can_be_printed():
    name = b"host\xff\x1b".decode("utf-8", "surrogateescape")
    assert for_terminal(name) == r"host\udcff\x1b"
    for_terminal(name).encode("utf-8")  # what a terminal's encoding accepts


def test_multi_line_text_keeps_its_line_breaks_only():
    assert lines_for_terminal("one\r\ntwo\x1b[2J\n\u202ethree") == "one\\r\ntwo\\x1b[2J\n\\u202ethree"
    assert lines_for_terminal("plain\ntext") == "plain\ntext"


def test_a_row_is_escaped_cell_by_cell():
    assert row_for_terminal(("a\nb", "ok", "\x1b")) == (r"a\nb", "ok", r"\x1b")


def test_importing_it_costs_nothing_but_the_module():
    code = ("import sys, scanner, scanner.base; before = set(sys.modules); import scanner.base.terminal_text; "
            "print(' '.join(sorted(set(sys.modules) - before)))")
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=cli_env(), capture_output=True, text=True,
                          timeout=60)
    assert proc.stdout.split() == ["scanner.base.terminal_text"], proc.stderr


# -- the renderers, from crafted reports ----------------------------------------------------------------

def hostile_report(label=None, notes=()) -> Report:
    step = Step(summary="bind it\x1b[2J to vfio-pci", phase="binding",
                commands=(f"echo 'vfio-pci{OVERRIDE}' > /sys/bus/pci/devices/0000:01:00.0/driver_override",
                          "echo 'long\x1b[31m' " + "word " * 30))
    finding = Finding(status="fail", message=f"bound to {GPU_DRIVER}\nREADY 0000:01:00.0 on vfio-pci",
                      subject="0000:01:00.0", observed=f"{GPU_DRIVER}\r", expected="vfio-pci\u202e",
                      evidence=(Evidence("/sys/bus/pci/devices/0000:01:00.0/driver", f"../{GPU_DRIVER}\n"),),
                      remediation=(step,), severity="high", rule_id="VFIO-013", rule="driver-binding",
                      title="Device bound to vfio-pci")
    host = {"hostname": SNAPSHOT_HOSTNAME, "kernel": RELEASE, "arch": "x86_64\x07", "cpu_vendor": "intel",
            "source": "snapshot"}
    if label:
        host["label"] = label
    return Report(host=host, findings=[finding], started_at="2024-01-01T00:00:00+00:00", duration_s=0.0,
                  tool={"name": "vfio-scan", "version": "0"}, notes=list(notes))


def test_the_table_escapes_every_host_field_before_wrapping():
    text = assert_terminal_safe(render_one(hostile_report(notes=["ssh said \x1b[2J\nREADY"]), True).encode())
    no_forged_line(text)
    for shown in (visible(SNAPSHOT_HOSTNAME), visible(RELEASE), r"x86_64\x07", visible(GPU_DRIVER), r"\r",
                  r"vfio-pci\u202e", r"bind it\x1b[2J", visible(OVERRIDE), r"ssh said \x1b[2J\nREADY"):
        assert shown in text
    assert max(len(line) for line in text.splitlines()) <= 100  # escaped before wrapping: widths still hold
    assert r"$ echo 'long\x1b[31m' word" in text and text.count(" \\\n") >= 1  # the long command is continued


def test_the_fleet_matrix_escapes_names_rules_and_reasons():
    reports = [hostile_report(label="gpu\x1b[2J"),
               hostile_report(label="gpu99", notes=["ssh: connect to host gpu99: \x1b]0;owned\x07\nREADY gpu99"])]
    text = assert_terminal_safe(render_fleet(reports, {"verbose": True}).encode())
    no_forged_line(text)
    no_forged_line(text, "  READY")
    assert r"gpu\x1b[2J" in text
    assert r"gpu99: ssh: connect to host gpu99: \x1b]0;owned\x07\nREADY gpu99" in text


# -- the commands, on a hostile tree ------------------------------------------------------------------

def build_hostile_tree(root):
    """The workstation with a hostile host name, kernel release, drivers, pci.ids, command line,
    driver_override and reset_method."""
    tree = workstation(root)
    tree.write("/proc/sys/kernel/hostname", HOSTNAME + "\n")
    tree.write("/proc/sys/kernel/osrelease", RELEASE + "\n")
    tree.bind("0000:01:00.0", GPU_DRIVER)
    tree.bind("0000:06:01.0", NIC_DRIVER)
    tree.write("/usr/share/hwdata/pci.ids", f"10de  {VENDOR_NAME}\n\t2204  GA102 \u2066x\u2069\n"
                                            "8086  Intel Corporation\n")
    tree.cmdline(CMDLINE)
    gpu = tree.device_dir("0000:01:00.0")
    tree.write(f"{gpu}/driver_override", OVERRIDE + "\n")
    tree.write(f"{gpu}/reset_method", RESET + "\n")
    return tree


@pytest.fixture(scope="module")
def hostile(tmp_path_factory):
    base = tmp_path_factory.mktemp("hostile")
    build_hostile_tree(base / "tree")
    return base


def test_scan_table_shows_host_text_escaped(hostile):
    proc = cli("scan", "--root", hostile / "tree", "-v", *TARGETS)
    assert proc.returncode == 1, proc.stderr
    assert_terminal_safe(proc.stderr)
    text = assert_terminal_safe(proc.stdout)
    assert _host_line(text).startswith(f"Host {visible(HOSTNAME)} · kernel {visible(RELEASE)} ·")  # after the verdict
    for shown in (visible(GPU_DRIVER), visible(NIC_DRIVER), visible(OVERRIDE), r"flr\u200f", r"intel_iommu=off\rREADY",
                  r"intel_iommu=\x1b[2Jx"):
        assert shown in text


def test_scan_json_keeps_the_exact_text(hostile):
    proc = cli("scan", "--root", hostile / "tree", "--format", "json", *TARGETS)
    doc = json.loads(proc.stdout)
    assert doc["host"]["hostname"] == HOSTNAME and doc["host"]["kernel"] == RELEASE
    messages = " ".join(f["message"] for f in doc["findings"])
    assert GPU_DRIVER in messages and NIC_DRIVER in messages and OVERRIDE in messages
    values = [e["value"] for f in doc["findings"] for e in f["evidence"] if e["source"] == "/proc/cmdline"]
    assert any(CMDLINE in v for v in values)


def test_groups_table_shows_names_and_drivers_escaped(hostile):
    proc = cli("groups", "--root", hostile / "tree")
    assert proc.returncode == 0, proc.stderr
    text = assert_terminal_safe(proc.stdout)
    assert f"IOMMU groups of {visible(HOSTNAME)}" in text
    for shown in (visible(VENDOR_NAME), r"GA102 \u2066x\u2069", visible(GPU_DRIVER), visible(NIC_DRIVER)):
        assert shown in text
    doc = json.loads(cli("groups", "--root", hostile / "tree", "--format", "json").stdout)
    gpu = next(d for g in doc["groups"] for d in g["devices"] if d["address"] == "0000:01:00.0")
    assert (gpu["vendor_name"], gpu["driver"], doc["host"]["hostname"]) == (VENDOR_NAME, GPU_DRIVER, HOSTNAME)


def test_qemu_args_says_what_blocks_with_escaped_names(hostile):
    proc = cli("qemu-args", "--root", hostile / "tree", *TARGETS)
    assert proc.returncode == 1 and proc.stdout == b""
    text = assert_terminal_safe(proc.stderr)
    assert visible(GPU_DRIVER) in text and visible(NIC_DRIVER) in text and r"intel_iommu=\x1b[2Jx" in text


# -- snapshots: a host that lies in its snapshot, a snapshot that is no snapshot ------------------------

def hostile_snapshot(source, target, **fields):
    doc = json.loads(source.read_text(encoding="utf-8"))
    doc.update(fields)
    target.write_text(json.dumps(doc), encoding="utf-8")
    return target


@pytest.fixture(scope="module")
def snapshots(hostile):
    snaps = hostile / "snaps"
    snaps.mkdir()
    proc = cli("collect", "--root", hostile / "tree", "-o", snaps / "a.json")
    assert proc.returncode == 0, proc.stderr
    hostile_snapshot(snaps / "a.json", snaps / "b.json", hostname=SNAPSHOT_HOSTNAME)
    (snaps / "c\x1b]0;x\x07.json").write_text('{"hostname": "\x1b[2J\nREADY", ', encoding="utf-8")
    return snaps


def test_many_snapshots_in_the_matrix_and_each_hosts_table(snapshots):
    proc = cli("scan", "--snapshot", snapshots, "-v", "--device", "01:00.0")
    assert proc.returncode == 3, proc.stderr  # c could not be scanned
    assert_terminal_safe(proc.stderr)
    text = assert_terminal_safe(proc.stdout)
    no_forged_line(text)
    assert f"Host {visible(SNAPSHOT_HOSTNAME)} · kernel {visible(RELEASE)}" in text
    assert r"Could not be scanned" in text and r"c\x1b]0;x\x07: snapshot " in text
    assert visible(GPU_DRIVER) in text


def test_many_snapshots_in_json_keep_the_exact_text(snapshots):
    proc = cli("scan", "--snapshot", snapshots / "a.json", snapshots / "b.json", "--format", "json")
    doc = json.loads(proc.stdout)
    assert [h["host"]["hostname"] for h in doc["hosts"]] == [HOSTNAME, SNAPSHOT_HOSTNAME]


def test_one_snapshot_alone_as_a_table(snapshots):
    proc = cli("scan", "--snapshot", snapshots / "b.json")
    text = assert_terminal_safe(proc.stdout)
    no_forged_line(text)
    assert _host_line(text).startswith(f"Host {visible(SNAPSHOT_HOSTNAME)} ·")


def test_an_unreadable_snapshot_version_is_quoted_escaped(snapshots, tmp_path):
    bad = hostile_snapshot(snapshots / "a.json", tmp_path / "v.json", snapshot_version="9\x1b[2J\nREADY")
    proc = cli("scan", "--snapshot", bad)
    assert proc.returncode == 2
    text = assert_terminal_safe(proc.stderr)
    assert r"snapshot_version 9\x1b[2J\nREADY" in text and len(text.splitlines()) == 1


# -- plugin text: a third-party rule's title, docs and messages, a plugin's failure -----------------------

HOSTILE_DOCS = ("ACME-100 acme-firmware: the ACME card runs firmware 2.0 or newer.\n\n"
                "    What: reads\\x1b]0;pwned\\x07 the version.\\rREADY\n    Why: \\u202eevil.\n    ")
HOSTILE_PLUGIN = plugin_with_rule(
    'id="ACME-100", name="acme-firmware", scope="host", severity="low", title="ACME\\x1b[2J firmware", docs=__doc__',
    'yield Finding.fail("firmware \\x1b[31mold\\nREADY", observed="1.0\\r", expected="2.0")', HOSTILE_DOCS)

BROKEN_PLUGIN = '''
    raise RuntimeError("broken\\x1b[2J\\nREADY")
'''


@pytest.fixture(scope="module")
def plugin_env(tmp_path_factory):
    site = tmp_path_factory.mktemp("site")
    make_plugin(site, HOSTILE_PLUGIN)
    make_plugin(site, BROKEN_PLUGIN, module="broken_vfio", ep_name="broken", dist="broken-vfio")
    return cli_env(site)


def test_rules_and_explain_show_plugin_text_escaped(plugin_env):
    rules = assert_terminal_safe(cli("rules", env=plugin_env).stdout)
    assert r"ACME\x1b[2J firmware" in rules
    explain = cli("explain", "ACME-100", env=plugin_env)
    assert explain.returncode == 0, explain.stderr
    text = assert_terminal_safe(explain.stdout)
    no_forged_line(text)
    assert text.startswith(r"ACME-100 acme-firmware — ACME\x1b[2J firmware")
    assert r"What: reads\x1b]0;pwned\x07 the version.\rREADY" in text and r"Why: \u202eevil." in text
    assert "\nWhy: " in text  # the docs keep their own lines


def test_plugins_listing_shows_a_failure_escaped(plugin_env):
    text = assert_terminal_safe(cli("plugins", env=plugin_env).stdout)
    no_forged_line(text)
    assert r"FAILED: RuntimeError: broken\x1b[2J" in text  # the exception's first line


def test_a_plugins_finding_in_the_table(plugin_env, tmp_path):
    ready_host(tmp_path / "tree")
    proc = cli("scan", "--root", tmp_path / "tree", "--rule", "ACME-100", "-v", env=plugin_env)
    text = assert_terminal_safe(proc.stdout)
    no_forged_line(text)
    assert r"ACME\x1b[2J firmware  firmware \x1b[31mold\nREADY" in text
    assert r"observed: 1.0\r | expected: 2.0" in text


def _host_line(text: str) -> str:
    """The table's "Host ..." line: after the verdict (and the next-boot line, when there is one)."""
    return next(line for line in text.splitlines()[:3] if line.startswith("Host "))
