"""VFIO-017 and the initramfs: the host driver in the image takes the device before vfio-pci.

Images are built with GNU cpio and the real compressors, in the layout initramfs-tools, dracut
and mkinitcpio write (early microcode archive, then the compressed main archive).
"""

import os

import pytest

from hosttree import RELEASE, workstation
from initramfs_images import COMPRESSORS, build_image, missing_tools, module_path
from scanner.engine.runner import Scan
from scanner.host.initramfs import Garbled, read_initramfs
from scanner.host.tree import TreeHost
from scanner.engine.plugins import load_plugins
from scanner.engine.scanning import scan_host
from scanner.facts.targets import parse_all

pytestmark = pytest.mark.skipif(bool(missing_tools()), reason=f"needs {', '.join(missing_tools())} (.ci/run installs them)")

_REGISTRY = load_plugins(autoload=False)
GPU, AUDIO = "0000:01:00.0", "0000:01:00.1"
IMAGE = f"/boot/initrd.img-{RELEASE}"
NOUVEAU = module_path(RELEASE, "drivers/gpu/drm/nouveau/nouveau.ko.xz")
VFIO_PCI = module_path(RELEASE, "drivers/vfio/pci/vfio-pci.ko.xz")
#: lines as in Debian's modules.alias for 6.1
ALIASES = ("alias pci:v000010DEd*sv*sd*bc03sc*i* nouveau\n"
           "alias pci:v000012D2d*sv*sd*bc03sc*i* nouveau\n"
           "alias pci:v00008086d0000100Esv*sd*bc*sc*i* e1000\n"
           "alias vfio_pci:v*d*sv*sd*bc*sc*i* vfio_pci\n")
VFIO_CONF = "options vfio-pci ids=10de:2204,10de:1aef\nsoftdep nouveau pre: vfio-pci\n"


def scan(tree):
    rules = [r for r in _REGISTRY.sorted_rules() if r.id == "VFIO-017"]
    report = scan_host(TreeHost(str(tree.root)), rules, Scan(), selectors=parse_all(devices=[GPU, AUDIO])[0])
    return {f.subject: f for f in report.findings}[GPU]


@pytest.fixture
def ws(tmp_path):
    """The workstation with its GPU on vfio-pci through ids= and a softdep: VFIO-017 passes on /etc alone."""
    tree = workstation(tmp_path / "ws")
    tree.bind(GPU, "vfio-pci")
    tree.bind(AUDIO, "vfio-pci")
    tree.write("/etc/modprobe.d/vfio.conf", VFIO_CONF)
    tree.write(f"/lib/modules/{RELEASE}/modules.alias", ALIASES)
    tree.write("/usr/sbin/update-initramfs", "#!/bin/sh\n", mode=0o755)
    return tree


def put_image(tree, tmp_path, files, compression="zstd"):
    data = build_image(tmp_path / "img", files, compression)
    tree.write(IMAGE, data)
    return data


def test_without_an_image_the_etc_files_decide(ws):
    assert scan(ws).status == "pass"


@pytest.mark.parametrize("compression", sorted(COMPRESSORS))
def test_the_host_driver_in_the_image_without_vfio_pci_is_lost_at_next_boot(ws, tmp_path, compression):
    put_image(ws, tmp_path, {NOUVEAU: os.urandom(20000), "etc/modprobe.d/vfio.conf": VFIO_CONF}, compression)
    f = scan(ws)
    assert f.status == "fail"
    assert f.message.startswith(f"works now, lost at next boot: the initramfs {IMAGE} loads nouveau, which binds "
                                f"{GPU} before the root filesystem is mounted, and the image holds no vfio-pci")
    evidence = {e.source: e.value for e in f.evidence}
    assert evidence[IMAGE].startswith(f"cpio + {compression}, ") and "nouveau for 10de:2204" in evidence[IMAGE]
    (step,) = f.remediation
    assert step.action["kind"] == "initramfs-modules" and step.action["file"] == "/etc/initramfs-tools/modules"
    assert step.action["lines"] == ["vfio", "vfio_iommu_type1", "vfio_pci"]
    assert step.commands[-1] == "update-initramfs -u -k all" and step.requires_reboot


def test_an_image_built_before_the_ids_line_needs_a_rebuild(ws, tmp_path):
    put_image(ws, tmp_path, {NOUVEAU: b"x", VFIO_PCI: b"x", "conf/modules": "vfio_pci\n",
                             "etc/modprobe.d/alsa-base.conf": "options snd-hda-intel model=auto\n"})
    f = scan(ws)
    assert f.status == "fail" and "holds vfio_pci but not the ids=10de:2204 line" in f.message
    (step,) = f.remediation
    assert step.action == {"kind": "initramfs-rebuild", "tool": "update-initramfs"}


def test_an_image_that_carries_vfio_pci_the_ids_and_the_softdep_keeps_it(ws, tmp_path):
    put_image(ws, tmp_path, {NOUVEAU: b"x", VFIO_PCI: b"x", "etc/modprobe.d/vfio.conf": VFIO_CONF})
    f = scan(ws)
    assert f.status == "pass"
    assert any(e.source == IMAGE and "vfio_pci in it" in e.value for e in f.evidence)


def test_vfio_pci_and_ids_without_an_early_load_is_a_warning(ws, tmp_path):
    put_image(ws, tmp_path, {NOUVEAU: b"x", VFIO_PCI: b"x", "etc/modprobe.d/vfio.conf": "options vfio-pci ids=10de:2204\n"})
    f = scan(ws)
    assert f.status == "warn" and "nothing in it that loads vfio_pci first" in f.message


def test_an_image_without_the_host_driver_is_no_race(ws, tmp_path):
    put_image(ws, tmp_path, {module_path(RELEASE, "drivers/nvme/host/nvme.ko.xz"): b"x"})
    f = scan(ws)
    assert f.status == "pass"
    assert any(e.source == IMAGE and e.value.endswith("no driver for 10de:2204; vfio_pci not in it") for e in f.evidence)


def test_a_driverctl_override_after_an_early_host_driver_is_a_warning(ws, tmp_path):
    ws.remove("/etc/modprobe.d/vfio.conf")
    ws.write(f"/etc/driverctl.d/pci-{GPU}", "vfio-pci\n")
    put_image(ws, tmp_path, {NOUVEAU: b"x"})
    f = scan(ws)
    assert f.status == "warn" and "applies only after that, in the real root" in f.message


@pytest.mark.parametrize("damage", ["truncated", "junk", "fifo"])
def test_an_unreadable_image_is_named_and_the_pass_stands(ws, tmp_path, damage):
    data = build_image(tmp_path / "img", {NOUVEAU: os.urandom(50000)}, "zstd")
    if damage == "truncated":
        ws.write(IMAGE, data[:len(data) - 20000])
    elif damage == "junk":
        ws.write(IMAGE, b"\x7fELF" + data)
    else:
        (ws.root / "boot").mkdir(exist_ok=True)
        os.mkfifo(ws.root / IMAGE.lstrip("/"))
    f = scan(ws)
    assert f.status == "pass"
    (seen,) = [e.value for e in f.evidence if e.source == IMAGE]
    assert seen.startswith("<") and "whether its drivers load before vfio-pci is not known" in seen
    assert {"truncated": "garbled", "junk": "garbled: neither a cpio archive", "fifo": "not a regular file"}[damage] in seen


# -- the reader itself -------------------------------------------------------------------------

def chunks(data, size=4096):
    return [data[i:i + size] for i in range(0, len(data), size)]


def test_the_reader_lists_modules_and_module_configuration_of_every_segment(tmp_path):
    data = build_image(tmp_path / "i", {NOUVEAU: b"x", VFIO_PCI: b"x", "conf/modules": "vfio_pci\n",
                                        "etc/modprobe.d/vfio.conf": VFIO_CONF, "etc/motd": "hello\n"}, "xz")
    got = read_initramfs(chunks(data))
    assert got.formats == ("cpio", "xz")
    assert got.modules == ("nouveau", "vfio_pci")
    assert dict(got.files) == {"conf/modules": "vfio_pci\n", "etc/modprobe.d/vfio.conf": VFIO_CONF}


def test_an_uncompressed_image_without_early_archive(tmp_path):
    got = read_initramfs(chunks(build_image(tmp_path / "i", {VFIO_PCI: b"x"}, None, early=False)))
    assert got.formats == ("cpio",) and got.modules == ("vfio_pci",)


def test_a_decompression_bomb_stops_at_the_cap(tmp_path, monkeypatch):
    import scanner.host.initramfs as initramfs

    monkeypatch.setattr(initramfs, "MAX_UNPACKED", 1 << 20)
    data = build_image(tmp_path / "i", {"big": bytes(8 << 20)}, "zstd")
    assert len(data) < 100 << 10
    with pytest.raises(Garbled, match="unpacks to over 1 MiB"):
        read_initramfs(chunks(data))


def test_too_many_entries_stop_at_the_cap(tmp_path, monkeypatch):
    import scanner.host.initramfs as initramfs

    monkeypatch.setattr(initramfs, "MAX_ENTRIES", 50)
    data = build_image(tmp_path / "i", {f"f{i}": b"" for i in range(100)}, "gzip")
    with pytest.raises(Garbled, match="over 50 entries"):
        read_initramfs(chunks(data))


@pytest.mark.parametrize("name_size", [b"00000000", b"00100000", b"zzzzzzzz"])
def test_a_forged_header_is_garbled_not_a_crash(name_size):
    header = b"070701" + b"00000000" * 11 + name_size + b"00000000"
    with pytest.raises(Garbled):
        read_initramfs([header + b"x" * 200])


def test_the_script_lists_vfio_pci_first_and_rebuilds_once(ws, tmp_path):
    from scriptrun import Shims, run_script, script_for

    ws.write("/etc/initramfs-tools/modules", "# List of modules that you want to include in your initramfs.\nbtrfs\n")
    put_image(ws, tmp_path, {NOUVEAU: b"x"})
    script = script_for(ws.root, devices=[GPU, AUDIO])
    proc = run_script(script, ws.root, Shims(tmp_path / "shims"))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert ws.path("/etc/initramfs-tools/modules").read_text() == (
        "# List of modules that you want to include in your initramfs.\nbtrfs\nvfio\nvfio_iommu_type1\nvfio_pci\n")
    assert proc.stdout.count("not run (tree mode): update-initramfs -u -k all") == 1
    again = run_script(script_for(ws.root, devices=[GPU, AUDIO]), ws.root, Shims(tmp_path / "shims2"))
    assert ws.path("/etc/initramfs-tools/modules").read_text().count("vfio_pci") == 1, again.stdout


def test_a_snapshot_knows_the_image_exists_but_not_what_it_holds(ws, tmp_path):
    from scanner import collector
    from scanner.host.snapshot import SnapshotHost, parse_snapshot

    put_image(ws, tmp_path, {NOUVEAU: b"x"})
    snapshot = parse_snapshot(collector.dumps(collector.collect(str(ws.root))), "snapshot")
    rules = [r for r in _REGISTRY.sorted_rules() if r.id == "VFIO-017"]
    report = scan_host(SnapshotHost(snapshot), rules, Scan(), selectors=parse_all(devices=[GPU, AUDIO])[0])
    f = {x.subject: x for x in report.findings}[GPU]
    assert f.status == "pass"  # as on /etc alone: the image cannot be judged from a snapshot
    (seen,) = [e.value for e in f.evidence if e.source == IMAGE]
    assert seen.startswith("<not in the snapshot")
