"""The unsafe interrupt override is shown, never applied by the fix script.

``allow_unsafe_interrupts=1`` lets every guest forge interrupts into the host. VFIO-006 offers it
as the last resort where interrupt remapping is not seen; the fix script used to write it into
/etc/modprobe.d like any other step, so an operator who ran the script for the rest of its fixes
also turned the host's protection off. It is a manual step now: its commands are in the script as
suggestions, and it says so.
"""

from hosttree import ready_host
from scriptrun import Shims, run_script, scan, script_for

UNSAFE_CONF = "/etc/modprobe.d/vfio-unsafe-interrupts.conf"


def no_remapping_host(root):
    """Device MSIs on the plain PCI-MSI chip while the IOMMU runs: VFIO-006 fails, QEMU would not start."""
    tree = ready_host(root)
    tree.interrupts(remapped=False)
    tree.kernel_log("[    0.0] Linux version 6.1.0-56-amd64\n[    0.08] DMAR: IOMMU enabled\n")
    return tree


def test_the_last_resort_is_a_manual_step_with_its_commands_shown(tmp_path):
    tree = no_remapping_host(tmp_path / "h")
    finding = next(f for f in scan(tree.root).findings if f.rule_id == "VFIO-006")
    assert finding.status == "fail"
    last_resort = next(s for s in finding.remediation if "allow_unsafe_interrupts=1" in " ".join(s.commands))
    assert last_resort.manual
    assert "never applied by the fix script" in last_resort.summary


def test_the_fix_script_does_not_write_the_unsafe_override(tmp_path):
    tree = no_remapping_host(tmp_path / "h")
    script = script_for(tree.root)
    assert "# NO AUTOMATED FIX: VFIO-006" in script
    suggested = [line for line in script.splitlines() if "allow_unsafe_interrupts=1" in line]
    assert suggested and all(line.lstrip().startswith("#   suggested:") for line in suggested)
    proc = run_script(script, tree.root, Shims(tmp_path))
    assert proc.returncode == 0, proc.stderr
    assert "MANUAL: VFIO-006" in proc.stdout
    assert not tree.path(UNSAFE_CONF).exists()
    assert not any("allow_unsafe_interrupts" in p.read_text() for p in tree.path("/etc").rglob("*") if p.is_file())
