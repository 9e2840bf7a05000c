"""The siblings of a target whose IOMMU group the host keeps a member of are not claimed at boot.

The workstation's PCH functions share group 5 with the on-board NIC that carries the default route:
VFIO-012 says the group can never go to a VM and binds none of them now. Yet the boot-time step
every target shares wrote the PCH audio's sibling (the SMBus controller) into ``vfio-pci ids=``
with a softdep for i801_smbus: at every boot the host lost its SMBus, for a passthrough that
cannot work.
"""

from hosttree import workstation
from scriptrun import Shims, run_script, scan, script_for

AUDIO, SMBUS = "0000:00:1f.3", "0000:00:1f.4"


def test_the_fix_does_not_give_the_smbus_to_vfio_pci_at_boot(tmp_path):
    tree = workstation(tmp_path / "ws")
    findings = {f.rule_id: f for f in scan(tree.root, devices=["00:1f.3"]).findings if f.subject == AUDIO}
    assert findings["VFIO-012"].status == "fail"
    proc = run_script(script_for(tree.root, devices=["00:1f.3"]), tree.root, Shims(tmp_path))
    conf = tree.path("/etc/modprobe.d/vfio.conf")
    text = conf.read_text() if conf.exists() else ""
    assert "8086:a323" not in text and "i801_smbus" not in text, text
    assert "8086:a323" not in proc.stdout


def test_a_gpu_s_audio_sibling_is_still_kept_on_vfio_pci_at_boot(tmp_path):
    tree = workstation(tmp_path / "ws")
    proc = run_script(script_for(tree.root, devices=["01:00.0"]), tree.root, Shims(tmp_path))
    assert proc.returncode == 0, proc.stderr
    assert "options vfio-pci ids=10de:2204,10de:1aef" in tree.path("/etc/modprobe.d/vfio.conf").read_text()
