"""Property-based tests (hypothesis) for every parser of the facts layer, and the text inputs next to it.

For each parser: arbitrary text, and arbitrary bytes decoded the way the Facts layer decodes them,
never raise; the same input always gives the same answer; and where a parser has an inverse (a
rendering of what it returns), parsing the rendering gives the value back. Example counts stay
modest so the whole suite stays fast; a failure prints the smallest input hypothesis found.

Real bugs these found (and fixed): ``parse_int("²")``, ``group_sort_key("²")`` and ``--vfs
ADDR=²`` raised (``"²".isdigit()`` is true, ``int("²")`` is an error), and so did 5000-digit
numbers (``int()`` refuses more than 4300 digits).
"""

from __future__ import annotations

import gzip
import string

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from scanner.facts import evidence_of
from scanner.facts.boot import parse_default_grub
from scanner.facts.cmdline import normalize_key, parse_cmdline, truthy
from scanner.facts.cpu import VENDORS, parse_cpuinfo
from scanner.facts.interrupts import parse_interrupts
from scanner.facts.iommu import IommuGroup, IommuState, group_sort_key
from scanner.facts.kconfig import parse_kconfig
from scanner.facts.kernel_log import message_of, parse_kernel_log
from scanner.facts.modules import module_name, parse_modules_builtin, parse_modules_dep, parse_proc_modules
from scanner.facts.pci import (ADDRESS, class_name, is_vfio_driver, parse_hex_id, parse_int, parse_override,
                               parse_reset_method, slot_of)
from scanner.facts.pciids import gunzip, parse_pci_ids
from scanner.host import decode_text
from scanner.facts.targets import SelectorError, parse_class, parse_device, parse_vfs

# No example database: a test run writes nothing into the repository.
FAST = settings(max_examples=100, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
FAST_MANY = settings(FAST, max_examples=300)

#: Text as hostile as it gets: every code point hypothesis likes (controls, surrogates are not
#: valid str in files, NUL, RTL marks, "²"...), plus the characters the parsers care about.
TEXT = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=400) | st.text(
    alphabet='"\'=,-_ \t\n\r\\#:>[]<{}$()`;|&.0123456789abcdefxXIR²٣\x00\x0b\x0c\u2028', max_size=400)
BYTES = st.binary(max_size=400)


def as_facts_text(data: bytes, lenient: bool = False) -> str:
    """Bytes as the Facts layer would hand them to a parser: strict decode, or the lenient one."""
    got = decode_text("/x", data, lenient=lenient)
    return got.text if got.ok else data.decode("utf-8", "replace")


# -- every parser: arbitrary text and bytes never raise, and the answer is deterministic -------

TEXT_PARSERS = {
    "parse_cmdline": lambda t: parse_cmdline(t),
    "parse_default_grub": lambda t: parse_default_grub(t),
    "parse_kconfig": parse_kconfig,
    "parse_proc_modules": parse_proc_modules,
    "parse_modules_builtin": parse_modules_builtin,
    "parse_modules_dep": parse_modules_dep,
    "module_name": module_name,
    "parse_cpuinfo": parse_cpuinfo,
    "parse_kernel_log": lambda t: parse_kernel_log(t, source="dmesg"),
    "message_of": message_of,
    "parse_interrupts": parse_interrupts,
    "parse_hex_id/4": lambda t: parse_hex_id(t, 4),
    "parse_hex_id/6": lambda t: parse_hex_id(t, 6),
    "parse_int": parse_int,
    "parse_override": parse_override,
    "parse_reset_method": parse_reset_method,
    "parse_pci_ids": lambda t: parse_pci_ids(t, source="pci.ids"),
    "group_sort_key": group_sort_key,
    "normalize_key": normalize_key,
    "truthy": truthy,
    "class_name": lambda t: (class_name(t), class_name(t, base_fallback=True)),
    "is_vfio_driver": is_vfio_driver,
    "slot_of": slot_of,
}


@FAST_MANY
@given(text=TEXT)
@example(text="²")
@example(text="9" * 5000)
@example(text="\x00" * 10)
@example(text='"' * 7)
@example(text="=")
@example(text="--")
@example(text="A" * 100000)  # one long line: no parser may be quadratic (modules.builtin was)
def test_every_parser_never_raises_on_text_and_is_deterministic(text):
    for name, parse in TEXT_PARSERS.items():
        first = parse(text)
        assert parse(text) == first, name


@FAST_MANY
@given(data=BYTES)
def test_every_parser_never_raises_on_bytes(data):
    for lenient in (False, True):
        text = as_facts_text(data, lenient)
        for name, parse in TEXT_PARSERS.items():
            assert parse(text) == parse(text), name


@FAST
@given(data=BYTES, lenient=st.booleans())
def test_decode_text_answers_text_or_a_garbled_reason(data, lenient):
    got = decode_text("/proc/x", data, lenient=lenient)
    assert got.ok != bool(got.reason)
    if not got.ok:
        assert got.reason.startswith("garbled")
        assert evidence_of(got).value.startswith("<garbled")
    else:
        assert "\x00" not in got.text or not lenient


@FAST
@given(data=BYTES, cap=st.integers(min_value=0, max_value=2000))
def test_gunzip_never_raises(data, cap):
    out, why = gunzip(data, cap)
    assert (out is None) != (why is None)
    if out is not None:
        assert len(out) <= cap


@FAST
@given(data=st.binary(max_size=3000), cap=st.integers(min_value=0, max_value=3000))
def test_gunzip_round_trip_and_cap(data, cap):
    out, why = gunzip(gzip.compress(data), cap)
    if len(data) <= cap:
        assert out == data and why is None
    else:
        assert out is None and why.startswith("too large")


@FAST
@given(text=TEXT)
def test_selectors_are_parsed_or_refused_with_selector_error(text):
    for parse in (parse_device, parse_class, parse_vfs):
        try:
            parse(text)
        except SelectorError as exc:
            assert str(exc)


@pytest.mark.parametrize("count", ["²", "٣", "9" * 5000, "-1", "1e3", " ", "0x10"])
def test_vfs_count_garbage_is_a_selector_error(count):
    with pytest.raises(SelectorError):
        parse_vfs(f"0000:01:00.0={count}")


# -- round trips ----------------------------------------------------------------------------

KEY_START = string.ascii_letters + string.digits + "_"
KEY = st.text(alphabet=KEY_START + ".-", min_size=1, max_size=20).filter(
    lambda k: k[0] in KEY_START and k != "--")
PLAIN_VALUE = st.text(alphabet=string.ascii_letters + string.digits + ",.:/_-+=*@%", max_size=20)
SPACED_VALUE = st.text(alphabet=string.ascii_letters + string.digits + " ,.:/_-+*", min_size=1, max_size=20).filter(
    lambda v: " " in v)
PARAM = st.tuples(KEY, st.none() | PLAIN_VALUE | SPACED_VALUE)


def render_param(key, value) -> str:
    if value is None:
        return key
    return f'{key}="{value}"' if " " in value else f"{key}={value}"


@FAST
@given(params=st.lists(PARAM, max_size=12), init=st.lists(st.text(alphabet=string.ascii_letters, min_size=1,
                                                                     max_size=8), max_size=3),
       sep=st.sampled_from([" ", "  ", "\t", " \n "]))
def test_cmdline_round_trip(params, init, sep):
    line = sep.join(render_param(k, v) for k, v in params)
    if init:
        line += " -- " + " ".join(init)
    cl = parse_cmdline(line)
    assert [(p.raw_key, p.value) for p in cl.params] == params
    assert [p.key for p in cl.params] == [normalize_key(k) for k, _ in params]
    assert list(cl.init_args) == init
    # the last occurrence wins, under either spelling of '-'/'_'
    for key, _ in params:
        last = [v for k, v in params if normalize_key(k) == normalize_key(key)][-1]
        assert cl.value(key.replace("_", "-")) == last
    # a rendering of what was parsed parses to the same parameters (idempotence)
    again = parse_cmdline(" ".join(render_param(p.raw_key, p.value) for p in cl.params))
    assert [(p.key, p.value) for p in again.params] == [(p.key, p.value) for p in cl.params]


@FAST
@given(params=st.lists(PARAM, max_size=8), linux=st.lists(PARAM, max_size=4),
       quote=st.sampled_from(["double", "single"]), comment=st.booleans())
def test_default_grub_round_trip(params, linux, quote, comment):
    default = " ".join(render_param(k, v) for k, v in params)
    extra = " ".join(render_param(k, v) for k, v in linux)

    def shell(value):
        if quote == "single":
            return "'" + value + "'"
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'

    text = (f"GRUB_DEFAULT=0\nGRUB_CMDLINE_LINUX_DEFAULT={shell(default)}"
            + ("  # set by hand\n" if comment else "\n") + f"GRUB_CMDLINE_LINUX={shell(extra)}\n")
    got = parse_default_grub(text)
    # GRUB puts GRUB_CMDLINE_LINUX first, then GRUB_CMDLINE_LINUX_DEFAULT
    expected = parse_cmdline(" ".join(x for x in (extra, default) if x))
    assert [(p.key, p.value) for p in got.params] == [(p.key, p.value) for p in expected.params]


KCONFIG_NAME = st.text(alphabet=string.ascii_uppercase + string.digits + "_", min_size=1, max_size=24)
KCONFIG_VALUE = st.sampled_from(["y", "m", "n"]) | st.integers(min_value=-2**31, max_value=2**31).map(str) | \
    st.text(alphabet=string.ascii_letters + string.digits + " -_./", max_size=20).map(lambda s: f'"{s}"')


@FAST
@given(options=st.dictionaries(KCONFIG_NAME, KCONFIG_VALUE, max_size=20), junk=st.lists(TEXT, max_size=3))
def test_kconfig_round_trip(options, junk):
    lines = ["#", "# Automatically generated file; DO NOT EDIT.", "#"]
    lines += [f"# CONFIG_{k} is not set" if v == "n" else f"CONFIG_{k}={v}" for k, v in options.items()]
    # junk lines that cannot be mistaken for an option line are ignored
    lines += [j for j in junk if "CONFIG_" not in j]
    parsed = parse_kconfig("\n".join(lines) + "\n")
    assert parsed == {k: v[1:-1] if v.startswith('"') else v for k, v in options.items()}


MODULE = st.text(alphabet=string.ascii_lowercase + string.digits + "_-", min_size=1, max_size=30).filter(
    lambda m: m not in ("-", "_") and not m.startswith("-"))


@FAST
@given(names=st.lists(MODULE, max_size=20), ext=st.sampled_from(["", ".xz", ".gz", ".zst", ".bz2"]))
def test_modules_round_trip(names, ext):
    want = {n.replace("-", "_") for n in names}
    proc = "".join(f"{n} {16384 + i} 0 - Live 0x0000000000000000\n" for i, n in enumerate(names))
    assert parse_proc_modules(proc) == want
    builtin = "".join(f"kernel/drivers/misc/{n}.ko\n" for n in names)
    assert parse_modules_builtin(builtin) == want
    dep = "".join(f"kernel/drivers/misc/{n}.ko{ext}: kernel/drivers/base/dep.ko{ext}\n" for n in names)
    assert parse_modules_dep(dep) == want
    for n in names:
        assert module_name(f"kernel/drivers/misc/{n}.ko{ext}") == n.replace("-", "_")


FLAG = st.text(alphabet=string.ascii_lowercase + string.digits + "_", min_size=1, max_size=12)


@FAST
@given(vendor=st.sampled_from(sorted(VENDORS)) | st.text(alphabet=string.ascii_letters, min_size=1, max_size=12),
       flags=st.frozensets(FLAG, max_size=30), cpus=st.integers(min_value=1, max_value=4))
def test_cpuinfo_round_trip(vendor, flags, cpus):
    block = "processor\t: {n}\nvendor_id\t: " + vendor + "\nmodel name\t: Test CPU\nflags\t\t: " + \
        " ".join(sorted(flags)) + "\n\n"
    info = parse_cpuinfo("".join(block.format(n=n) for n in range(cpus)))
    assert info.vendor_id == vendor
    assert info.vendor == VENDORS.get(vendor)
    assert info.flags == flags
    assert info.model_name == "Test CPU"


LOG_MESSAGE = st.text(alphabet=string.ascii_letters + string.digits + " :,.()-_/'", min_size=1, max_size=60).filter(
    lambda m: m.strip())


@FAST
@given(messages=st.lists(LOG_MESSAGE, max_size=15), shape=st.sampled_from(["dmesg", "syslog", "iso", "quoted"]))
def test_kernel_log_round_trip(messages, shape):
    def wrap(n, m):
        if shape == "dmesg":
            return f"[{n:5d}.{n * 7919 % 1000000:06d}] {m}"
        if shape == "syslog":
            return f"Oct 31 20:09:{n % 60:02d} host kernel: {m}"
        if shape == "iso":
            return f"2024-10-31T20:09:{n % 60:02d}.123456+01:00 host kernel: {m}"
        return f"> [{n:5d}.000000] {m}"

    log = parse_kernel_log("\n".join(wrap(n, m) for n, m in enumerate(messages)) + "\n", source="dmesg")
    assert list(log.messages) == [m.strip() for m in messages]
    assert log.available


@FAST
@given(lines=st.lists(st.tuples(st.integers(min_value=0, max_value=255), st.booleans(),
                                st.sampled_from(["PCI-MSI", "IO-APIC", "DMAR-MSI", "XT-PIC"])), max_size=12))
def test_interrupts_counts(lines):
    text = "           CPU0       CPU1\n" + "".join(
        f"{irq:3d}:   {irq * 3}   0  {'IR-' if ir else ''}{chip}  {irq}-edge  dev{irq}\n" for irq, ir, chip in lines)
    got = parse_interrupts(text)
    assert got.lines == len(lines)
    assert len(got.remapped) == sum(1 for _, ir, _ in lines if ir)
    assert got.msi_or_ioapic == sum(1 for _, _, chip in lines if chip != "XT-PIC")


@FAST
@given(width=st.sampled_from([4, 6]), data=st.data())
def test_hex_id_round_trip(width, data):
    n = data.draw(st.integers(min_value=0, max_value=16 ** width - 1))
    spelled = data.draw(st.sampled_from([f"0x{n:0{width}x}\n", f"0x{n:0{width}X}", f"{n:x}", f"  0x{n:x}  \n"]))
    assert parse_hex_id(spelled, width) == f"{n:0{width}x}"


@FAST
@given(text=TEXT, width=st.integers(min_value=1, max_value=8))
def test_hex_id_is_none_or_exactly_width_hex_digits(text, width):
    got = parse_hex_id(text, width)
    assert got is None or (len(got) == width and all(c in "0123456789abcdef" for c in got))


@FAST
@given(n=st.integers(min_value=0, max_value=10 ** 12), pad=st.sampled_from(["", "\n", " ", "  \n"]))
def test_int_round_trip(n, pad):
    assert parse_int(f"{n}{pad}") == n
    assert parse_int(f"-{n}") is None


@FAST
@given(methods=st.lists(st.sampled_from(["flr", "bus", "pm", "device_specific", "acpi", "cxl_bus"]), max_size=6))
def test_reset_method_round_trip(methods):
    assert parse_reset_method(" ".join(methods) + "\n") == tuple(methods)


@FAST
@given(driver=st.none() | st.text(alphabet=string.ascii_lowercase + "_-", min_size=1, max_size=20))
def test_override_round_trip(driver):
    text = "(null)\n" if driver is None else driver + "\n"
    assert parse_override(text) == driver


VENDOR_ID = st.text(alphabet="0123456789abcdef", min_size=4, max_size=4)
NAME = st.text(alphabet=string.ascii_letters + string.digits + " []()-/.,&+", min_size=1, max_size=40).filter(
    lambda s: s.strip() and not s.lstrip().startswith("#"))


@FAST
@given(vendors=st.dictionaries(VENDOR_ID, st.tuples(NAME, st.dictionaries(VENDOR_ID, NAME, max_size=4)), max_size=8))
def test_pci_ids_round_trip(vendors):
    lines = ["# pci.ids test", ""]
    for vid, (vname, devices) in vendors.items():
        lines.append(f"{vid}  {vname}")
        for did, dname in devices.items():
            lines.append(f"\t{did}  {dname}")
            lines.append(f"\t\t{vid} 0001  subsystem of {dname}")
    lines += ["C 03  Display controller", "\t00  VGA compatible controller"]
    ids = parse_pci_ids("\n".join(lines) + "\n")
    assert ids.vendors == {v: n.strip() for v, (n, _) in vendors.items()}
    assert ids.devices == {(v, d): n.strip() for v, (_, ds) in vendors.items() for d, n in ds.items()}
    assert ids.notes == ()


@FAST
@given(text=TEXT)
def test_pci_ids_names_never_carry_control_characters(text):
    ids = parse_pci_ids(text)
    for name in list(ids.vendors.values()) + list(ids.devices.values()):
        assert name and all(c == "\t" or c.isprintable() or c.isspace() for c in name)
        assert "\n" not in name and "\x1b" not in name and "\r" not in name


@FAST
@given(names=st.lists(TEXT, max_size=20))
def test_group_numbers_sort_whatever_their_names(names):
    ordered = sorted(names, key=group_sort_key)
    numeric = [n for n in ordered if group_sort_key(n)[0] == 0]
    assert [int(n) for n in numeric] == sorted(int(n) for n in numeric)
    state = IommuState(groups={n: IommuGroup(number=n, devices=(), name=n) for n in names})
    assert len(state.real_groups) + len(state.noiommu_groups) == len(state.groups)


@FAST
@given(address=TEXT)
def test_only_canonical_addresses_match(address):
    if ADDRESS.match(address):
        assert address == address.strip() and address.lower() == address and "\n" not in address


# -- the Facts layer around the parsers: any bytes in any file it reads -------------------------------

FACT_FILES = ("/proc/cmdline", "/proc/cpuinfo", "/proc/modules", "/boot/config-6.1.0-56-amd64", "/proc/interrupts",
              "/var/log/dmesg", "/etc/default/grub", "/etc/kernel/cmdline", "/proc/net/route", "/proc/net/ipv6_route",
              "/proc/self/mountinfo", "/proc/sys/kernel/osrelease", "/proc/sys/kernel/hostname",
              "/lib/modules/6.1.0-56-amd64/modules.builtin", "/usr/share/misc/pci.ids", "/proc/config.gz",
              "/sys/bus/pci/devices/0000:02:00.0/sriov_totalvfs", "/sys/bus/pci/devices/0000:01:00.0/class",
              "/sys/bus/pci/devices/0000:01:00.0/reset_method", "/sys/bus/pci/devices/0000:00:02.0/boot_vga",
              "/sys/kernel/iommu_groups/1/name", "/sys/module/vfio/parameters/enable_unsafe_noiommu_mode")


@pytest.fixture(scope="module")
def glue_tree(tmp_path_factory):
    from hosttree import workstation

    return workstation(tmp_path_factory.mktemp("glue") / "ws")


@settings(FAST, max_examples=80)
@given(path=st.sampled_from(FACT_FILES), data=BYTES | TEXT.map(lambda t: t.encode("utf-8")))
def test_any_content_in_any_file_the_facts_read_scans_without_error(glue_tree, path, data):
    from hardening import scan

    target = glue_tree.path(path)
    saved = target.read_bytes() if target.exists() else None
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(data)
    try:
        _, report = scan(glue_tree.root)
    finally:
        if saved is None:
            target.unlink()
        else:
            target.write_bytes(saved)
    assert report.exit_code in (0, 1, 3)
    assert not [f for f in report.findings if f.status == "error"], (path, data[:80])
