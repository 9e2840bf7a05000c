"""``vfio-scan fleet`` and the Ansible playbook against a real OpenSSH server started by the tests.

The server (tests/sshd.py) listens on 127.0.0.1 and on 127.0.0.2-.4, where a forced command
collects another fixture tree each -- three "hosts" -- while 127.0.0.5 hangs and 127.0.0.6 answers
garbage. A port where nothing listens stands for an unreachable host. Each scanned host must give
exactly the findings of ``scan --root`` of its tree, and each broken one a host-level error (exit
3) that does not stop the others. Without sshd the tests skip, except under CI (which installs it).
"""

from __future__ import annotations

import json
import os
import pty
import shutil
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from clihelpers import REPO, cli_env, run_cli
from snapshottrees import TREES
from sshd import Sshd, dead_port, why_no_sshd
from test_collector import old_pythons

TARGETS = ("--device", "01:00.0", "--device", "00:1f.6")
HOSTS = {"127.0.0.2": "ready", "127.0.0.3": "workstation", "127.0.0.4": "no-dmar"}
#: A host that never answers; it writes a blank now and then, so it dies of SIGPIPE once its client is gone
HANG = "while :; do printf ' ' || exit; sleep 0.2; done"


def unavailable(reason: str):
    if os.environ.get("CI"):
        pytest.fail(f"{reason}, and .ci/run should have made it available")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """The fixture trees, what 'scan --root' says of each, and the sshd serving them."""
    reason = why_no_sshd()
    if reason:
        unavailable(reason)
    base = tmp_path_factory.mktemp("lab")
    roots, expected = {}, {}
    for name in sorted(set(HOSTS.values())):
        roots[name] = base / name
        TREES[name](roots[name])
        expected[name] = json.loads(run_cli("scan", "--root", roots[name], "--format", "json", *TARGETS).stdout)
    server = Sshd(base / "sshd", {addr: roots[name] for addr, name in HOSTS.items()},
                  extra_forced={"127.0.0.5": HANG, "127.0.0.6": "echo this is not a snapshot"})
    try:
        server.start()
    except (RuntimeError, OSError) as exc:
        unavailable(f"cannot start the test sshd: {exc}")
    yield server, roots, expected, base
    server.stop()


def fleet(*args, env=None):
    started = time.monotonic()
    proc = run_cli("fleet", *args, env=env)
    return proc, time.monotonic() - started


def test_three_hosts_and_an_unreachable_one(lab, tmp_path):
    server, roots, expected, _ = lab
    hosts = tmp_path / "hosts.txt"
    dead = server.host("127.0.0.1", dead_port())
    hosts.write_text("# three hosts on one sshd, and one port where nothing listens\n"
                     + "".join(f"{server.host(a)}\n" for a in HOSTS) + f"{dead}\n")
    saved, junit = tmp_path / "saved", tmp_path / "fleet.xml"
    # the hosts' plain python3, as on a real fleet, when sshd's default PATH finds one
    python = "python3" if any(os.path.exists(f"{d}/python3") for d in ("/usr/bin", "/usr/local/bin", "/bin")) \
        else sys.executable
    proc, wall = fleet("--hosts-file", hosts, "--ssh-config", server.client_config, "--save-snapshots", saved,
                       "--python", python,
                       "--format", "json", "--validate", "--junit", junit, "--parallel", "4", *TARGETS)
    print(f"fleet of 3 hosts + 1 unreachable: {wall:.2f} s wall")
    assert proc.returncode == 3, proc.stderr
    assert "\r" not in proc.stderr  # no progress line when stderr is not a terminal
    doc = json.loads(proc.stdout)
    labels = [h["host"]["label"] for h in doc["hosts"]]
    assert labels == [server.host(a) for a in HOSTS] + [dead]
    for host, (address, name) in zip(doc["hosts"], HOSTS.items()):
        assert host["findings"] == expected[name]["findings"], name
        assert host["host"]["source"] == "snapshot" and host["host"]["hostname"] == "testhost"
    unreachable = doc["hosts"][3]
    assert unreachable["findings"] == [] and "Connection refused" in unreachable["notes"][0]
    assert doc["summary"]["host_errors"][0]["host"] == dead
    suites = ET.parse(junit).getroot().findall("testsuite")
    assert [s.get("name") for s in suites] == [f"vfio-scan:{label}" for label in labels]
    # what was saved scans again offline into the very same findings
    files = sorted(p.name for p in saved.iterdir())
    assert files == sorted(f"{server.user}@{a}_{server.port}.json" for a in HOSTS)
    again = json.loads(run_cli("scan", "--snapshot", saved, "--format", "json", *TARGETS).stdout)
    by_label = {h["host"]["label"]: h["findings"] for h in again["hosts"]}
    for address, name in HOSTS.items():
        assert by_label[f"{server.user}@{address}_{server.port}"] == expected[name]["findings"]


def test_inventory_variables_choose_root_python_and_key(lab, tmp_path):
    """An INI inventory on plain 127.0.0.1: vfio_scan_root per host, ansible_python_interpreter (a real
    Python 3.6 when this machine has one), ssh options passed through instead of a config file."""
    server, roots, expected, _ = lab
    old = old_pythons()
    inventory = tmp_path / "hosts.ini"
    inventory.write_text(
        "[gpu]\n"
        + "".join(f"{name} vfio_scan_root={roots[name]}\n" for name in ("ready", "workstation"))
        + (f"old vfio_scan_root={roots['no-dmar']} ansible_python_interpreter={old[0]}\n" if old else "")
        + f"[gpu:vars]\nansible_host=127.0.0.1\nansible_port={server.port}\nansible_user={server.user}\n"
        + f"ansible_ssh_private_key_file={server.client_key}\n")
    options = [f"--ssh-option=UserKnownHostsFile={server.known_hosts}", "--ssh-option=GlobalKnownHostsFile=/dev/null",
               "--ssh-option=IdentitiesOnly=yes", "--ssh-option=StrictHostKeyChecking=yes", "--ssh-option=LogLevel=ERROR"]
    proc, _ = fleet("-i", inventory, *options, "--format", "json", *TARGETS)
    doc = json.loads(proc.stdout)
    assert proc.returncode == 1, proc.stdout  # every host scanned, some not ready
    got = {h["host"]["label"]: h for h in doc["hosts"]}
    assert got["ready"]["findings"] == expected["ready"]["findings"]
    assert got["workstation"]["findings"] == expected["workstation"]["findings"]
    if old:
        assert got["old"]["findings"] == expected["no-dmar"]["findings"]
    # the same hosts from a YAML inventory, one group limited away
    pytest.importorskip("yaml")
    yml = tmp_path / "hosts.yml"
    yml.write_text(f"""all:
  vars: {{ansible_host: 127.0.0.1, ansible_port: {server.port}, ansible_user: {server.user},
         ansible_ssh_private_key_file: {server.client_key}}}
  children:
    gpu:
      hosts:
        ready: {{vfio_scan_root: {roots['ready']}}}
    other:
      hosts:
        skipped: {{vfio_scan_root: /nonexistent}}
""")
    proc, _ = fleet("-i", yml, "--limit", "gpu", *options, "--format", "json", *TARGETS)
    doc = json.loads(proc.stdout)
    assert [h["host"]["label"] for h in doc["hosts"]] == ["ready"]  # a fleet document even for one host
    assert doc["hosts"][0]["findings"] == expected["ready"]["findings"]


def test_hung_hosts_time_out_each_on_its_own_and_in_parallel(lab, tmp_path):
    server, *_ = lab
    inventory = tmp_path / "hosts.ini"
    inventory.write_text("".join(f"hung{n} ansible_host=127.0.0.5 ansible_port={server.port}\n" for n in (1, 2, 3)))
    proc, wall = fleet("-i", inventory, "--ssh-config", server.client_config, "--timeout", "2", "--parallel", "3",
                       "--format", "json")
    assert proc.returncode == 3
    notes = [h["notes"] for h in json.loads(proc.stdout)["hosts"]]
    assert notes == [[f"timed out after 2 s collecting from 127.0.0.5:{server.port}"]] * 3
    assert wall < 5.5  # three 2-second deadlines side by side, not one after another (6 s and more)


def test_garbled_and_python_less_hosts_are_reported_not_fatal(lab, tmp_path):
    server, roots, expected, _ = lab
    inventory = tmp_path / "hosts.ini"
    inventory.write_text(f"garbled ansible_host=127.0.0.6\n"
                         f"nopython ansible_host=127.0.0.1 ansible_python_interpreter=/nonexistent/python3\n"
                         f"fine ansible_host=127.0.0.2\n"
                         f"[all:vars]\nansible_port={server.port}\n")
    proc, _ = fleet("-i", inventory, "--ssh-config", server.client_config, "--format", "json", *TARGETS)
    assert proc.returncode == 3
    hosts = {h["host"]["label"]: h for h in json.loads(proc.stdout)["hosts"]}
    notes = {label: (h.get("notes") or [""])[0] for label, h in hosts.items()}
    assert notes["garbled"].startswith("the collector's reply from garbled: not valid JSON")
    assert notes["nopython"].startswith(f"the collector failed on 127.0.0.1:{server.port} (exit status 127)")
    assert "/nonexistent/python3" in notes["nopython"]
    assert notes["fine"] == "" and hosts["fine"]["findings"] == expected["ready"]["findings"]
    table = run_cli("fleet", "-i", inventory, "--ssh-config", server.client_config, "--limit", "fine,nopython",
                    *TARGETS)
    assert table.returncode == 3 and "Could not be scanned\n  nopython: the collector failed" in table.stdout


def test_progress_line_only_on_a_terminal(lab):
    server, *_ = lab
    main, secondary = pty.openpty()
    try:
        proc = subprocess.run([sys.executable, "-m", "scanner", "fleet", server.host("127.0.0.2"),
                               "--ssh-config", str(server.client_config), "--format", "json"],
                              cwd=REPO, env=cli_env(), stdout=subprocess.PIPE, stderr=secondary, timeout=120)
        os.close(secondary)
        secondary = None
        seen = b""
        while True:
            try:
                chunk = os.read(main, 4096)
            except OSError:
                break
            if not chunk:
                break
            seen += chunk
    finally:
        os.close(main)
        if secondary is not None:
            os.close(secondary)
    assert proc.returncode == 0  # the ready tree, no device targets
    assert b"\rvfio-scan fleet: 0/1 hosts" in seen and b"1/1 hosts; last: " in seen
    assert json.loads(proc.stdout)["summary"]["hosts"] == 1


def ansible_playbook() -> str:
    beside = Path(sys.executable).with_name("ansible-playbook")
    found = str(beside) if beside.exists() else shutil.which("ansible-playbook")
    if not found:
        unavailable("ansible-playbook is not installed (pip install -e '.[fleet-test]')")
    return found


def test_ansible_playbook_collects_snapshots_that_scan_the_same(lab, tmp_path):
    server, roots, expected, _ = lab
    playbook = ansible_playbook()
    inventory = tmp_path / "inventory.ini"
    inventory.write_text(
        "[gpu]\n" + "".join(f"{name} vfio_scan_root={roots[name]}\n" for name in ("ready", "workstation", "no-dmar"))
        + f"[gpu:vars]\nansible_host=127.0.0.1\nansible_port={server.port}\nansible_user={server.user}\n"
        + f"ansible_ssh_common_args='-F {server.client_config}'\nansible_python_interpreter={sys.executable}\n")
    cfg = tmp_path / "ansible.cfg"
    cfg.write_text("")
    env = dict(os.environ, ANSIBLE_CONFIG=str(cfg), ANSIBLE_HOME=str(tmp_path / "ahome"),
               ANSIBLE_LOCAL_TEMP=str(tmp_path / "local-tmp"), ANSIBLE_REMOTE_TEMP=str(tmp_path / "remote-tmp"),
               ANSIBLE_SSH_CONTROL_PATH_DIR=str(tmp_path / "cp"), ANSIBLE_NOCOLOR="1", ANSIBLE_PIPELINING="1",
               ANSIBLE_RETRY_FILES_ENABLED="0", ANSIBLE_FORCE_COLOR="0")
    dest = tmp_path / "snapshots"
    try:
        proc = subprocess.run([playbook, "-i", str(inventory), str(REPO / "contrib" / "ansible" / "collect.yml"),
                               "-e", f"vfio_scan_dest={dest}"], capture_output=True, text=True, env=env, timeout=600)
    finally:  # Ansible leaves ssh connection masters behind (ControlPersist): stop ours now
        for socket_path in (tmp_path / "cp").glob("*"):
            subprocess.run(["ssh", "-O", "exit", "-S", str(socket_path), "host"], capture_output=True, timeout=30)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert sorted(p.name for p in dest.iterdir()) == ["no-dmar.json", "ready.json", "workstation.json"]
    assert not list((tmp_path / "remote-tmp").glob("**/*.vfio-scan.json"))
    doc = json.loads(run_cli("scan", "--snapshot", dest, "--format", "json", "--validate", *TARGETS).stdout)
    for host in doc["hosts"]:
        assert host["findings"] == expected[host["host"]["label"]]["findings"], host["host"]["label"]
