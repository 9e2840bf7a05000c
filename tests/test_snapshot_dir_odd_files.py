"""A ``*.json`` in a snapshot directory that is not a regular file is a host that could not be read.

It used to be left out without a word: a host whose snapshot was replaced by a FIFO, whose link
broke, or that was made a link to a device vanished from the fleet's report, while ``diff`` of the
same directory named each as unreadable.
"""

import json
import os

from clihelpers import run_cli
from hosttree import gpu_on_vfio, workstation


def fleet_with_odd_files(tmp_path):
    tree = gpu_on_vfio(workstation(tmp_path / "host"))
    fleet = tmp_path / "fleet"
    fleet.mkdir()
    assert run_cli("collect", "--root", tree.root, "-o", fleet / "node0.json").returncode == 0
    for n in (1, 2):
        (fleet / f"node{n}.json").write_bytes((fleet / "node0.json").read_bytes())
    os.mkfifo(fleet / "fifo.json")
    (fleet / "broken.json").symlink_to(tmp_path / "gone.json")
    (fleet / "zero.json").symlink_to("/dev/zero")
    (fleet / "subdir.json").mkdir()  # a directory is no host
    return fleet


def test_every_json_name_but_a_directory_is_a_host_and_the_unreadable_ones_say_why(tmp_path):
    fleet = fleet_with_odd_files(tmp_path)
    proc = run_cli("scan", "--snapshot", fleet, "--format", "json")
    assert proc.returncode == 3, proc.stderr
    hosts = {h["host"].get("label"): h for h in json.loads(proc.stdout)["hosts"]}
    assert sorted(hosts) == ["broken", "fifo", "node0", "node1", "node2", "zero"]
    for label, why in (("fifo", "a FIFO"), ("zero", "a character device"), ("broken", "no such file")):
        assert why in json.dumps(hosts[label]), (label, hosts[label])
    table = run_cli("scan", "--snapshot", fleet)
    assert table.returncode == 3
    for label in ("fifo", "broken", "zero"):
        assert label in table.stdout.split("Could not be scanned", 1)[1]
    assert "Traceback" not in table.stderr + proc.stderr
