"""VFIO-020 to VFIO-023 on a real kernel: Debian's 6.1 booted through OVMF with a VGA device.

One boot: UEFI (OVMF) gives the guest's VGA device (``-device VGA``, 00:01.0) a GOP framebuffer,
which the kernel's ``efifb`` claims inside its BAR 0; its DRM driver (bochs) is kept from loading
(``modprobe.blacklist``) so that the framebuffer stays, as on a host whose GPU has no driver yet.
``lockdown=integrity`` turns kernel lockdown on as Secure Boot does. The guest scans the VGA
device, a NIC and the AHCI controller (whose group has the ``direct-relaxable`` region of the ISA
bridge) as root and as nobody, then binds the VGA device to vfio-pci and scans again.
"""

import json

import pytest

import guest

pytestmark = pytest.mark.e2e

VGA, NIC, AHCI = "0000:00:01.0", "0000:00:02.0", "0000:00:1f.2"
RULES = ("VFIO-020", "VFIO-021", "VFIO-022", "VFIO-023")

BODY = r'''
ground_truth
cp /proc/iomem "$OUT/iomem.txt"
cat /sys/kernel/security/lockdown > "$OUT/lockdown.txt"
for g in /sys/kernel/iommu_groups/*; do echo "${g##*/}: $(tr '\n' ' ' < "$g/reserved_regions")"; done > "$OUT/reserved-regions.txt"
TARGETS=(--device 0000:00:01.0 --device 0000:00:02.0 --device 0000:00:1f.2)
vs scan scan --format json -o "$OUT/scan.json" --validate "${TARGETS[@]}"
chmod o+x /root 2>/dev/null   # a venv's Python may live under /root (0700): let nobody reach it (the overlay forgets it)
step nobody setpriv --reuid=65534 --regid=65534 --clear-groups env HOME=/tmp "${VFIO_SCAN[@]}" scan --format json "${TARGETS[@]}"
modprobe vfio-pci
echo vfio-pci > /sys/bus/pci/devices/0000:00:01.0/driver_override
echo 0000:00:01.0 > /sys/bus/pci/drivers_probe
cp /proc/iomem "$OUT/iomem-bound.txt"
vs bound scan --format json -o "$OUT/bound.json" "${TARGETS[@]}"
'''


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return guest.boot("vm-start-hw", BODY, tmp_path_factory.mktemp("e2e-vm-start-hw"),
                      cmdline="intel_iommu=on iommu=pt modprobe.blacklist=bochs lockdown=integrity",
                      extra_args=["--uefi", "--qemu-arg", "-device", "--qemu-arg", "VGA"])


def test_efifb_in_the_vga_bar_goes_when_vfio_pci_takes_the_device(run):
    assert "efifb" in run.text("iomem.txt"), run.describe()
    before = run.report("scan.json").finding("VFIO-020", VGA)
    assert before["status"] == "pass" and "vfio-pci removes it when it takes this VGA device" in before["message"]
    assert any(e["source"] == "/proc/iomem" and e["value"].endswith(": efifb") for e in before["evidence"])
    assert run.report("scan.json").status("VFIO-020", NIC) == "pass"
    assert "efifb" not in run.text("iomem-bound.txt")  # what the rule relies on, seen on this kernel
    after = run.report("bound.json").finding("VFIO-020", VGA)
    assert after["status"] == "pass" and after["message"] == "no boot framebuffer registered (none in /proc/iomem)"


def test_as_nobody_the_hidden_addresses_are_a_skip_never_a_fail(run):
    assert run.rc_of("nobody") in (0, 1), run.text("nobody.err")
    findings = {(f["rule_id"], f["subject"]): f for f in json.loads(run.text("nobody.out"))["findings"]}
    vga = findings[("VFIO-020", VGA)]
    assert vga["status"] == "skip" and "hides every address from this user" in vga["message"]
    assert not [k for k, f in findings.items() if k[0] in RULES and f["status"] in ("fail", "error")]


def test_reserved_regions_bars_and_lockdown_as_the_kernel_shows_them(run):
    report = run.report("scan.json")
    assert "direct-relaxable" in run.text("reserved-regions.txt")
    for subject in (VGA, NIC, AHCI):
        assert report.status("VFIO-021", subject) == "pass"
        assert report.status("VFIO-022", subject) == "pass"
    assert "direct-relaxable, msi" in report.finding("VFIO-022", AHCI)["message"]
    assert run.text("lockdown.txt").strip() == "none [integrity] confidentiality"
    lockdown = report.finding("VFIO-023")
    assert lockdown["status"] == "pass" and lockdown["message"].startswith("kernel lockdown is on (integrity)")
