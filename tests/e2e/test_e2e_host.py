"""Host rules on a real kernel: Debian's 6.1 booted under QEMU with VT-d, AMD-Vi or no IOMMU.

One boot per scenario (module-scoped fixtures); in each, the guest loads the vfio modules (as a
prepared host has them), writes the kernel's own view (cmdline, dmesg, ACPI tables, IOMMU units
and groups) beside one ``vfio-scan scan`` that writes the JSON report (validated against the
schema), the JUnit report and the remediation script, and dry-runs that script. The tests
assert the exact status of every host rule, and what the kernel said that makes it right.
"""

import xml.etree.ElementTree as ET

import pytest

import guest

pytestmark = pytest.mark.e2e

HOST_RULES = ("VFIO-001", "VFIO-002", "VFIO-003", "VFIO-004", "VFIO-005", "VFIO-006", "VFIO-007")
DEVICE_RULES = ("VFIO-010", "VFIO-011", "VFIO-012", "VFIO-013", "VFIO-014", "VFIO-015")

HOST_BODY = r'''
ground_truth
modprobe -a vfio vfio_iommu_type1 vfio_pci   # loaded by hand: nothing loads them at the next boot yet
vs modules-by-hand scan --rule VFIO-007 --format json -o "$OUT/modules-by-hand.json"
mkdir -p /etc/modules-load.d   # ... and at every boot, as on a host prepared for VFIO
printf '%s\n' vfio vfio_iommu_type1 vfio_pci > /etc/modules-load.d/vfio.conf
if [ "${E2E_GRUB:-0}" = 1 ]; then
    # A GRUB boot stack with the running command line, and an update-grub that only logs its calls,
    # so the command-line fix the script makes can be applied and looked at.
    mkdir -p /etc/default
    printf '%s\n' 'GRUB_DEFAULT=0' 'GRUB_TIMEOUT=5' 'GRUB_DISTRIBUTOR=Debian' \
        "GRUB_CMDLINE_LINUX_DEFAULT='quiet $E2E_GRUB_CMDLINE'" 'GRUB_CMDLINE_LINUX=""' > /etc/default/grub
    cp /etc/default/grub "$OUT/grub-before"
    printf '#!/bin/sh\necho "update-grub $*" >> /out/update-grub.log\n' > /usr/sbin/update-grub
    chmod 755 /usr/sbin/update-grub
    : > "$OUT/update-grub.log"
fi
vs scan scan --format json -o "$OUT/scan.json" --validate --junit "$OUT/scan.xml" --script "$OUT/fix.sh"
step fix-dry bash "$OUT/fix.sh"
if [ "${E2E_GRUB:-0}" = 1 ]; then
    step fix-apply1 env DRY_RUN=0 bash "$OUT/fix.sh"
    cp /etc/default/grub "$OUT/grub-after1"
    step fix-apply2 env DRY_RUN=0 bash "$OUT/fix.sh"
    cp /etc/default/grub "$OUT/grub-after2"
    for run in /var/backups/vfio-scan/*/; do step undo env DRY_RUN=0 bash "${run}undo.sh"; break; done
    cp /etc/default/grub "$OUT/grub-undone"
fi
'''

SCENARIOS = {
    "intel-on-pt": dict(cmdline="intel_iommu=on iommu=pt"),
    "intel-default": dict(cmdline=""),
    "intel-off": dict(cmdline="intel_iommu=off", env={"E2E_GRUB": "1", "E2E_GRUB_CMDLINE": "intel_iommu=off"}),
    "no-iommu-device": dict(cmdline="intel_iommu=on", iommu="none"),
    "amd-on-pt": dict(cmdline="amd_iommu=on iommu=pt", iommu="amd"),
}

#: The exact status of every host rule in each scenario.
EXPECTED = {
    # No VT-x under TCG and no /dev/kvm: VFIO-001 fails, honestly. IR runs in xapic mode: VFIO-006 passes.
    "intel-on-pt": dict.fromkeys(HOST_RULES, "pass") | {"VFIO-001": "fail"},
    # Debian turns VT-d on by itself: no flag demanded.
    "intel-default": dict.fromkeys(HOST_RULES, "pass") | {"VFIO-001": "fail"},
    # DMAR table still there, VT-d off: no groups. IRQ remapping stays on (the kernel keeps it).
    "intel-off": dict.fromkeys(HOST_RULES, "pass") | {"VFIO-001": "fail", "VFIO-004": "fail", "VFIO-005": "fail"},
    # No IOMMU at all though intel_iommu=on asks for one: no IR either, which follows from VFIO-005.
    "no-iommu-device": dict.fromkeys(HOST_RULES, "pass") | {"VFIO-001": "fail", "VFIO-002": "fail",
                                                            "VFIO-005": "fail", "VFIO-006": "skip"},
    # The AMD flavour has svm and kvm_amd makes /dev/kvm; amd_iommu=on is an invalid token.
    "amd-on-pt": dict.fromkeys(HOST_RULES, "pass") | {"VFIO-004": "warn"},
}
READINESS = {"intel-on-pt": "NOT_READY", "intel-default": "NOT_READY", "intel-off": "NOT_READY",
             "no-iommu-device": "NOT_READY", "amd-on-pt": "READY_WITH_WARNINGS"}


BOOTS = guest.Scenarios(HOST_BODY, SCENARIOS)
booted, by_name = BOOTS.booted, BOOTS.fixture


@pytest.fixture(scope="module", params=list(SCENARIOS))
def run(request, tmp_path_factory):
    return booted(request.param, tmp_path_factory)


# -- every scenario -----------------------------------------------------------------------------

def test_host_rule_statuses_are_exact(run):
    report = run.report("scan.json")
    got = {rule: report.status(rule) for rule in HOST_RULES}
    assert got == EXPECTED[run.name], f"{run.name}\n{run.describe()}"
    assert report.readiness == READINESS[run.name]
    assert run.rc_of("scan") == (0 if READINESS[run.name] != "NOT_READY" else 1), run.text("scan.err")
    assert run.text("scan.err") == ""


def test_without_targets_the_device_rules_skip_with_the_reason(run):
    report = run.report("scan.json")
    for rule in DEVICE_RULES:
        finding = report.finding(rule, "host")
        assert finding["status"] == "skip" and "no device targets" in finding["message"]


def test_the_report_is_about_the_guest_kernel(run):
    doc = run.json("scan.json")
    assert doc["host"]["kernel"].startswith("6.1.0-") and doc["host"]["kernel"].endswith("-amd64")
    assert doc["host"]["source"] == "live"
    assert doc["host"]["cpu_vendor"] == ("amd" if run.name.startswith("amd") else "intel")
    config = run.report("scan.json").finding("VFIO-003")
    assert config["evidence"][0]["source"] == f"/boot/config-{doc['host']['kernel']}"


def test_vfio_modules_seen_loaded(run):
    finding = run.report("scan.json").finding("VFIO-007")
    assert finding["status"] == "pass"
    for name in ("vfio (loaded)", "vfio_pci (loaded)", "vfio_iommu_type1 (loaded)"):
        assert name in finding["message"]
    assert {"source": "loads vfio_pci at boot", "value": "/etc/modules-load.d/vfio.conf lists vfio_pci"} \
        in finding["evidence"]


def test_modules_loaded_by_hand_are_lost_at_next_boot(run):
    """The real kernel's /proc/modules with nothing in /etc that loads vfio_pci again."""
    finding = run.report("modules-by-hand.json").finding("VFIO-007")
    assert run.rc_of("modules-by-hand") == 1, run.text("modules-by-hand.err")
    assert finding["status"] == "fail"
    assert finding["message"].startswith("works now, lost at next boot: vfio (loaded)")
    assert run.json("modules-by-hand.json")["summary"]["lost_at_next_boot"] == 1


def test_iommu_active_agrees_with_sysfs(run):
    finding = run.report("scan.json").finding("VFIO-005")
    groups = run.text("iommu-groups.txt").split()
    units = run.text("iommu-units.txt").split()
    if finding["status"] == "pass":
        assert groups and units
        assert f"{len(groups)} IOMMU groups" in finding["message"]
        assert f"units: {' '.join(units)}" in finding["message"]
    else:
        assert not groups and not units


def test_junit_has_a_testcase_per_finding_and_a_failure_per_fail(run):
    doc = run.json("scan.json")
    root = ET.fromstring(run.text("scan.xml"))
    assert root.tag == "testsuites"
    cases = root.findall("./testsuite/testcase")
    assert len(cases) == len(doc["findings"])
    fails = sorted(c.get("name").split()[0] for c in cases if c.find("failure") is not None)
    assert fails == sorted(f["rule_id"] for f in doc["findings"] if f["status"] == "fail")


def test_the_remediation_script_dry_runs(run):
    assert run.rc_of("fix-dry") == 0, run.text("fix-dry.err")
    assert "Run 'vfio-scan scan' again" in run.text("fix-dry.out")
    for line in run.text("fix-dry.out").splitlines():
        assert not line.startswith("+ "), f"a dry run acted: {line}"


# -- intel_iommu=on iommu=pt ---------------------------------------------------------------------

intel_on_pt = by_name("intel-on-pt")


def test_no_vtx_in_the_emulated_cpu_is_an_honest_fail(intel_on_pt):
    finding = intel_on_pt.report("scan.json").finding("VFIO-001")
    assert intel_on_pt.text("dev-kvm.txt").strip() == "absent"
    assert " vmx" not in intel_on_pt.text("cpuinfo.txt")
    assert finding["status"] == "fail"
    assert "does not advertise vmx" in finding["message"] and "virtual machine" in finding["message"]
    assert {"source": "/dev/kvm", "value": "<missing>"} in finding["evidence"]
    # kvm_intel cannot load without VT-x: the only automated-looking step is manual, so the
    # script never runs a modprobe that fails (it did, and stopped the script, before this was fixed)
    assert all(step["manual"] for step in finding["remediation"])
    assert "modprobe kvm_intel" not in intel_on_pt.text("fix-dry.out")
    assert "NO AUTOMATED FIX: VFIO-001" in intel_on_pt.text("fix.sh")


def test_interrupt_remapping_in_xapic_mode_counts_as_on(intel_on_pt):
    finding = intel_on_pt.report("scan.json").finding("VFIO-006")
    assert "DMAR-IR: Enabled IRQ remapping in xapic mode" in intel_on_pt.text("dmesg.txt")
    assert finding["status"] == "pass" and finding["message"] == "interrupt remapping is on"
    values = {e["source"]: e["value"] for e in finding["evidence"]}
    assert values["kernel log"] == "DMAR-IR: Enabled IRQ remapping in xapic mode"
    assert "IR-" in values["/proc/interrupts"] and not values["/proc/interrupts"].startswith("0 of")


def test_intel_iommu_on_is_seen_as_the_request(intel_on_pt):
    finding = intel_on_pt.report("scan.json").finding("VFIO-004")
    assert "intel_iommu=on iommu=pt" in intel_on_pt.text("cmdline.txt")
    assert finding["message"] == "intel_iommu=on requests Intel VT-d"  # iommu=pt set: no suggestion
    assert finding["remediation"] == []


def test_firmware_table_is_dmar(intel_on_pt):
    finding = intel_on_pt.report("scan.json").finding("VFIO-002")
    assert "DMAR" in intel_on_pt.text("acpi-tables.txt").split()
    assert finding["message"] == "the firmware exposes DMAR (Intel VT-d)"


# -- no command-line flag ------------------------------------------------------------------------

intel_default = by_name("intel-default")


def test_debian_default_on_vtd_needs_no_flag(intel_default):
    report = intel_default.report("scan.json")
    cmdline = intel_default.text("cmdline.txt")
    assert "intel_iommu" not in cmdline and "iommu=" not in cmdline
    # the kernel log has no "DMAR: IOMMU enabled" without the flag, yet VT-d runs
    assert "DMAR: IOMMU enabled" not in intel_default.text("dmesg.txt")
    assert intel_default.text("iommu-groups.txt").split()
    cmd = report.finding("VFIO-004")
    assert cmd["status"] == "pass" and cmd["remediation"] == []
    assert "CONFIG_INTEL_IOMMU_DEFAULT_ON_INTGPU_OFF=y" in cmd["message"]
    assert "iommu=pt is not set (optional" in cmd["message"]
    assert report.status("VFIO-005") == "pass"
    assert "VFIO-004" not in intel_default.text("fix.sh")


# -- intel_iommu=off -----------------------------------------------------------------------------

intel_off = by_name("intel-off")


def test_intel_iommu_off_fails_with_the_command_line_fix(intel_off):
    report = intel_off.report("scan.json")
    assert report.readiness == "NOT_READY"
    cmd = report.finding("VFIO-004")
    assert cmd["status"] == "fail" and cmd["observed"] == "intel_iommu=off"
    actions = [s["action"] for s in cmd["remediation"] if (s.get("action") or {}).get("kind") == "kernel-cmdline"]
    assert len(actions) == 1, report.show("VFIO-004")
    assert actions[0]["add"] == ["intel_iommu=on"] and actions[0]["remove"] == ["intel_iommu=off"]
    assert actions[0]["stack"] == "grub" and actions[0]["config_file"] == "/etc/default/grub"
    assert any(s["requires_reboot"] for s in cmd["remediation"])


def test_intel_iommu_off_keeps_the_dmar_table_and_kills_the_groups(intel_off):
    report = intel_off.report("scan.json")
    assert "DMAR" in intel_off.text("acpi-tables.txt").split()
    assert "DMAR: IOMMU disabled" in intel_off.text("dmesg.txt")
    assert report.status("VFIO-002") == "pass"
    active = report.finding("VFIO-005")
    assert active["status"] == "fail" and "see VFIO-004" in active["message"]
    assert [s["action"] for s in active["remediation"]] == [{"kind": "see-rule", "rules": ["VFIO-004"]}]
    # "iommu: Default domain type: Translated" is printed with VT-d off: shown, marked as not evidence
    translated = [e["value"] for e in active["evidence"] if "Default domain type" in e["value"]]
    assert translated and all("not evidence" in v for v in translated)


def test_intel_iommu_off_command_line_fix_applies_once(intel_off):
    assert intel_off.rc_of("fix-apply1") == 0, intel_off.text("fix-apply1.err")
    # single quotes, as a person may write them: the parameter lands inside them, the off goes
    assert "GRUB_CMDLINE_LINUX_DEFAULT='quiet intel_iommu=off'" in intel_off.text("grub-before")
    assert "-GRUB_CMDLINE_LINUX_DEFAULT='quiet intel_iommu=off'" in intel_off.text("fix-dry.out")
    after = [line for line in intel_off.text("grub-after1").splitlines()
             if line.startswith("GRUB_CMDLINE_LINUX_DEFAULT=")]
    assert after == ["GRUB_CMDLINE_LINUX_DEFAULT='intel_iommu=on quiet'"], after
    assert "wrote /etc/default/grub" in intel_off.text("fix-apply1.out")
    assert "reboot" in intel_off.text("fix-apply1.out").lower()
    # a second run changes nothing
    assert intel_off.rc_of("fix-apply2") == 0
    assert intel_off.text("grub-after2") == intel_off.text("grub-after1")
    assert not [line for line in intel_off.text("fix-apply2.out").splitlines() if line.startswith(("+ ", "wrote "))]
    # the undo script puts the file back and applies it again
    assert intel_off.rc_of("undo") == 0, intel_off.text("undo.err")
    assert intel_off.text("grub-undone") == intel_off.text("grub-before")
    assert intel_off.text("update-grub.log").splitlines() == ["update-grub ", "update-grub "], \
        "update-grub runs once for the fix, once for the undo"


# -- no IOMMU device, intel_iommu=on ---------------------------------------------------------------

no_iommu = by_name("no-iommu-device")


def test_no_iommu_device_fails_firmware_iommu_and_the_decoy_is_marked(no_iommu):
    report = no_iommu.report("scan.json")
    assert "DMAR" not in no_iommu.text("acpi-tables.txt").split()
    decoy = [line for line in no_iommu.text("dmesg.txt").splitlines() if "DMAR: IOMMU enabled" in line]
    assert decoy, "the kernel prints 'DMAR: IOMMU enabled' for intel_iommu=on even without an IOMMU"
    firmware = report.finding("VFIO-002")
    assert firmware["status"] == "fail" and "no ACPI DMAR table" in firmware["message"]
    marked = [e["value"] for e in firmware["evidence"] if e["value"].startswith("DMAR: IOMMU enabled")]
    assert marked == ["DMAR: IOMMU enabled  (printed because intel_iommu=on was parsed; not evidence of an IOMMU)"]
    assert firmware["remediation"][0]["manual"] and "virtual IOMMU" in firmware["remediation"][0]["summary"]
    active = report.finding("VFIO-005")
    assert active["status"] == "fail" and "see VFIO-002" in active["message"]


def test_no_iommu_device_has_no_interrupt_remapping(no_iommu):
    finding = no_iommu.report("scan.json").finding("VFIO-006")
    assert "IRQ remapping" not in no_iommu.text("dmesg.txt")
    # no IOMMU, no remapping: the interrupt rule follows from VFIO-005 and offers no unsafe override
    assert finding["status"] == "skip" and finding["message"].startswith("follows from VFIO-005")
    assert not any("allow_unsafe_interrupts" in " ".join(s["commands"]) for s in finding["remediation"])


# -- AMD-Vi, amd_iommu=on iommu=pt ---------------------------------------------------------------

amd = by_name("amd-on-pt")


def test_amd_invalid_token_is_reported_while_the_iommu_is_active(amd):
    report = amd.report("scan.json")
    assert "AMD-Vi: Unknown option - 'on'" in amd.text("dmesg.txt")
    cmd = report.finding("VFIO-004")
    assert cmd["status"] == "warn" and cmd["message"].startswith("amd_iommu=on is not a valid option")
    assert {"source": "kernel log", "value": "AMD-Vi: Unknown option - 'on'"} in cmd["evidence"]
    actions = [s["action"] for s in cmd["remediation"] if s.get("action")]
    assert actions and actions[0]["remove"] == ["amd_iommu=on"] and actions[0]["add"] == []
    active = report.finding("VFIO-005")
    assert active["status"] == "pass" and "units: ivhd0" in active["message"]
    assert report.finding("VFIO-002")["message"] == "the firmware exposes IVRS (AMD-Vi)"


def test_amd_flavour_has_kvm(amd):
    assert amd.text("dev-kvm.txt").strip() == "present"
    finding = amd.report("scan.json").finding("VFIO-001")
    assert finding["status"] == "pass" and "svm" in finding["message"]


def test_amd_interrupt_remapping(amd):
    finding = amd.report("scan.json").finding("VFIO-006")
    assert "AMD-Vi: Interrupt remapping enabled" in amd.text("dmesg.txt")
    assert finding["status"] == "pass"
