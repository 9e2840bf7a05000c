"""``--format prometheus`` (node_exporter's textfile collector) and ``--format nfd`` (node-feature-discovery).

The metrics are checked by Prometheus' own ``promtool check metrics``, the labels by the
Kubernetes label syntax; hosts with hostile names must not break either file or add a sample.
"""

from __future__ import annotations

import re
import subprocess

import pytest

from clihelpers import run_cli, stderr_lines
from hosttree import gpu_on_vfio, workstation
from systools import require_tool

SAMPLE = re.compile(r'^([a-z_]+)\{((?:[a-z_]+="(?:[^"\\]|\\.)*",?)*)\} (\S+)$')


def promtool_check(text: str) -> None:
    promtool = require_tool("promtool")
    proc = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def samples(text: str) -> dict:
    """{(metric, labels text): value} of every sample line; any other line must be HELP or TYPE."""
    found = {}
    for line in text.splitlines():
        if line.startswith("# HELP ") or line.startswith("# TYPE "):
            continue
        match = SAMPLE.match(line)
        assert match, f"not a sample line: {line!r}"
        found[(match.group(1), match.group(2))] = match.group(3)
    return found


@pytest.fixture
def gpu_host(tmp_path):
    return gpu_on_vfio(workstation(tmp_path / "host"))


def test_prometheus_single_host_passes_promtool_and_says_ready_per_device(gpu_host):
    proc = run_cli("scan", "--root", gpu_host.root, "--class", "0300", "--format", "prometheus")
    assert proc.returncode == 1  # the iGPU is a target too, and it is the boot display
    promtool_check(proc.stdout)
    got = samples(proc.stdout)
    assert got[("vfio_scan_up", 'host="testhost"')] == "1"
    assert got[("vfio_scan_ready", 'host="testhost"')] == "0"
    assert got[("vfio_scan_readiness", 'host="testhost",state="NOT_READY"')] == "1"
    assert got[("vfio_scan_device_ready", 'host="testhost",device="0000:01:00.0"')] == "1"
    assert got[("vfio_scan_device_ready", 'host="testhost",device="0000:00:02.0"')] == "0"
    vfio004 = {k[1].rsplit('status="', 1)[1][:-1]: v for k, v in got.items()
               if k[0] == "vfio_scan_rule_status" and 'rule_id="VFIO-004"' in k[1]}
    assert vfio004 == {"pass": "1", "fail": "0", "warn": "0", "skip": "0", "error": "0", "waived": "0"}


def test_prometheus_fleet_with_hostile_names_and_a_broken_snapshot(tmp_path, gpu_host):
    fleet = tmp_path / "fleet"
    fleet.mkdir()
    proc = run_cli("collect", "--root", gpu_host.root, "-o", fleet / "gpu1.json")
    assert proc.returncode == 0, proc.stderr
    hostile = 'evil"} 1\nvfio_scan_ready{host="x\\'
    (fleet / (hostile.replace("\n", "%0A").replace("/", "%2F") + ".json")).write_bytes((fleet / "gpu1.json").read_bytes())
    (fleet / "broken.json").write_text("{", "utf-8")
    proc = run_cli("scan", "--snapshot", fleet, "--format", "prometheus")
    assert proc.returncode == 3, proc.stderr  # the broken host: incomplete
    promtool_check(proc.stdout)
    got = samples(proc.stdout)
    assert got[("vfio_scan_up", 'host="broken"')] == "0"
    assert not any(k[1].startswith('host="broken"') for k in got if k[0] != "vfio_scan_up")
    ready = [k for k in got if k[0] == "vfio_scan_ready"]
    assert len(ready) == 2  # gpu1 and the hostile one: no sample smuggled in by the name
    assert ("vfio_scan_up", 'host="evil\\"} 1\\nvfio_scan_ready{host=\\"x\\\\"') in got


def test_prometheus_written_with_o_is_atomic_and_complete(tmp_path, gpu_host):
    out = tmp_path / "vfio-scan.prom"
    proc = run_cli("scan", "--root", gpu_host.root, "--format", "prometheus", "-o", out)
    assert proc.returncode == 0, proc.stderr
    text = out.read_text("utf-8")
    assert text.endswith("\n") and "vfio_scan_ready{" in text
    assert sorted(p.name for p in tmp_path.iterdir()) == ["host", "vfio-scan.prom"]  # no temporary left behind


LABEL = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]{0,61}[A-Za-z0-9])=([A-Za-z0-9]([A-Za-z0-9._-]{0,61}[A-Za-z0-9])?)?$")


def nfd_labels(text: str) -> dict:
    lines = text.splitlines()
    assert re.match(r"^# \+expiry-time=\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$", lines[0]), lines[0]
    labels = {}
    for line in lines[1:]:
        match = LABEL.match(line)
        assert match, f"not a Kubernetes label: {line!r}"
        labels[match.group(1)] = match.group(2) or ""
    return labels


def test_nfd_labels_a_node_with_its_ready_gpus(gpu_host):
    proc = run_cli("scan", "--root", gpu_host.root, "--device", "0000:01:00.0", "--format", "nfd")
    assert proc.returncode == 0, proc.stderr
    assert nfd_labels(proc.stdout) == {
        "vfio-scan.ready": "true",
        "vfio-scan.readiness": "READY",
        "vfio-scan.iommu": "true",
        "vfio-scan.interrupt-remapping": "true",
        "vfio-scan.ready-devices.10de-2204": "1",
    }


def test_nfd_on_a_host_without_iommu_and_with_garbled_ids(gpu_host):
    gpu_host.cmdline("BOOT_IMAGE=/boot/vmlinuz root=/dev/sda1 ro intel_iommu=off")
    gpu_host.write(f"{gpu_host.device_dir('0000:01:00.0')}/vendor", "0x10de\nfoo=bar\n")
    proc = run_cli("scan", "--root", gpu_host.root, "--device", "0000:01:00.0", "--format", "nfd")
    labels = nfd_labels(proc.stdout)
    assert labels["vfio-scan.ready"] == "false"
    assert not any(k.startswith("vfio-scan.ready-devices") and "foo" in k for k in labels)
    assert "foo" not in proc.stdout


def test_nfd_refuses_a_fleet_in_one_line(tmp_path, gpu_host):
    fleet = tmp_path / "fleet"
    fleet.mkdir()
    for name in ("a", "b"):
        assert run_cli("collect", "--root", gpu_host.root, "-o", fleet / f"{name}.json").returncode == 0
    proc = run_cli("scan", "--snapshot", fleet, "--format", "nfd")
    assert proc.returncode == 2 and proc.stdout == ""  # a usage error, before any host is scanned
    assert stderr_lines(proc) == ["vfio-scan scan: error: --format nfd labels one node, and --snapshot gives 2 hosts: "
                                  "scan one host per run (the DaemonSet runs on each node)"], proc.stderr


def test_kubernetes_daemonset_script_labels_a_node_and_mounts_it_read_only(tmp_path, gpu_host):
    """The manifest's own loop, run against a fixture node: it writes NFD's feature file, keeps going
    after a not-ready scan, and may not write to the node it scans."""
    import os
    import signal
    import sys
    import time

    import yaml

    from clihelpers import REPO, cli_env

    manifest = yaml.safe_load((REPO / "contrib" / "kubernetes" / "daemonset.yaml").read_text("utf-8"))
    assert manifest["kind"] == "DaemonSet"
    pod = manifest["spec"]["template"]["spec"]
    container = pod["containers"][0]
    mounts = {m["name"]: m for m in container["volumeMounts"]}
    assert mounts["host"]["readOnly"] is True and mounts["host"]["mountPath"] == "/host"
    volumes = {v["name"]: v for v in pod["volumes"]}
    features_dir = volumes["features"]["hostPath"]["path"]
    assert features_dir == "/etc/kubernetes/node-feature-discovery/features.d"
    assert container["securityContext"]["capabilities"]["drop"] == ["ALL"]
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env["HOST_ROOT"] == "/host" and env["FEATURE_FILE"].startswith(features_dir + "/")

    feature_file = tmp_path / "features.d" / "vfio-scan"
    feature_file.parent.mkdir()
    run_env = cli_env(**dict(env, HOST_ROOT=str(gpu_host.root), FEATURE_FILE=str(feature_file),
                             VFIO_SCAN_INTERVAL_SECONDS="600"))
    run_env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + run_env["PATH"]
    shell = subprocess.Popen(container["command"] + container["args"], env=run_env, cwd=tmp_path,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while not feature_file.exists() and time.monotonic() < deadline and shell.poll() is None:
            time.sleep(0.2)
        time.sleep(0.5)
        assert shell.poll() is None, "the loop ended"  # a NOT_READY scan (the iGPU target) does not stop it
    finally:
        os.killpg(shell.pid, signal.SIGKILL)
        out, err = shell.communicate()
    labels = nfd_labels(feature_file.read_text("utf-8"))
    assert labels["vfio-scan.readiness"] == "NOT_READY"  # --class 0300: the boot iGPU is a target too
    assert labels["vfio-scan.ready-devices.10de-2204"] == "1"
    assert "scan ended with exit code 1" in out, out + err
    assert [p.name for p in feature_file.parent.iterdir()] == ["vfio-scan"]
