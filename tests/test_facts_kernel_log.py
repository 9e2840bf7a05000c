"""Kernel log parsing on real logs in every wrapping they come in (shared/data/dmesg)."""

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from scanner.facts.kernel_log import KernelLog, message_of, parse_kernel_log

# what a wrapper left behind looks like: a dmesg stamp, a syslog/journal date, a mail quote
LEFTOVER = re.compile(r"^(?:<\d+>)?\[\s*\d+\.\d+\]|^[A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d |^>|\bkernel: |=3D")


def load(shared_data, name):
    path = shared_data / "dmesg" / name
    return parse_kernel_log(path.read_bytes().decode("utf-8", "replace"), source=str(path))


@pytest.mark.parametrize("name", ["sp7-surface-pro-7-arch-5.3.7.txt", "sp7-surface-pro-7-5.3.8-2-surface.txt",
                                  "sp7-surface-pro-7-journalctl-format.txt"])
def test_surface_logs_give_the_bare_ir_message(shared_data, name):
    log = load(shared_data, name)
    assert "DMAR-IR: Enabled IRQ remapping in xapic mode" in log.messages
    assert log.first(r"^DMAR-IR: Enabled IRQ remapping") == "DMAR-IR: Enabled IRQ remapping in xapic mode"
    assert log.first(r"^Command line: initrd=\\initramfs-linux")
    # the trap lines of an Intel laptop are there, unprefixed, for rules that must ignore them
    assert log.first(r"^AMD-Vi: AMD IOMMUv2 functionality not available on this system$")
    assert not log.grep(r"Virtualization Technology for Directed I/O")


def test_journal_format_has_no_prefixes_left(shared_data):
    log = load(shared_data, "sp7-surface-pro-7-journalctl-format.txt")
    left = [m for m in log.messages if LEFTOVER.search(m)]
    assert left == []
    assert log.messages[1].startswith("Linux version 5.3.8-2-surface-ipts-test")
    # user-space senders keep their name, as dmesg shows them when they write to /dev/kmsg
    assert "systemd[1]: Detected architecture x86-64." in log.messages


@pytest.mark.parametrize("name, message", [
    ("gammaman88-pve-ryzen5700u-headcut.txt", "AMD-Vi: Unknown option - 'on'"),
    ("projectinitiative-thinkpad-21bv-nixos-6.18.txt", "DMAR: Intel-IOMMU force enabled due to platform opt in"),
    ("linuxhw-asus-p8bm-xeon-e3v2-pve-5.4.txt", "DMAR-IR: Enabled IRQ remapping in x2apic mode"),
    ("clu6-supermicro-epyc-rocky9.txt", "AMD-Vi: Interrupt remapping enabled"),
])
def test_plain_dmesg_lines_lose_their_timestamps(shared_data, name, message):
    log = load(shared_data, name)
    assert message in log.messages
    assert not any(re.match(r"^\[\s*\d+\.\d+\]", m) for m in log.messages)


def test_head_cut_log_still_has_the_kernel_command_line(shared_data):
    log = load(shared_data, "gammaman88-pve-ryzen5700u-headcut.txt")
    assert not log.grep(r"^Linux version")
    assert log.first(r"^Kernel command line: .*amd_iommu=on iommu=pt")


def test_mail_quoted_fragment(shared_data):
    log = load(shared_data, "fragments/frag-email-quoted-amd-old-group-format.txt")
    assert "AMD-Vi: Interrupt remapping enabled" in log.messages
    assert "iommu: Adding device 0000:0a:00.0 to group 16" in log.messages
    assert not [m for m in log.messages if LEFTOVER.search(m)]


def test_quoted_printable_fragment_is_decoded(shared_data):
    log = load(shared_data, "fragments/frag-arch-mainline-quoted-printable-email.txt")
    cmdline = log.first(r"^Kernel command line:")
    # "=3D" decoded to "=", and soft line breaks ("=" at the end of a line) joined again
    assert cmdline == ("Kernel command line: initrd=\\intel-ucode.img initrd=\\initramfs-linux-mainline.img "
                       "root=/dev/nvme0n1p1 rw intel_iommu=on ahci.mobile_lpm_policy=1")
    assert "printk: log buffer data + meta data: 131072 + 458752 = 589824 bytes" in log.messages
    assert "DMAR: IOMMU enabled" in log.messages


def test_ring_buffer_wrapped_log_has_no_boot_lines(shared_data):
    log = load(shared_data, "linuxhw-asus-a4110-pve-5.15-ringbuffer-wrapped.txt")
    assert log.available and len(log.messages) > 50
    assert not log.grep(r"Command line")
    assert not log.grep(r"DMAR|AMD-Vi|iommu")
    assert log.messages[0].startswith("perf: interrupt took too long")


@pytest.mark.parametrize("line, message", [
    ("[    0.086142] DMAR: IOMMU enabled", "DMAR: IOMMU enabled"),
    ("<6>[    0.086142] DMAR: IOMMU enabled", "DMAR: IOMMU enabled"),
    ("Oct 31 20:09:02 host kernel: DMAR: IOMMU enabled", "DMAR: IOMMU enabled"),
    ("2024-05-01T10:00:00+0200 host kernel: DMAR: IOMMU enabled", "DMAR: IOMMU enabled"),
    ("> > [    0.1] DMAR: IOMMU enabled", "DMAR: IOMMU enabled"),
    ("DMAR: IOMMU enabled", "DMAR: IOMMU enabled"),
])
def test_message_of(line, message):
    assert message_of(line) == message


def test_plain_text_with_equals_signs_is_not_mangled():
    log = parse_kernel_log("[    2.634150] == power state 0 ==\n[    2.7] radeon: x=1\n", source="x")
    assert log.messages == ("== power state 0 ==", "radeon: x=1")


@settings(max_examples=300, deadline=None)
@given(messages=st.lists(st.text(alphabet="ab: \u00e9", max_size=6), max_size=8),
       pattern=st.sampled_from(["a", "^a", "b$", "a:.*b", "^$", "\u00e9", "x", re.compile("b+")]))
def test_grep_and_first_are_the_messages_a_search_matches(messages, pattern):
    """Every message the pattern is found in, in log order, and the first of them (None when none)."""
    log = KernelLog(messages=tuple(messages), source="dmesg")
    rx = re.compile(pattern) if isinstance(pattern, str) else pattern
    expected = [m for m in messages if rx.search(m) is not None]
    assert log.grep(pattern) == expected
    assert log.first(pattern) == (expected[0] if expected else None)
