"""The example policies in examples/: valid, and a scan of the host they describe gives what they promise."""

from __future__ import annotations

import jsonschema
import pytest
from clihelpers import BUILTIN_IDS, run_cli, scan_json
from policyhelpers import EXAMPLES, GPU, GPU_AUDIO, X520_PF, gpu_workstation, sriov_host

from scanner.policy.file import _plain, load_policy, read
from scanner.policy.schema import load_schema

GPU_POLICY = EXAMPLES / "gpu-workstation.toml"
SRIOV_POLICY = EXAMPLES / "sriov-nic-host.toml"
BEFORE, LAST_DAY, AFTER = "2027-01-15", "2027-06-30", "2027-07-01"  # around the boot-vga waiver's expiry


def statuses(doc, subject):
    return {f["rule_id"]: f["status"] for f in doc["findings"] if f["subject"] == subject}


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*.toml")), ids=lambda p: p.name)
def test_every_example_is_valid(path):
    data = _plain(read(str(path)).data)
    jsonschema.Draft202012Validator(load_schema()).validate(data)
    policy = load_policy(str(path), known_rules=set(BUILTIN_IDS))
    assert policy.description and policy.targets


def test_there_are_the_two_examples():
    assert {p.name for p in EXAMPLES.glob("*.toml")} >= {"gpu-workstation.toml", "sriov-nic-host.toml"}


# -- the GPU workstation ------------------------------------------------------------------------------

@pytest.mark.parametrize("as_of", [BEFORE, LAST_DAY])
def test_gpu_workstation_is_ready_with_the_boot_vga_warning_waived(tmp_path, as_of):
    proc, doc = scan_json(gpu_workstation(tmp_path / "ws").root, "--policy", GPU_POLICY, "--as-of", as_of,
                          "--validate")
    assert proc.returncode == 0, proc.stderr
    assert doc["summary"]["readiness"] == "READY" and doc["summary"]["fail_on"] == "warn"
    assert doc["targets"] == [GPU, GPU_AUDIO]
    assert statuses(doc, GPU) == {"VFIO-010": "pass", "VFIO-011": "skip", "VFIO-012": "pass", "VFIO-013": "pass",
                                  "VFIO-014": "pass", "VFIO-015": "waived", "VFIO-017": "pass", "VFIO-018": "pass",
                                  "VFIO-020": "pass", "VFIO-021": "pass", "VFIO-022": "pass"}
    assert set(statuses(doc, GPU_AUDIO).values()) <= {"pass", "skip"}
    host = {f["rule_id"]: f for f in doc["findings"] if f["subject"] == "host"}
    assert host["VFIO-006"]["status"] == "pass" and host["VFIO-006"]["severity"] == "critical"
    (vga,) = [f for f in doc["findings"] if f["status"] == "waived"]
    assert vga["waiver"]["expires"] == "2027-06-30" and "WS-42" in vga["waiver"]["justification"]
    assert doc["policy"]["expired_waivers"] == [] and doc["policy"]["unused_waivers"] == []


def test_gpu_workstation_after_the_waiver_expired(tmp_path):
    proc, doc = scan_json(gpu_workstation(tmp_path / "ws").root, "--policy", GPU_POLICY, "--as-of", AFTER)
    assert proc.returncode == 1 and statuses(doc, GPU)["VFIO-015"] == "warn"
    assert [w["would_cover"] for w in doc["policy"]["expired_waivers"]] == [[f"VFIO-015 {GPU}"]]


def test_gpu_workstation_requires_interrupt_remapping(tmp_path):
    proc, doc = scan_json(gpu_workstation(tmp_path / "ws", remapping=False).root, "--policy", GPU_POLICY,
                          "--as-of", BEFORE)
    (remap,) = [f for f in doc["findings"] if f["rule_id"] == "VFIO-006"]
    # plain PCI-MSI while the IOMMU runs: positive evidence, a fail, at the policy's severity
    assert proc.returncode == 1 and remap["status"] == "fail" and remap["severity"] == "critical"


def test_gpu_workstation_with_the_gpu_still_on_nvidia(tmp_path):
    proc, doc = scan_json(gpu_workstation(tmp_path / "ws", bound=False).root, "--policy", GPU_POLICY,
                          "--as-of", BEFORE)
    assert proc.returncode == 1
    assert statuses(doc, GPU)["VFIO-013"] == "fail" and statuses(doc, GPU_AUDIO)["VFIO-013"] == "fail"


def test_gpu_workstation_qemu_args(tmp_path):
    proc = run_cli("qemu-args", "--root", gpu_workstation(tmp_path / "ws").root, "--policy", GPU_POLICY,
                   "--as-of", BEFORE)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == (f"-device pcie-root-port,id=vfio-rp1,chassis=101,bus=pcie.0 "
                           f"-device vfio-pci,host={GPU},bus=vfio-rp1,addr=00.0,multifunction=on "
                           f"-device vfio-pci,host={GPU_AUDIO},bus=vfio-rp1,addr=00.1\n")


# -- the SR-IOV NIC host ------------------------------------------------------------------------------

def test_sriov_host_is_ready(tmp_path):
    tree = sriov_host(tmp_path / "nic")
    proc, doc = scan_json(tree.root, "--policy", SRIOV_POLICY, "--as-of", BEFORE, "--validate")
    assert proc.returncode == 0, proc.stderr
    assert doc["summary"]["readiness"] == "READY" and doc["targets"] == [X520_PF] + tree.vfs
    assert len(tree.vfs) == 8 and tree.vfs[:2] == ["0000:04:10.0", "0000:04:10.2"]
    pf = {f["rule_id"]: f for f in doc["findings"] if f["subject"] == X520_PF}
    assert pf["VFIO-011"]["status"] == "pass" and pf["VFIO-011"]["message"].startswith("8 of 63 VFs enabled")
    assert pf["VFIO-013"]["status"] == "pass" and pf["VFIO-013"]["message"] == "bound to ixgbe, as the policy expects"
    assert pf["VFIO-012"]["status"] == "skip"  # the PF stays on the host
    for vf in tree.vfs:
        assert statuses(doc, vf) == {"VFIO-010": "pass", "VFIO-011": "pass", "VFIO-012": "pass", "VFIO-013": "pass",
                                     "VFIO-014": "pass", "VFIO-017": "pass", "VFIO-018": "pass", "VFIO-020": "pass",
                                     "VFIO-021": "pass", "VFIO-022": "pass"}  # VFIO-015 is skipped by the policy
    assert "VFIO-015" not in {f["rule_id"] for f in doc["findings"]}
    assert doc["policy"]["unused_waivers"] == []  # the lab waiver is for lab-* hosts only


def test_sriov_host_with_too_few_vfs_fails(tmp_path):
    proc, doc = scan_json(sriov_host(tmp_path / "nic", vfs=4).root, "--policy", SRIOV_POLICY, "--as-of", BEFORE)
    pf = {f["rule_id"]: f for f in doc["findings"] if f["subject"] == X520_PF}
    assert proc.returncode == 1 and pf["VFIO-011"]["status"] == "fail" and pf["VFIO-011"]["severity"] == "high"


def test_sriov_host_with_the_pf_on_vfio_fails(tmp_path):
    tree = sriov_host(tmp_path / "nic")
    tree.bind(X520_PF, "vfio-pci")
    proc, doc = scan_json(tree.root, "--policy", SRIOV_POLICY, "--as-of", BEFORE)
    binding = next(f for f in doc["findings"] if f["rule_id"] == "VFIO-013" and f["subject"] == X520_PF)
    assert proc.returncode == 1 and binding["status"] == "fail"
    assert binding["message"] == "not on ixgbe, the driver the policy expects: bound to vfio-pci"


@pytest.mark.parametrize("hostname, status, code", [("lab-03", "waived", 0), ("prod-03", "fail", 1)])
def test_sriov_lab_hosts_may_lack_interrupt_remapping(tmp_path, hostname, status, code):
    tree = sriov_host(tmp_path / "nic", hostname=hostname, remapping=False)
    proc, doc = scan_json(tree.root, "--policy", SRIOV_POLICY, "--as-of", BEFORE)
    (remap,) = [f for f in doc["findings"] if f["rule_id"] == "VFIO-006"]
    assert remap["status"] == status and proc.returncode == code  # the lab waiver covers it; prod fails
    assert doc["summary"]["readiness"] == ("READY" if status == "waived" else "NOT_READY")


def test_the_readme_policy_example_is_valid(tmp_path):
    readme = (EXAMPLES.parent / "README.md").read_text(encoding="utf-8")
    section = readme[readme.index("### Policy files"):]
    block = section[section.index("```toml\n") + len("```toml\n"):section.index("\n```", section.index("```toml"))]
    path = tmp_path / "readme.toml"
    path.write_text(block + "\n", encoding="utf-8")
    policy = load_policy(str(path), known_rules=set(BUILTIN_IDS))
    assert policy.waivers[0].expires.isoformat() == "2027-06-30" and policy.severity == {"VFIO-006": "critical"}
