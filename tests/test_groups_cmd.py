"""``vfio-scan groups``: every IOMMU group with its devices, names from pci.ids, verdicts, JSON, exit codes.

The pci.ids text below is made of real lines of pci.ids 2023.04.10 (Debian's ``pci.ids`` package),
in the file's own order and layout: vendor lines, tab-indented device lines, two-tab subsystem
lines, and the class section at the end. That version does not know QEMU's PCIe-to-PCI bridge
(1b36:000e), so lspci itself prints ``Red Hat, Inc. Device 000e`` for it.
"""

from __future__ import annotations

import gzip
import json
import os
import re
import shutil
from pathlib import Path

import jsonschema
import pytest

from clihelpers import REPO, run_cli, stderr_lines
from hosttree import workstation

from scanner.facts import Facts
from scanner.facts.pciids import gunzip, parse_pci_ids
from scanner.host.tree import TreeHost

GROUPS_SCHEMA = REPO / "schemas" / "groups.schema.json"

PCI_IDS = """\
#
#\tList of PCI ID's
#
#\tVersion: 2023.04.10
#\tDate:    2023-04-10 20:08:02
#

# Vendors, devices and subsystems. Please keep sorted.

# Syntax:
# vendor  vendor_name
#\tdevice  device_name\t\t\t\t<-- single tab
#\t\tsubvendor subdevice  subsystem_name\t<-- two tabs

0001  SafeNet (wrong ID)
0010  Allied Telesis, Inc (Wrong ID)
# This is a relabelled RTL-8139
\t8139  AT-2500TX V3 Ethernet
10de  NVIDIA Corporation
\t1aef  GA102 High Definition Audio Controller
\t2204  GA102 [GeForce RTX 3090]
\t\t147d 10de  NVIDIA Geforce RTX 3090 Founders Edition
\t2205  GA102 [GeForce RTX 3080 Ti 20GB]
144d  Samsung Electronics Co Ltd
\ta808  NVMe SSD Controller SM981/PM981/PM983
1b36  Red Hat, Inc.
\t000d  QEMU XHCI Host Controller
\t0010  QEMU NVM Express Controller
8086  Intel Corporation
\t100e  82540EM Gigabit Ethernet Controller
\t1521  I350 Gigabit Network Connection
\t15bc  Ethernet Connection (7) I219-V
\t1901  6th-10th Gen Core Processor PCIe Controller (x16)
\t1905  Xeon E3-1200 v5/E3-1500 v5/6th Gen Core Processor PCIe Controller (x8)
\t29c0  82G33/G31/P35/P31 Express DRAM Controller
\t3e92  CoffeeLake-S GT2 [UHD Graphics 630]
\ta305  Z390 Chipset LPC/eSPI Controller
\ta323  Cannon Lake PCH SMBus Controller
\ta330  Cannon Lake PCH PCI Express Root Port #9
\ta33c  Cannon Lake PCH PCI Express Root Port #5
\ta348  Cannon Lake PCH cAVS
\ta352  Cannon Lake PCH SATA AHCI Controller
\ta36d  Cannon Lake PCH USB 3.1 xHCI Host Controller

# List of known device classes, subclasses and programming interfaces

# Syntax:
# C class\tclass_name
#\tsubclass\tsubclass_name  \t\t<-- single tab
#\t\tprog-if  prog-if_name  \t<-- two tabs

C 04  Multimedia controller
\t00  Multimedia video controller
\t01  Multimedia audio controller
\t02  Computer telephony device
\t03  Audio device
\t80  Multimedia controller
"""

#: group -> addresses of the workstation fixture (tests/hosttree.py), as its sysfs lists them
WORKSTATION_GROUPS = {
    0: ["0000:00:00.0"],
    1: ["0000:00:01.0", "0000:01:00.0", "0000:01:00.1"],
    2: ["0000:00:02.0"],
    3: ["0000:00:14.0"],
    4: ["0000:00:17.0"],
    5: ["0000:00:1f.0", "0000:00:1f.3", "0000:00:1f.4", "0000:00:1f.6"],
    6: ["0000:00:1c.0"],
    7: ["0000:02:00.0"],
    8: ["0000:00:1d.0"],
    9: ["0000:03:00.0"],
    10: ["0000:00:06.0"],
    11: ["0000:05:00.0", "0000:06:01.0", "0000:06:02.0"],
}

ONE_SLOT_IN_USE = "one slot: pass all its functions together; in use by host drivers"
ONE_SLOT_READY = "one slot: pass all its functions together; ready for vfio"
SHARED_IN_USE = "shared by unrelated devices: pass them all, or move the card; in use by host drivers"


def load_groups_schema() -> dict:
    return json.loads(GROUPS_SCHEMA.read_text(encoding="utf-8"))


def assert_valid(doc: dict) -> None:
    errors = [f"{list(e.absolute_path)}: {e.message}"
              for e in jsonschema.Draft202012Validator(load_groups_schema()).iter_errors(doc)]
    assert not errors, errors


def groups_json(root, *args) -> tuple:
    proc = run_cli("groups", "--root", root, "--format", "json", *args)
    assert "Traceback" not in proc.stderr, proc.stderr
    assert proc.stdout, f"no JSON on stdout (exit {proc.returncode}); stderr: {proc.stderr}"
    return proc, json.loads(proc.stdout)


def by_address(doc: dict) -> dict:
    return {d["address"]: d for g in doc["groups"] for d in g["devices"]}


@pytest.fixture
def ws(tmp_path):
    """The workstation tree without a pci.ids."""
    return workstation(tmp_path / "ws")


@pytest.fixture
def ws_named(tmp_path):
    """The workstation tree with Debian's pci.ids at /usr/share/misc/pci.ids."""
    tree = workstation(tmp_path / "ws")
    tree.write("/usr/share/misc/pci.ids", PCI_IDS)
    return tree


# -- the pci.ids parser (pure) -------------------------------------------------------------------

def test_parser_reads_vendors_and_devices():
    ids = parse_pci_ids(PCI_IDS)
    assert ids.vendor_name("10de") == "NVIDIA Corporation"
    assert ids.device_name("10de", "2204") == "GA102 [GeForce RTX 3090]"
    assert ids.device_name("8086", "a330") == "Cannon Lake PCH PCI Express Root Port #9"
    assert ids.device_name("0010", "8139") == "AT-2500TX V3 Ethernet"  # after a comment line inside a vendor
    assert ids.vendor_name("10DE") == "NVIDIA Corporation"  # sysfs ids are lower case; callers may not be
    assert len(ids.vendors) == 6
    assert len(ids.devices) == 21
    assert ids.notes == ()


def test_parser_ignores_subsystem_lines():
    ids = parse_pci_ids(PCI_IDS)
    assert ("147d", "10de") not in ids.devices and ("10de", "147d") not in ids.devices
    assert "NVIDIA Geforce RTX 3090 Founders Edition" not in ids.devices.values()
    assert ids.device_name("10de", "2205") == "GA102 [GeForce RTX 3080 Ti 20GB]"  # the device after it is kept


def test_parser_ignores_the_class_section():
    """A class section's tab-indented lines must not be filed under the last vendor (8086)."""
    text = PCI_IDS + "C 0c  Serial bus controller\n\t2204  looks like a device line\n\t\t30  XHCI\n"
    ids = parse_pci_ids(text)
    assert ids.device_name("8086", "2204") is None
    assert not any("Multimedia" in n or "Audio device" == n for n in ids.devices.values())
    assert "C 04" not in ids.vendors and "c 04" not in ids.vendors
    assert ids.notes == ()


def test_parser_vendor_after_a_class_section_is_read_again():
    ids = parse_pci_ids("C 03  Display controller\n\t00  VGA compatible controller\n"
                        "abcd  Late Vendor\n\t0001  Late Device\n")
    assert ids.device_name("abcd", "0001") == "Late Device"


def test_parser_tolerates_junk():
    text = ("\tffff  device before any vendor\n"
            "garbage line without an id\n"
            "\x00\x01\x02 binary\n"
            "10de\n"                               # a vendor id with no name
            "\t2204\n"                             # a device with no name
            "10de  NVIDIA Corporation\r\n"         # CRLF
            "\tzzzz  not hex\n"
            "\t2204  GA102 [GeForce RTX 3090]   \r\n"
            "\t2204  a duplicate: the first entry stays\n"
            "10de  NVIDIA again\n"
            "\t1aef\tGA102 High Definition Audio Controller\n")  # a tab instead of two spaces
    ids = parse_pci_ids(text)
    assert ids.vendor_name("10de") == "NVIDIA Corporation"
    assert ids.device_name("10de", "2204") == "GA102 [GeForce RTX 3090]"
    assert ids.device_name("10de", "1aef") == "GA102 High Definition Audio Controller"
    assert ("ffff" not in ids.vendors) and not any(k[1] == "ffff" for k in ids.devices)
    assert len(ids.notes) == 1 and "unparseable" in ids.notes[0] and "line 2" in ids.notes[0]


def test_parser_strips_control_characters_from_names():
    ids = parse_pci_ids("10de  Evil\x1b[2J Corp\x07\n\t2204  GPU\x1b]0;title\x07\n")
    assert "\x1b" not in ids.vendor_name("10de") and "\x07" not in ids.vendor_name("10de")
    assert "\x1b" not in ids.device_name("10de", "2204")


@pytest.mark.parametrize("text", ["", "\n\n", "# only comments\n", "\x00" * 64])
def test_parser_on_empty_or_binary_text(text):
    ids = parse_pci_ids(text)
    assert not ids.found and ids.vendors == {} and ids.devices == {}


def test_describe_like_lspci():
    ids = parse_pci_ids(PCI_IDS)
    assert ids.describe("10de", "2204") == "NVIDIA Corporation GA102 [GeForce RTX 3090]"
    assert ids.describe("1b36", "000e") == "Red Hat, Inc. Device 000e"
    assert ids.describe("1234", "1111") is None


def test_gunzip_caps_and_garbage():
    data = gzip.compress(b"x" * 5000)
    assert gunzip(data, 10_000) == (b"x" * 5000, None)
    out, why = gunzip(data, 1000)
    assert out is None and "too large" in why
    out, why = gunzip(b"not gzip at all", 1000)
    assert out is None and "garbled" in why
    out, why = gunzip(data[:-12], 10_000)
    assert out is None and "truncated" in why


def _installed_pci_ids():
    for path in ("/usr/share/misc/pci.ids", "/usr/share/hwdata/pci.ids", "/usr/share/pci.ids"):
        if os.path.isfile(path):
            return path
    pytest.skip("no pci.ids installed on this machine")


def test_parser_on_this_machines_pci_ids():
    """Every vendor and device line of a real pci.ids, counted independently of the parser."""
    path = _installed_pci_ids()
    text = Path(path).read_text(encoding="utf-8", errors="replace")
    head = text.split("\nC ", 1)[0]
    vendors = len(re.findall(r"^[0-9a-f]{4}  \S", head, re.M))
    devices = len(re.findall(r"^\t[0-9a-f]{4}  \S", head, re.M))
    ids = parse_pci_ids(text)
    assert (len(ids.vendors), len(ids.devices)) == (vendors, devices)
    assert ids.vendor_name("8086") == "Intel Corporation"
    assert ids.notes == ()


# -- the Facts layer finds and reads it through the host -------------------------------------------

def test_facts_pci_ids_from_the_tree(ws_named):
    ids = Facts(TreeHost(str(ws_named.root))).pci_ids
    assert ids.found and ids.source == "/usr/share/misc/pci.ids"
    assert ids.device_name("10de", "2204") == "GA102 [GeForce RTX 3090]"


@pytest.mark.parametrize("path", ["/usr/share/hwdata/pci.ids", "/usr/share/pci.ids", "/usr/share/misc/pci.ids.gz",
                                  "/usr/share/hwdata/pci.ids.gz"])
def test_facts_pci_ids_in_every_usual_place(ws, path):
    ws.write(path, gzip.compress(PCI_IDS.encode()) if path.endswith(".gz") else PCI_IDS)
    ids = Facts(TreeHost(str(ws.root))).pci_ids
    assert ids.source == path
    assert ids.vendor_name("144d") == "Samsung Electronics Co Ltd"


def test_facts_pci_ids_link_stays_inside_the_root(ws):
    """hwdata installs /usr/share/misc/pci.ids -> ../hwdata/pci.ids on some systems: followed in the tree."""
    ws.write("/usr/share/hwdata/pci.ids", PCI_IDS)
    ws.symlink("/usr/share/misc/pci.ids", "/usr/share/hwdata/pci.ids")  # absolute: taken relative to the root
    ids = Facts(TreeHost(str(ws.root))).pci_ids
    assert ids.source == "/usr/share/misc/pci.ids" and ids.vendor_name("10de") == "NVIDIA Corporation"


def test_facts_pci_ids_garbled_gz_falls_through_to_the_next(ws):
    ws.write("/usr/share/misc/pci.ids.gz", b"\x1f\x8b not really gzip")
    ws.write("/usr/share/hwdata/pci.ids", PCI_IDS)
    ids = Facts(TreeHost(str(ws.root))).pci_ids
    assert ids.source == "/usr/share/hwdata/pci.ids"
    assert any("/usr/share/misc/pci.ids.gz" in n and "garbled" in n for n in ids.notes)


def test_facts_pci_ids_absent(ws):
    ids = Facts(TreeHost(str(ws.root))).pci_ids
    assert not ids.found and ids.source is None
    assert ids.vendor_name("10de") is None and ids.describe("10de", "2204") is None
    assert "no usable pci.ids" in ids.notes[0]


def test_facts_pci_ids_unreadable_is_noted(ws):
    ws.mkdir("/usr/share/misc/pci.ids")  # a directory where the file should be
    ids = Facts(TreeHost(str(ws.root))).pci_ids
    assert not ids.found
    assert any("/usr/share/misc/pci.ids" in n and "directory" in n for n in ids.notes)


# -- the table ------------------------------------------------------------------------------------

def _group_blocks(stdout: str) -> dict:
    """Group number -> (header line, lines below it) of the table."""
    blocks, current = {}, None
    for line in stdout.splitlines():
        m = re.match(r"^Group (\d+)", line)
        if m:
            current = int(m.group(1))
            blocks[current] = (line, [])
        elif current is not None and line.startswith("  "):
            blocks[current][1].append(line)
        elif not line.strip():
            current = None
    return blocks


def test_table_lists_every_group_and_device_with_names(ws_named):
    proc = run_cli("groups", "--root", ws_named.root)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    blocks = _group_blocks(proc.stdout)
    assert sorted(blocks) == sorted(WORKSTATION_GROUPS)
    assert list(blocks) == sorted(blocks), "groups must come in numeric order (0, 1, 2, ... 10, 11)"
    for number, addresses in WORKSTATION_GROUPS.items():
        listed = [line.split()[0] for line in blocks[number][1] if re.match(r"^  [0-9a-f]{4}:", line)]
        assert listed == addresses, (number, listed)
    assert "Names from /usr/share/misc/pci.ids" in proc.stdout
    gpu = blocks[1][1]
    assert re.match(r"^  0000:01:00\.0  10de:2204  VGA compatible controller\s+nvidia$", gpu[2]), gpu
    assert gpu[3].strip() == "NVIDIA Corporation GA102 [GeForce RTX 3090]"
    assert "NVIDIA Corporation GA102 High Definition Audio Controller" in proc.stdout
    assert "Samsung Electronics Co Ltd NVMe SSD Controller SM981/PM981/PM983" in proc.stdout
    assert "Red Hat, Inc. Device 000e" in proc.stdout  # the vendor is known, the device is not
    assert "12 IOMMU groups, 19 devices" in proc.stdout


def test_table_verdicts(ws_named):
    blocks = _group_blocks(run_cli("groups", "--root", ws_named.root).stdout)
    assert blocks[1][0] == f"Group 1 (DMA): {ONE_SLOT_IN_USE}"
    assert blocks[6][0] == "Group 6 (DMA): bridges only"
    assert blocks[7][0] == "Group 7 (DMA): isolated; in use by host drivers"
    assert blocks[11][0] == f"Group 11 (DMA): {SHARED_IN_USE}"


def test_table_verdict_follows_the_binding(ws):
    ws.bind("0000:01:00.0", "vfio-pci")
    ws.bind("0000:01:00.1", "vfio-pci")
    proc = run_cli("groups", "--root", ws.root)
    blocks = _group_blocks(proc.stdout)
    assert blocks[1][0] == f"Group 1 (DMA): {ONE_SLOT_READY}"
    assert re.search(r"^  0000:01:00\.1  10de:1aef  Audio device\s+vfio-pci$", proc.stdout, re.M)


def test_table_without_pci_ids_is_numeric(ws):
    proc = run_cli("groups", "--root", ws.root)
    assert proc.returncode == 0, proc.stderr
    assert "No pci.ids on this host: numeric ids only" in proc.stdout
    assert "NVIDIA" not in proc.stdout and "Intel" not in proc.stdout
    assert re.search(r"^  0000:01:00\.0  10de:2204  VGA compatible controller\s+nvidia$", proc.stdout, re.M)
    assert re.search(r"^  0000:03:00\.0  144d:a808  Non-Volatile memory controller\s+nvme$", proc.stdout, re.M)
    assert re.search(r"^  0000:00:1f\.0  8086:a305  ISA bridge\s+-$", proc.stdout, re.M)
    assert len(_group_blocks(proc.stdout)) == 12


@pytest.mark.parametrize("named", [True, False])
def test_table_fits_100_columns(ws, named):
    if named:
        ws.write("/usr/share/misc/pci.ids", PCI_IDS)
    lines = run_cli("groups", "--root", ws.root).stdout.splitlines()
    assert lines and max(len(line) for line in lines) <= 100, max(lines, key=len)


def test_devices_in_no_group_are_listed_apart(ws_named):
    """An AMD IOMMU's own PCI function (00:00.2, class 0806) sits in no group, as on real AMD hosts."""
    ws_named.pci_device("0000:00:00.2", "1022", "1481", "080600")
    proc = run_cli("groups", "--root", ws_named.root)
    assert proc.returncode == 0
    tail = proc.stdout.split("In no IOMMU group (cannot be passed through):", 1)[1]
    assert re.search(r"^  0000:00:00\.2  1022:1481  IOMMU\s+-$", tail, re.M)
    _, doc = groups_json(ws_named.root)
    assert [d["address"] for d in doc["ungrouped"]] == ["0000:00:00.2"]
    assert "0000:00:00.2" not in by_address(doc)


def test_unknown_subclass_gets_its_base_class_name_like_lspci(ws):
    """virtio-fs (1af4:1009) has class 000200, which lspci prints as 'Unclassified device [0002]'
    (seen in the QEMU guest); a class with an unknown base keeps its number."""
    ws.pci_device("0000:00:10.0", "1af4", "1009", "000200", driver="virtio-pci", group="12")
    ws.pci_device("0000:00:11.0", "1af4", "1009", "550000", group="13")
    proc, doc = groups_json(ws.root)
    devices = by_address(doc)
    assert devices["0000:00:10.0"]["class_name"] == "Unclassified device"
    assert devices["0000:00:11.0"]["class_name"] == "class 0x5500"
    table = run_cli("groups", "--root", ws.root).stdout
    assert re.search(r"^  0000:00:10\.0  1af4:1009  Unclassified device\s+virtio-pci$", table, re.M)


def test_class_name_keeps_its_old_answer_without_the_fallback():
    from scanner.facts.pci import class_name

    assert class_name("000200") == "class 0x0002"
    assert class_name("000200", base_fallback=True) == "Unclassified device"
    assert class_name("0c0330", base_fallback=True) == "USB controller"


def test_hostile_names_cannot_drive_the_terminal(ws):
    ws.write("/usr/share/misc/pci.ids", "10de  NVIDIA\x1b[2J\x1b]0;pwned\x07 Corporation\n\t2204  GA102\x1b[31m\n")
    proc = run_cli("groups", "--root", ws.root)
    assert proc.returncode == 0
    assert "\x1b" not in proc.stdout and "\x07" not in proc.stdout
    assert "NVIDIA" in proc.stdout


def test_non_utf8_pci_ids_still_gives_names(ws):
    ws.write("/usr/share/misc/pci.ids", PCI_IDS.encode() + b"abcd  Caf\xe9 Latin-1 Vendor\n\t0001  Gr\xfc\xdfe\n")
    proc = run_cli("groups", "--root", ws.root)
    assert proc.returncode == 0, proc.stderr
    assert "NVIDIA Corporation GA102 [GeForce RTX 3090]" in proc.stdout


# -- JSON -----------------------------------------------------------------------------------------

def test_json_matches_the_schema_and_the_tree(ws_named):
    proc, doc = groups_json(ws_named.root)
    assert proc.returncode == 0, proc.stderr
    assert_valid(doc)
    assert doc["schema_version"] == "1.0"
    assert doc["host"]["source"] == "root" and doc["host"]["hostname"] == "testhost"
    assert doc["pci_ids"] == "/usr/share/misc/pci.ids"
    assert [g["group"] for g in doc["groups"]] == sorted(WORKSTATION_GROUPS)
    assert {g["group"]: [d["address"] for d in g["devices"]] for g in doc["groups"]} == WORKSTATION_GROUPS
    assert all(g["type"] == "DMA" for g in doc["groups"])
    assert doc["ungrouped"] == []
    group1 = doc["groups"][1]
    assert group1["verdict"] == ONE_SLOT_IN_USE
    assert group1["devices"] == [
        {"address": "0000:00:01.0", "vendor": "8086", "device": "1901", "class": "060400", "class_name": "PCI bridge",
         "vendor_name": "Intel Corporation", "device_name": "6th-10th Gen Core Processor PCIe Controller (x16)",
         "driver": "pcieport", "bridge": True},
        {"address": "0000:01:00.0", "vendor": "10de", "device": "2204", "class": "030000",
         "class_name": "VGA compatible controller", "vendor_name": "NVIDIA Corporation",
         "device_name": "GA102 [GeForce RTX 3090]", "driver": "nvidia", "bridge": False},
        {"address": "0000:01:00.1", "vendor": "10de", "device": "1aef", "class": "040300", "class_name": "Audio device",
         "vendor_name": "NVIDIA Corporation", "device_name": "GA102 High Definition Audio Controller",
         "driver": "snd_hda_intel", "bridge": False},
    ]
    devices = by_address(doc)
    assert devices["0000:05:00.0"]["vendor_name"] == "Red Hat, Inc." and devices["0000:05:00.0"]["device_name"] is None
    assert devices["0000:05:00.0"]["bridge"] is True and devices["0000:05:00.0"]["driver"] is None
    assert devices["0000:00:1f.0"]["bridge"] is False  # an ISA bridge is an endpoint, not a PCI bridge
    assert doc["groups"][11]["verdict"] == SHARED_IN_USE
    assert doc["groups"][6]["verdict"] == "bridges only"


def test_json_without_pci_ids(ws):
    proc, doc = groups_json(ws.root)
    assert proc.returncode == 0
    assert_valid(doc)
    assert doc["pci_ids"] is None
    devices = by_address(doc)
    assert len(devices) == 19
    assert all(d["vendor_name"] is None and d["device_name"] is None for d in devices.values())
    assert devices["0000:01:00.0"]["class_name"] == "VGA compatible controller"


def test_schema_rejects_what_the_contract_forbids(ws_named):
    _, doc = groups_json(ws_named.root)
    for broken in (
        dict(doc, groups=[dict(doc["groups"][0], group="0")]),  # the group number is an integer
        dict(doc, groups=[dict(doc["groups"][0], devices=[dict(doc["groups"][0]["devices"][0], vendor="10DE")])]),
        {k: v for k, v in doc.items() if k != "pci_ids"},
        dict(doc, extra=1),
    ):
        assert list(jsonschema.Draft202012Validator(load_groups_schema()).iter_errors(broken))


# -- when there is nothing to list, or it cannot be read ---------------------------------------------

def _assert_one_line(proc, code, *needles):
    assert proc.returncode == code, (proc.returncode, proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr
    lines = stderr_lines(proc)
    assert len(lines) == 1, proc.stderr
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]


def test_no_groups_directory_exit_1_one_line(ws):
    shutil.rmtree(ws.path("/sys/kernel/iommu_groups"))
    proc = run_cli("groups", "--root", ws.root)
    line = _assert_one_line(proc, 1, "no IOMMU groups", "IOMMU is not active", "vfio-scan explain VFIO-005")
    assert "noiommu" not in line
    assert proc.stdout == ""


def test_empty_groups_directory_exit_1(ws):
    shutil.rmtree(ws.path("/sys/kernel/iommu_groups"))
    ws.mkdir("/sys/kernel/iommu_groups")
    _assert_one_line(run_cli("groups", "--root", ws.root), 1, "no IOMMU groups", "IOMMU is not active", "VFIO-005")


def test_no_groups_json_is_still_a_valid_document(ws):
    shutil.rmtree(ws.path("/sys/kernel/iommu_groups"))
    proc, doc = groups_json(ws.root)
    _assert_one_line(proc, 1, "IOMMU is not active")
    assert_valid(doc)
    assert doc["groups"] == []
    assert len(doc["ungrouped"]) == 19  # every device is outside any group


def test_unreadable_groups_directory_exit_3_with_the_reason(ws):
    shutil.rmtree(ws.path("/sys/kernel/iommu_groups"))
    ws.write("/sys/kernel/iommu_groups", "not a directory\n")
    proc = run_cli("groups", "--root", ws.root)
    _assert_one_line(proc, 3, "/sys/kernel/iommu_groups", "not a directory")
    assert proc.stdout == ""


def test_permission_denied_groups_directory_exit_3(ws):
    if os.geteuid() == 0:
        pytest.skip("root reads a mode-000 directory anyway")
    path = ws.path("/sys/kernel/iommu_groups")
    path.chmod(0)
    try:
        _assert_one_line(run_cli("groups", "--root", ws.root), 3, "permission denied")
    finally:
        path.chmod(0o755)


def test_one_unreadable_group_is_shown_and_exit_3(ws):
    shutil.rmtree(ws.path("/sys/kernel/iommu_groups/7/devices"))
    ws.write("/sys/kernel/iommu_groups/7/devices", "garbage")
    proc = run_cli("groups", "--root", ws.root)
    _assert_one_line(proc, 3, "/sys/kernel/iommu_groups/7/devices")
    blocks = _group_blocks(proc.stdout)
    assert blocks[7][0].startswith("Group 7 (DMA): devices unreadable")
    assert len(blocks) == 12


def test_noiommu_groups_only_exit_1(tree):
    """vfio's no-IOMMU mode makes fake groups named vfio-noiommu: listed, but the IOMMU is not active."""
    tree.release()
    tree.pci_device("0000:00:02.0", "8086", "10d3", "020000", driver="vfio-pci", group="0")
    tree.write("/sys/kernel/iommu_groups/0/name", "vfio-noiommu\n")
    proc = run_cli("groups", "--root", tree.root)
    _assert_one_line(proc, 1, "vfio-noiommu", "VFIO-005")
    assert "Group 0 (DMA): vfio-noiommu fake group" in proc.stdout


# -- options, help, and this machine ------------------------------------------------------------------

def test_help():
    proc = run_cli("groups", "--help")
    assert proc.returncode == 0 and proc.stdout.startswith("usage: vfio-scan groups")
    assert "--root" in proc.stdout and "--format" in proc.stdout
    top = run_cli("--help").stdout
    assert "groups" in top and "qemu-args" in top


def test_missing_root_is_a_usage_error(tmp_path):
    _assert_one_line(run_cli("groups", "--root", tmp_path / "nope"), 2, "--root", "no such directory")


def test_bad_format_is_a_usage_error(ws):
    proc = run_cli("groups", "--root", ws.root, "--format", "xml")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr


def test_groups_never_writes_into_the_tree(ws_named):
    before = {p: (p.stat().st_mtime_ns, p.stat().st_size) for p in Path(ws_named.root).rglob("*") if not p.is_symlink()}
    run_cli("groups", "--root", ws_named.root)
    run_cli("groups", "--root", ws_named.root, "--format", "json")
    after = {p: (p.stat().st_mtime_ns, p.stat().st_size) for p in Path(ws_named.root).rglob("*") if not p.is_symlink()}
    assert before == after


def test_this_machine_without_iommu_exits_1_with_one_line():
    """The development VM has no IOMMU: one clear line, exit 1, no traceback (as a user sees it)."""
    groups = Path("/sys/kernel/iommu_groups")
    if groups.is_dir() and any(groups.iterdir()):
        pytest.skip("this machine has IOMMU groups")
    proc = run_cli("groups")
    _assert_one_line(proc, 1, "no IOMMU groups", "IOMMU is not active", "vfio-scan explain VFIO-005")
    assert proc.stdout == ""
