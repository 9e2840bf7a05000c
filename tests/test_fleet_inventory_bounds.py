"""An inventory cannot make vfio-scan build more hosts, or walk more groups, than any fleet has.

A range line multiplies (``n[0:9999][0:9999][0:9999]`` is a trillion names) and a YAML
inventory whose groups' children alias the level below fans out twice per level. Either must
end in one line naming the file, exit 2, at once -- not a MemoryError, nor a walk that never ends.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from clihelpers import REPO, run_cli, stderr_lines
from scanner.fleet import inventory
from scanner.fleet.inventory import InventoryError, expand_range, parse_ini_inventory, parse_yaml_inventory

pytest.importorskip("yaml")

LEVELS = 40  # walked once per alias: 2**41 walks


def alias_bomb(levels: int) -> str:
    lines = ["_defs:", "  d0: &d0 {hosts: {h1: }}"]
    lines += [f"  d{n}: &d{n} {{children: {{a{n}: *d{n - 1}, b{n}: *d{n - 1}}}}}" for n in range(1, levels + 1)]
    return "\n".join(lines + ["all:", "  children:", f"    top: *d{levels}", ""])


def test_a_range_of_a_trillion_hosts_is_one_line_naming_the_file_exit_2(tmp_path):
    path = tmp_path / "range.ini"
    path.write_text("[web]\nn[0:9999][0:9999][0:9999]\n")
    proc = run_cli("fleet", "-i", path)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert stderr_lines(proc) == [f"vfio-scan fleet: error: {path}:2: host range 'n[0:9999][0:9999][0:9999]' "
                                  "makes 1,000,000,000,000 hosts, more than the 100,000 an inventory may have"]


def test_ranges_past_the_host_limit_are_refused_before_they_are_made_and_those_within_are_kept():
    with pytest.raises(InventoryError, match=r"^inv:2: host range 'n\[0:499\]\[0:499\]' makes 250,000 hosts"):
        parse_ini_inventory("[web]\nn[0:499][0:499]\n", "inv")
    assert len(expand_range("n[0:99][0:999]")) == inventory.MAX_HOSTS
    assert expand_range("r[1:2]n[08:10]") == ["r1n08", "r1n09", "r1n10", "r2n08", "r2n09", "r2n10"]


def test_the_host_limit_is_over_the_whole_inventory_in_both_formats(monkeypatch):
    monkeypatch.setattr(inventory, "MAX_HOSTS", 5)
    with pytest.raises(InventoryError, match=r"^inv:4: more than 5 hosts"):
        parse_ini_inventory("[a]\nh[1:3]\n[b]\ng[1:3]\n", "inv")
    with pytest.raises(InventoryError, match=r"^inv.yml: more than 5 hosts"):
        parse_yaml_inventory("a: {hosts: {'h[1:3]': }}\nb: {hosts: {'g[1:3]': }}\n", "inv.yml")


def test_groups_aliased_level_under_level_are_walked_once_each(tmp_path):
    """In a process of its own: unbounded, the walk would never end and take the test run with it."""
    path = tmp_path / "bomb.yml"
    path.write_text(alias_bomb(LEVELS))
    code = ("import sys; from scanner.fleet.inventory import read_inventory\n"
            "[host] = read_inventory(sys.argv[1]); print(host.name, len(host.groups))")
    done = subprocess.run([sys.executable, "-c", code, str(path)], cwd=REPO, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["h1", str(2 * LEVELS + 1)]  # a1..a40, b1..b40 and top


def test_a_walk_past_its_bound_is_one_line_naming_the_file(monkeypatch):
    monkeypatch.setattr(inventory, "MAX_GROUP_VISITS", 10)
    text = "all:\n  children:\n" + "".join(f"    g{n}: {{hosts: {{h{n}: }}}}\n" for n in range(10))
    with pytest.raises(InventoryError, match=r"^inv.yml: more than 10 group entries, aliases followed"):
        parse_yaml_inventory(text, "inv.yml")
    assert len(parse_yaml_inventory(text.replace("    g9:", "    g8:"), "inv.yml")) == 9


def test_a_chain_of_thousands_of_children_groups_is_walked_without_recursion():
    """3,000 ``[gN:children]`` levels: a RecursionError traceback took the audit down. The deepest group's
    variables still win over its ancestors', as Ansible orders them."""
    lines = ["[g0]", "h1", "[g0:vars]", "ansible_user=deep", "[g2999:vars]", "ansible_user=top", "ansible_port=2222"]
    for level in range(1, 3000):
        lines += [f"[g{level}:children]", f"g{level - 1}"]
    (host,) = parse_ini_inventory("\n".join(lines) + "\n", "deep.ini")
    assert (host.name, host.user, host.port) == ("h1", "deep", 2222)
    assert len(host.groups) == 3000


def test_children_that_loop_back_are_left_out_not_walked_forever():
    text = "[a]\nh1\n[a:vars]\nansible_user=a\n[b:children]\na\n[a:children]\nb\n[b:vars]\nansible_user=b\n"
    (host,) = parse_ini_inventory(text, "loop.ini")
    assert host.name == "h1" and set(host.groups) == {"a", "b"}


def test_a_host_whose_port_is_no_number_is_a_usage_error_before_any_ssh():
    proc = run_cli("fleet", "gpu01", "h:x")
    assert proc.returncode == 2 and len(stderr_lines(proc)) == 1 and "'h:x'" in proc.stderr, proc.stderr
