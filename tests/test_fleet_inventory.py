"""Who a fleet scans: hosts files, Ansible INI and YAML inventories, --limit, and the ssh command built for each host."""

from __future__ import annotations

import pytest

from scanner.fleet.inventory import (InventoryError, expand_range, limit, parse_host_spec, parse_hosts_file,
                                     parse_ini_inventory, parse_yaml_inventory, read_inventory)
from scanner.fleet.remote_command import RemoteOptions, collector_command, ssh_argv
from scanner.fleet.snapshot_names import safe_name


@pytest.mark.parametrize("spec, want", [
    ("gpu01", (None, "gpu01", None)),
    ("root@10.0.0.7:2222", ("root", "10.0.0.7", 2222)),
    ("admin@gpu01.dc1.example.com", ("admin", "gpu01.dc1.example.com", None)),
    ("[::1]:2200", (None, "::1", 2200)),
    ("ops@[fe80::1]:22", ("ops", "fe80::1", 22)),
    ("fe80::2", (None, "fe80::2", None)),
])
def test_host_specs(spec, want):
    assert parse_host_spec(spec) == want


@pytest.mark.parametrize("bad", ["-oProxyCommand=evil", "root@-x", "host:99999", "a@b@c", "",
                                 "h:x", "[::1", "gpu01:22x"])  # a mistyped port or address: no host
def test_bad_host_specs(bad):
    with pytest.raises(ValueError):
        parse_host_spec(bad)


def test_hosts_file_comments_and_variables():
    hosts = parse_hosts_file("# the lab\n\nroot@10.0.0.7:2222   # rack 3\ngpu02 vfio_scan_root=/srv/tree\n")
    assert [(h.name, h.user, h.address, h.port) for h in hosts] == [
        ("root@10.0.0.7:2222", "root", "10.0.0.7", 2222), ("gpu02", None, "gpu02", None)]
    assert hosts[1].var("vfio_scan_root") == "/srv/tree"
    with pytest.raises(InventoryError, match=r"hosts:2: .*not a host name"):
        parse_hosts_file("ok\n-oProxyCommand=x\n")


def test_ranges():
    assert expand_range("gpu[01:03].dc1") == ["gpu01.dc1", "gpu02.dc1", "gpu03.dc1"]
    assert expand_range("db-[a:c]") == ["db-a", "db-b", "db-c"]
    assert expand_range("n[0:10:5]") == ["n0", "n5", "n10"]
    assert expand_range("r[1:2]n[1:2]") == ["r1n1", "r1n2", "r2n1", "r2n2"]


INI = """
# an operator's inventory
lonely ansible_host=10.0.0.9
[gpu]
gpu[01:02].dc1 ansible_port=2200
special ansible_host=10.1.1.1 ansible_user=bob
[gpu:vars]
ansible_user=admin
[dc1:children]
gpu
[dc1:vars]
ansible_user=dcuser
ansible_port=22
vfio_scan_root = "/srv/x"
[all:vars]
ansible_python_interpreter=/usr/libexec/platform-python
"""


def test_ini_inventory_groups_children_and_variable_precedence():
    hosts = {h.name: h for h in parse_ini_inventory(INI)}
    assert sorted(hosts) == ["gpu01.dc1", "gpu02.dc1", "lonely", "special"]
    gpu = hosts["gpu01.dc1"]
    assert (gpu.address, gpu.port, gpu.user) == ("gpu01.dc1", 2200, "admin")  # host > child group > parent group
    assert gpu.groups == ("dc1", "gpu") and gpu.var("vfio_scan_root") == "/srv/x"
    assert (hosts["special"].address, hosts["special"].user, hosts["special"].port) == ("10.1.1.1", "bob", 22)
    assert hosts["lonely"].var("ansible_python_interpreter") == "/usr/libexec/platform-python"
    assert [h.name for h in limit(list(hosts.values()), ["gpu0[2]*,lonely"])] == ["lonely", "gpu02.dc1"]
    assert len(limit(list(hosts.values()), ["dc1"])) == 3


def test_ini_errors_name_the_line():
    with pytest.raises(InventoryError, match=r"inv:3: expected key=value"):
        parse_ini_inventory("[g]\nh1\nh2 novalue\n", "inv")
    with pytest.raises(InventoryError, match="ansible_port"):
        parse_ini_inventory("h1 ansible_port=ssh\n", "inv")


def test_yaml_inventory():
    pytest.importorskip("yaml")
    text = """
all:
  vars:
    ansible_user: root
  hosts:
    lonely:
  children:
    gpu:
      vars: {ansible_port: 2200}
      hosts:
        gpu[01:02]:
        gpu03: {ansible_host: 10.0.0.3, ansible_port: 22, vfio_scan_root: /srv/t}
      children:
        a100:
          hosts:
            gpu01:
          vars: {ansible_user: a100}
"""
    hosts = {h.name: h for h in parse_yaml_inventory(text)}
    assert sorted(hosts) == ["gpu01", "gpu02", "gpu03", "lonely"]
    assert (hosts["gpu01"].user, hosts["gpu01"].port, hosts["gpu01"].groups) == ("a100", 2200, ("a100", "gpu"))
    assert (hosts["gpu03"].address, hosts["gpu03"].port, hosts["gpu03"].var("vfio_scan_root")) == ("10.0.0.3", 22, "/srv/t")
    assert hosts["lonely"].user == "root" and hosts["lonely"].port is None
    with pytest.raises(InventoryError, match="not valid YAML"):
        parse_yaml_inventory("all: [", "inv.yml")
    with pytest.raises(InventoryError, match="must be a mapping"):
        parse_yaml_inventory("all:\n  hosts: [a, b]\n", "inv.yml")


def test_yaml_needs_pyyaml_only_when_used(monkeypatch, tmp_path):
    import sys

    monkeypatch.setitem(sys.modules, "yaml", None)
    inv = tmp_path / "hosts.yml"
    inv.write_text("all: {}\n")
    with pytest.raises(InventoryError, match=r"YAML inventories need PyYAML"):
        read_inventory(str(inv))
    ini = tmp_path / "hosts.ini"
    ini.write_text("h1\n")
    assert [h.name for h in read_inventory(str(ini))] == ["h1"]


def test_ssh_command_line():
    [host] = parse_ini_inventory("gpu01 ansible_host=10.0.0.1 ansible_port=2222 ansible_user=ops "
                                 "ansible_ssh_private_key_file=/k/id ansible_ssh_common_args='-J bastion' "
                                 "vfio_scan_root='/srv/a tree' ansible_python_interpreter=/usr/libexec/platform-python")
    argv = ssh_argv(host, RemoteOptions(timeout=60, ssh_options=["ConnectTimeout=5"], ssh_config="/cfg"))
    assert argv[:6] == ["ssh", "-T", "-F", "/cfg", "-o", "ConnectTimeout=5"]  # the user's options first: ssh keeps the first
    assert argv[6:14] == ["-J", "bastion", "-p", "2222", "-l", "ops", "-i", "/k/id"]
    assert argv[14:18] == ["-o", "BatchMode=yes", "-o", "ConnectTimeout=30"]
    assert argv[18:] == ["--", "10.0.0.1", "/usr/libexec/platform-python - --root '/srv/a tree'"]
    [plain] = parse_hosts_file("gpu02\n")
    assert collector_command(plain, RemoteOptions(sudo=True, python="python3")) == ["sudo", "-n", "python3", "-"]
    assert safe_name("root@10.0.0.1:2222") == "root@10.0.0.1_2222" and safe_name("../..") == "_"


def test_non_ascii_digits_as_port_are_refused_not_a_crash(tmp_path):
    from scanner.fleet.inventory import read_inventory

    inv = tmp_path / "hosts.ini"
    inv.write_text("[gpu]\nnode1 ansible_port=\u00b2\n")
    try:
        read_inventory(str(inv))
    except Exception as exc:  # a clear refusal naming the value, never a crash from int()
        assert "ansible_port" in str(exc)
    else:
        raise AssertionError("a superscript digit was accepted as a port")
