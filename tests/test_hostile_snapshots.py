"""Snapshots made by an attacker (a compromised fleet host, a crafted file) cannot take a scan down.

Each attack is a snapshot that is valid in every way but one: nested 200,000 levels deep, a lone
surrogate or a control character where the host's text goes, a hostname of megabytes, more
entries than any collector writes, a schema fault in a value of megabytes, or a collector that
stopped at its entry limit -- or a file of millions of tiny values, refused before they are
parsed. Through the real CLI, each gives one clear line naming the file and the documented exit
code (2 alone, 3 among others, whose reports are kept), and every output format is still
written: JSON with the host's text exact, JUnit as valid XML with nothing dropped without trace.
The collector's side: a pci.ids.gz bomb is never inflated past the cap, and compaction stays
linear on a directory of 125,000 names.
"""

from __future__ import annotations

import gzip
import json
import sys
import xml.etree.ElementTree as ET

import pytest

from clihelpers import REPO, run_cli, stderr_lines
from hosttree import ready_host, workstation
from scanner import collector
from scanner.facts import Facts
from scanner.host.snapshot import (MAX_ENTRIES, MAX_IDENTITY, MAX_LISTED_NAMES, SnapshotError, SnapshotHost,
                                   parse_snapshot)
from scanner.host.snapshot_json import MAX_VALUES, values_at_most
from scanner.host.tree import TreeHost

DEEP = 200_000


@pytest.fixture(scope="module")
def ready(tmp_path_factory):
    """The snapshot of a ready host, as 'vfio-scan collect' writes it: (path, parsed document)."""
    base = tmp_path_factory.mktemp("ready")
    ready_host(base / "tree")
    snap = base / "ready.json"
    proc = run_cli("collect", "--root", base / "tree", "-o", snap)
    assert proc.returncode == 0, proc.stderr
    return snap, json.loads(snap.read_text())


def write(path, document) -> str:
    path.write_text(json.dumps(document), encoding="ascii")
    return str(path)


def deeply_nested(ready_doc, where: str) -> str:
    """The ready snapshot's text with a value ``DEEP`` arrays deep at ``where``."""
    text = json.dumps(ready_doc)
    deep = "[" * DEEP + "]" * DEEP
    if where == "entries":
        return text.replace('"entries": {', '"entries": {"/deep": ' + deep + ", ", 1)
    return text.replace('"collector": {', '"collector": {"extra": ' + deep + ", ", 1)


def assert_one_line_error(proc, path, words):
    assert proc.returncode == 2, proc.stderr
    lines = stderr_lines(proc)
    assert len(lines) == 1 and f"--snapshot {path}: " in lines[0] and words in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr and proc.stdout == ""


# -- depth ---------------------------------------------------------------------------------

@pytest.mark.parametrize("where", ["entries", "collector"])
def test_a_snapshot_nested_200000_deep_alone_is_one_line_exit_2(ready, tmp_path, where):
    bad = tmp_path / "deep.json"
    bad.write_text(deeply_nested(ready[1], where))
    assert_one_line_error(run_cli("scan", "--snapshot", bad), bad, "too deeply nested")


def test_nesting_the_decoder_accepts_is_still_refused_before_anything_recurses(ready):
    """500 levels parse, but no snapshot has them: refused before the schema or a message quotes them."""
    text = json.dumps(ready[1]).replace('"collector": {', '"collector": {"x": ' + "[" * 500 + "]" * 500 + ", ", 1)
    with pytest.raises(SnapshotError, match="too deeply nested"):
        parse_snapshot(text, "s.json")
    shallow = json.dumps(ready[1]).replace('"collector": {', '"collector": {"x": [[[1]]], ', 1)
    assert parse_snapshot(shallow, "s.json")["collector"]["x"] == [[[1]]]


def test_a_deep_snapshot_among_many_is_that_hosts_error_and_the_others_are_scanned(ready, tmp_path):
    snap, doc = ready
    bad = tmp_path / "gpu09.json"
    bad.write_text(deeply_nested(doc, "entries"))
    proc = run_cli("scan", "--snapshot", snap, bad, "--format", "json")
    assert proc.returncode == 3 and "Traceback" not in proc.stderr
    hosts = json.loads(proc.stdout)["hosts"]
    assert [h["host"]["label"] for h in hosts] == ["ready", "gpu09"]
    alone = json.loads(run_cli("scan", "--snapshot", snap, "--format", "json").stdout)
    assert hosts[0]["findings"] == alone["findings"] and hosts[0]["summary"] == alone["summary"]
    assert hosts[1]["findings"] == [] and "too deeply nested" in hosts[1]["notes"][0] and str(bad) in hosts[1]["notes"][0]


# -- sizes and counts --------------------------------------------------------------------------

def test_more_entries_than_a_collector_writes_is_refused_by_count(ready):
    assert MAX_ENTRIES == collector.MAX_ENTRIES
    doc = dict(ready[1], entries={f"/e{n}": {"type": "dir"} for n in range(MAX_ENTRIES + 1)})
    with pytest.raises(SnapshotError, match=f"more than a collector records \\({MAX_ENTRIES}\\)"):
        parse_snapshot(json.dumps(doc), "s.json")


def test_more_names_listed_than_a_collector_writes_is_refused_by_count(ready, tmp_path):
    """Four million IOMMU groups in one listing, within the value limit: the scan made an object for each
    group, 2.3 GB and a minute for one host."""
    doc = json.loads(json.dumps(ready[1]))
    doc["entries"]["/sys/kernel/iommu_groups"] = {"type": "dir", "names": [str(n) for n in range(MAX_LISTED_NAMES + 1)]}
    bad = tmp_path / "groups.json"
    bad.write_text(json.dumps(doc))
    assert_one_line_error(run_cli("scan", "--snapshot", bad), bad,
                          f"names listed in its directories, more than a collector records ({MAX_LISTED_NAMES})")
    doc["entries"]["/sys/kernel/iommu_groups"]["names"] = [str(n) for n in range(1000)]
    assert parse_snapshot(json.dumps(doc), "s.json")["entries"]["/sys/kernel/iommu_groups"]["names"][-1] == "999"


#: 8 MB of empty arrays, 5.2 million values: parsed, each 3 bytes become a 64-byte list (64 MiB of them took 2 GB)
TINY_VALUES = "[" + "[]," * 2_600_000 + "[]]"
TOO_MANY = "too many JSON values to be a snapshot"


def test_millions_of_tiny_values_are_refused_before_they_are_parsed(monkeypatch):
    def never(*args, **kwargs):
        raise AssertionError("parsed")

    monkeypatch.setattr(json, "loads", never)
    with pytest.raises(SnapshotError, match=f"^s.json: {TOO_MANY} .*the limit is {MAX_VALUES:,}\\): not parsed$"):
        parse_snapshot(TINY_VALUES, "s.json")


def test_a_snapshot_of_millions_of_tiny_values_is_one_line_alone_and_that_hosts_error_among_many(ready, tmp_path):
    bad = tmp_path / "tiny.json"
    bad.write_text(TINY_VALUES)
    assert_one_line_error(run_cli("scan", "--snapshot", bad), bad, TOO_MANY)
    proc = run_cli("scan", "--snapshot", ready[0], bad, "--format", "json")
    assert proc.returncode == 3 and "Traceback" not in proc.stderr
    hosts = json.loads(proc.stdout)["hosts"]
    assert [h["host"]["label"] for h in hosts] == ["ready", "tiny"]
    assert hosts[0]["findings"] and not hosts[0].get("notes")
    [note] = hosts[1]["notes"]
    assert note.startswith(f"snapshot {bad}: {TOO_MANY} (") and hosts[1]["findings"] == []


def test_a_real_large_snapshot_is_scanned_and_ten_times_it_is_still_within_the_value_limit(tmp_path):
    """1,000 PCI functions as the collector writes them: a 10,000-function host's snapshot is ten times
    as many values (measured: 2.1 million), and the limit leaves room for twice that again."""
    sys.path.insert(0, str(REPO / "benchmarks"))
    import treegen

    treegen.build(tmp_path / "tree", 1000, pci_ids=False)
    snap = tmp_path / "big.json"
    assert run_cli("collect", "--root", tmp_path / "tree", "-o", snap).returncode == 0
    proc = run_cli("scan", "--snapshot", snap, "--format", "json")
    assert proc.returncode in (0, 1) and not json.loads(proc.stdout).get("notes"), proc.stderr
    assert 10 * 2 * values_at_most(snap.read_text()) < MAX_VALUES


def test_a_schema_fault_in_a_value_of_megabytes_is_still_one_short_line(ready, tmp_path):
    bad = write(tmp_path / "big.json", dict(ready[1], entries="x" * (4 << 20)))
    proc = run_cli("scan", "--snapshot", bad)
    assert_one_line_error(proc, bad, "schemas/snapshot.schema.json")
    assert len(proc.stderr) < 1000 and "characters)" in proc.stderr


def test_a_hostname_of_megabytes_is_cut_with_a_note_and_outputs_stay_small(ready, tmp_path):
    name = "h" * (20 << 20)
    snap = write(tmp_path / "big.json", dict(ready[1], hostname=name))
    out, xml = tmp_path / "out.json", tmp_path / "out.xml"
    proc = run_cli("scan", "--snapshot", snap, "--format", "json", "-o", out, "--junit", xml)
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(out.read_text())
    hostname = doc["host"]["hostname"]
    assert hostname == name[:MAX_IDENTITY] + f"... (cut: {len(name)} characters)"
    suite = ET.parse(xml).getroot().find("testsuite")
    assert suite.get("hostname") == hostname and suite.get("tests") == str(len(doc["findings"]))
    assert out.stat().st_size < 64 << 10 and xml.stat().st_size < 64 << 10  # not proportional to the name


# -- text no output can write raw -------------------------------------------------------------

HOSTILE = "evil\udcffhost\x01\x85\x9b\ufdd0\U0001fffe"


def hostile_text_snapshot(doc: dict) -> dict:
    """Host text no file can take raw: in the hostname, the machine name (which names the arch),
    a listed file name that was not UTF-8, and a file's text."""
    doc = json.loads(json.dumps(doc))
    entries = doc["entries"]
    doc["hostname"], doc["machine"] = HOSTILE, "x86_64\udcff"
    entries["/proc/sys/kernel/arch"] = {"type": "missing"}
    entries["/sys/bus/pci/devices"]["names"].append("0000:00:1f.\udcff")
    entries["/etc/default/grub"] = {"type": "file", "text": "GRUB_CMDLINE_LINUX=\"\udcff\"\n", "cap": 1 << 20}
    return doc


def test_lone_surrogates_and_controls_reach_every_output_kept_exact_in_json_visible_in_junit(ready, tmp_path):
    snap = write(tmp_path / "evil.json", hostile_text_snapshot(ready[1]))
    out, xml = tmp_path / "out.json", tmp_path / "out.xml"
    proc = run_cli("scan", "--snapshot", snap, "--format", "json", "-o", out, "--junit", xml)
    assert proc.returncode in (0, 1) and "Traceback" not in proc.stderr, proc.stderr
    raw = out.read_bytes()
    assert b"\\udcff" in raw
    doc = json.loads(raw.decode("utf-8"))  # valid UTF-8 and valid JSON, and the text round-trips
    assert doc["host"]["hostname"] == HOSTILE and doc["host"]["arch"] == "x86_64\udcff"
    suite = ET.parse(xml).getroot().find("testsuite")
    marked = suite.get("hostname")
    for mark in ("\\udcff", "\\x01", "\\x9b", "\\ufdd0", "\\U0001fffe"):  # replaced visibly, never dropped
        assert mark in marked
    assert "\x85" in marked  # NEL is legal XML: kept as it is
    arch = {p.get("name"): p.get("value") for p in suite.iter("property")}["arch"]
    assert arch == "x86_64\\udcff"
    for fmt in ("table", "junit", "json"):
        shown = run_cli("scan", "--snapshot", snap, "--format", fmt)
        assert shown.returncode == proc.returncode and shown.stdout and "Traceback" not in shown.stderr, fmt


# -- a collector that stopped at its entry limit ------------------------------------------------

def limited_snapshot(tmp_path, monkeypatch, name="limited.json"):
    """A ready host collected with room for only a few hundred paths: most reads are not recorded."""
    ready_host(tmp_path / "tree")
    monkeypatch.setattr(collector, "MAX_ENTRIES", 100)
    path = tmp_path / name
    path.write_text(collector.dumps(collector.collect(str(tmp_path / "tree"))))
    return path


def test_a_snapshot_cut_at_the_entry_limit_is_no_verdict_exit_3_with_one_clear_note(tmp_path, monkeypatch):
    snap = limited_snapshot(tmp_path, monkeypatch)
    proc = run_cli("scan", "--snapshot", snap, "--format", "json", "--validate")
    assert proc.returncode == 3, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["summary"]["readiness"] == "NOT_READY" and len(doc["notes"]) == 1
    assert str(snap) in doc["notes"][0] and "entry limit reached" in doc["notes"][0]
    assert doc["findings"]  # what was recorded is still judged and shown
    table = run_cli("scan", "--snapshot", snap)
    assert table.returncode == 3 and "entry limit reached" in " ".join(table.stdout.split())  # wrapped


def test_a_cut_snapshot_among_many_is_that_hosts_error_in_the_fleet_summary(ready, tmp_path, monkeypatch):
    snap = limited_snapshot(tmp_path, monkeypatch, name="gpu09.json")
    proc = run_cli("scan", "--snapshot", ready[0], snap, "--format", "json")
    assert proc.returncode == 3
    doc = json.loads(proc.stdout)
    assert [h["summary"]["readiness"] for h in doc["hosts"]] == ["READY", "NOT_READY"]
    assert [e["host"] for e in doc["summary"]["host_errors"]] == ["gpu09"]


# -- the collector -------------------------------------------------------------------------------

def test_a_pci_ids_gz_bomb_is_never_inflated_past_the_cap_and_reads_as_on_the_host(tmp_path):
    tree = workstation(tmp_path / "ws")
    bomb = gzip.compress(b"# " + b"x" * (collector.LARGE_CAP + 1) + b"\n", 9)
    tree.write("/usr/share/misc/pci.ids.gz", bomb)
    assert collector.gunzip(bomb, collector.LARGE_CAP) is None
    assert collector.gunzip(gzip.compress(b"10de  NVIDIA\n"), 64) == b"10de  NVIDIA\n"
    snapshot = parse_snapshot(collector.dumps(collector.collect(str(tree.root))), "ws")
    assert snapshot["entries"]["/usr/share/misc/pci.ids.gz"]["base64"]  # kept as the host has it
    from_snapshot, from_tree = Facts(SnapshotHost(snapshot)).pci_ids, Facts(TreeHost(str(tree.root))).pci_ids
    assert from_snapshot.notes == from_tree.notes
    assert any("pci.ids.gz: too large" in note for note in from_tree.notes)


def test_compaction_of_a_directory_of_125000_names_is_linear(tmp_path):
    """125,000 links in one listed directory, each to a missing sibling: every missing record is
    implied by the listing and goes; the one whose name is listed (a race: gone since) stays."""
    count = 125_000
    names = [f"link{n}" for n in range(count)]
    entries = {"/": {"type": "dir", "names": ["d"]}, "/d": {"type": "dir", "names": names}}
    entries.update({f"/d/gone{n}": {"type": "missing"} for n in range(count)})
    entries["/d/link7"] = {"type": "missing"}
    walker = collector.Collector(str(tmp_path))
    walker.entries = entries
    walker.compact()
    assert sorted(walker.entries) == ["/", "/d", "/d/link7"]


def test_the_entry_limit_is_noted_once_however_many_notes_there_are(tmp_path):
    walker = collector.Collector(str(tmp_path), max_entries=2)
    walker.notes = [f"total size cap reached: /f{n} not collected" for n in range(1000)]
    for n in range(5):
        walker._record(f"/p{n}", {"type": "missing"})
    assert [note for note in walker.notes if note.startswith("entry limit")] == [
        "entry limit reached: only the first 2 paths were recorded"]
