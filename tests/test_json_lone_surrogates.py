"""JSON from a snapshot that carries a lone surrogate: written with the escape, never a traceback.

A snapshot is JSON, and JSON may spell a lone surrogate (``"node-\\ud800"``); a file name that is not
UTF-8 becomes one too (Python's surrogateescape). ``scan --format json`` always wrote such text
escaped, but ``diff --format json`` and ``groups --format json`` handed it to stdout as it was:
UnicodeEncodeError, exit 3, and one host's name cost the whole fleet's diff.
"""

import json

from clihelpers import run_cli
from hosttree import gpu_on_vfio, workstation


def hostile_snapshot(tmp_path, name: str):
    tree = gpu_on_vfio(workstation(tmp_path / "host"))
    plain = tmp_path / "plain.json"
    assert run_cli("collect", "--root", tree.root, "-o", plain).returncode == 0
    document = json.loads(plain.read_text())
    document["hostname"] = "node-\ud800"
    path = tmp_path / name
    path.write_text(json.dumps(document))  # ensure_ascii: the surrogate as its \ud800 escape
    return plain, path


def test_diff_json_writes_a_lone_surrogate_escaped(tmp_path):
    plain, hostile = hostile_snapshot(tmp_path, "hostile.json")
    proc = run_cli("diff", plain, hostile, "--format", "json")
    assert proc.returncode in (0, 1), proc.stderr
    assert "Traceback" not in proc.stderr
    assert "\\ud800" in proc.stdout
    assert "node-\ud800" in json.dumps(json.loads(proc.stdout), ensure_ascii=False)


def test_a_fleet_diff_keeps_every_host_when_one_name_is_a_lone_surrogate(tmp_path):
    plain, hostile = hostile_snapshot(tmp_path, "hostile.json")
    before, after = tmp_path / "before", tmp_path / "after"
    before.mkdir()
    after.mkdir()
    for n in range(3):
        (before / f"node{n}.json").write_bytes(plain.read_bytes())
        (after / f"node{n}.json").write_bytes((hostile if n == 1 else plain).read_bytes())
    out = tmp_path / "diff.json"
    proc = run_cli("diff", before, after, "--format", "json", "-o", out)
    assert proc.returncode in (0, 1), proc.stderr
    hosts = json.loads(out.read_text())["hosts"]
    assert sorted(h["host"] for h in hosts) == ["node0", "node1", "node2"]


def test_groups_json_writes_a_lone_surrogate_escaped(tmp_path):
    _, hostile = hostile_snapshot(tmp_path, "hostile.json")
    proc = run_cli("groups", "--snapshot", hostile, "--format", "json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["host"]["hostname"] == "node-\ud800"
