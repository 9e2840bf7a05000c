"""Waivers, severities and the merge with the command line, as pure functions (no files, no clock)."""

from __future__ import annotations

from datetime import date, timedelta

import pytest

from scanner.engine.model import Finding
from scanner.policy.model import Policy, Waiver, apply_severities, apply_waivers, merge_cli
from scanner.engine.report import Report
from scanner.facts.targets import Selector, parse_all, policy_selector, resolve

TODAY = date(2026, 6, 15)
GPU, AUDIO, NIC = "0000:01:00.0", "0000:01:00.1", "0000:02:00.0"


def finding(rule_id, status, subject="host", severity="medium"):
    return Finding(status=status, message=f"{rule_id} {status}", subject=subject, severity=severity,
                   rule_id=rule_id, rule="some-rule", title="Some rule")


def waiver(rule="VFIO-015", **kw):
    kw.setdefault("justification", "accepted by ops (OPS-1)")
    return Waiver(rule=rule, **kw)


def statuses(result):
    return [(f.rule_id, f.subject, f.status) for f in result.findings]


# -- what a waiver covers ---------------------------------------------------------------------------

def test_a_waived_finding_keeps_everything_and_records_the_waiver():
    original = Finding.fail("boot display", subject=GPU, observed="boot_vga 1", expected="boot_vga != 1",
                            severity="medium", rule_id="VFIO-015", rule="boot-vga", title="t")
    w = waiver(subject=GPU, expires=TODAY, owner="ws team", source="p.toml: waivers[0] (line 3)")
    (out,) = apply_waivers([original], [w], "ws1", TODAY).findings
    assert out.status == "waived" and out.original_status == "fail"
    assert (out.message, out.observed, out.expected, out.severity) == (original.message, "boot_vga 1", "boot_vga != 1",
                                                                       "medium")
    assert out.waiver == {"rule": "VFIO-015", "subject": GPU, "host": None, "justification": "accepted by ops (OPS-1)",
                          "expires": "2026-06-15", "owner": "ws team", "source": "p.toml: waivers[0] (line 3)"}
    assert out.to_dict()["status"] == "waived" and out.to_dict()["original_status"] == "fail"


def test_warn_is_waived_too_but_pass_skip_and_error_never():
    findings = [finding("VFIO-015", s, GPU) for s in ("warn", "pass", "skip", "error")]
    result = apply_waivers(findings, [waiver()], "h", TODAY)
    assert [f.status for f in result.findings] == ["waived", "pass", "skip", "error"]
    assert result.findings[0].original_status == "warn"


@pytest.mark.parametrize("subject, waived", [
    (None, {GPU, AUDIO, NIC}),  # no subject: every subject of the rule
    (GPU, {GPU}),
    ("0000:01:00.*", {GPU, AUDIO}),
    ("*:01:00.[1-7]", {AUDIO}),
    ("0000:0[12]:00.0", {GPU, NIC}),
    ("0000:03:00.0", set()),
])
def test_subject_globs(subject, waived):
    findings = [finding("VFIO-013", "fail", s) for s in (GPU, AUDIO, NIC)]
    result = apply_waivers(findings, [waiver("VFIO-013", subject=subject)], "h", TODAY)
    assert {f.subject for f in result.findings if f.status == "waived"} == waived
    assert bool(result.unused) == (not waived)


def test_subject_host_is_only_the_host_finding():
    findings = [finding("VFIO-006", "warn"), finding("VFIO-013", "fail", GPU)]
    result = apply_waivers(findings, [waiver("VFIO-006", subject="host")], "h", TODAY)
    assert statuses(result) == [("VFIO-006", "host", "waived"), ("VFIO-013", GPU, "fail")]


def test_other_rules_are_not_covered():
    result = apply_waivers([finding("VFIO-014", "fail", GPU)], [waiver("VFIO-015", subject=GPU)], "h", TODAY)
    assert statuses(result) == [("VFIO-014", GPU, "fail")]
    assert result.unused[0]["reason"] == "rule VFIO-015 did not run"


@pytest.mark.parametrize("pattern, hostname, applies", [
    ("gpu-*", "gpu-07", True),
    ("gpu-*", "GPU-07.lab.example.com", True),  # hostnames are not case-sensitive
    ("gpu-0[1-5]", "gpu-07", False),
    ("gpu07", "gpu07.lab.example.com", True),  # the short name matches too
    ("*.lab.example.com", "gpu07.lab.example.com", True),
    ("db-*", "gpu-07", False),
])
def test_host_globs(pattern, hostname, applies):
    result = apply_waivers([finding("VFIO-006", "warn")], [waiver("VFIO-006", host=pattern)], hostname, TODAY)
    assert (result.findings[0].status == "waived") == applies
    assert result.unused == [] and result.expired == []  # a waiver for other hosts is not this host's business


# -- expiry: the date is the last day the waiver applies -------------------------------------------

@pytest.mark.parametrize("expires, applies", [
    (TODAY - timedelta(days=1), False),  # yesterday: expired
    (TODAY, True),                       # today: still its last day
    (TODAY + timedelta(days=1), True),   # tomorrow
    (None, True),                        # no expiry
])
def test_expiry_yesterday_today_tomorrow(expires, applies):
    result = apply_waivers([finding("VFIO-015", "warn", GPU)], [waiver(expires=expires)], "h", TODAY)
    assert (result.findings[0].status == "waived") == applies
    assert len(result.expired) == (0 if applies else 1)


def test_an_expired_waiver_is_listed_with_what_it_no_longer_covers():
    findings = [finding("VFIO-015", "warn", GPU), finding("VFIO-015", "pass", AUDIO)]
    w = waiver(subject="0000:01:00.*", expires=date(2026, 1, 31), source="p.toml: waivers[0] (line 9)")
    result = apply_waivers(findings, [w], "h", TODAY)
    assert statuses(result) == [("VFIO-015", GPU, "warn"), ("VFIO-015", AUDIO, "pass")]
    assert result.expired == [{"rule": "VFIO-015", "subject": "0000:01:00.*", "host": None,
                               "justification": "accepted by ops (OPS-1)", "expires": "2026-01-31",
                               "source": "p.toml: waivers[0] (line 9)", "would_cover": [f"VFIO-015 {GPU}"]}]
    assert result.unused == []


def test_an_expired_waiver_is_not_also_unused():
    result = apply_waivers([finding("VFIO-015", "pass", GPU)], [waiver(expires=date(2020, 1, 1))], "h", TODAY)
    assert len(result.expired) == 1 and result.expired[0]["would_cover"] == [] and result.unused == []


def test_an_expired_waiver_falls_back_to_a_current_one():
    old = waiver(subject=GPU, expires=date(2026, 1, 1), justification="old")
    new = waiver(subject=GPU, expires=date(2026, 12, 31), justification="renewed")
    (out,) = apply_waivers([finding("VFIO-015", "warn", GPU)], [old, new], "h", TODAY).findings
    assert out.waiver["justification"] == "renewed"


# -- unused waivers --------------------------------------------------------------------------------

def test_unused_waivers_with_their_reason():
    findings = [finding("VFIO-015", "warn", GPU), finding("VFIO-006", "pass"), finding("VFIO-013", "fail", NIC)]
    waivers = [waiver(subject=GPU, justification="first"),
               waiver(subject="0000:01:*", justification="second"),   # shadowed by the first
               waiver("VFIO-006", justification="fixed since"),        # VFIO-006 passes now
               waiver("VFIO-013", subject=GPU, justification="other device"),
               waiver("VFIO-004", justification="rule not run")]
    result = apply_waivers(findings, waivers, "h", TODAY)
    assert result.findings[0].waiver["justification"] == "first"
    assert [(u["justification"], u["reason"]) for u in result.unused] == [
        ("second", "an earlier waiver already covers the same findings"),
        ("fixed since", "no failing or warning VFIO-006 finding on this host"),
        ("other device", f"no failing or warning VFIO-013 finding for subject {GPU} on this host"),
        ("rule not run", "rule VFIO-004 did not run"),
    ]
    assert statuses(result)[2] == ("VFIO-013", NIC, "fail")


# -- the verdict: waived findings do not fail the run ---------------------------------------------------

def report_of(findings, fail_on="fail"):
    return Report(host={"hostname": "h"}, findings=list(findings), started_at="2026-06-15T10:00:00+00:00",
                  duration_s=0.0, fail_on=fail_on)


@pytest.mark.parametrize("fail_on", ["fail", "warn", "info"])
def test_waived_findings_count_neither_for_readiness_nor_exit_code(fail_on):
    findings = [finding("VFIO-001", "pass"), finding("VFIO-002", "fail", severity="critical"),
                finding("VFIO-015", "warn", GPU)]
    before = report_of(findings, fail_on)
    assert before.exit_code == 1 and before.readiness == "NOT_READY"
    waivers = [waiver("VFIO-002", justification="lab"), waiver("VFIO-015", justification="console")]
    after = report_of(apply_waivers(findings, waivers, "h", TODAY).findings, fail_on)
    assert after.exit_code == 0 and after.readiness == "READY" and after.counts["waived"] == 2


def test_an_error_stays_an_error_whatever_the_waivers():
    findings = [finding("VFIO-005", "error")]
    report = report_of(apply_waivers(findings, [waiver("VFIO-005")], "h", TODAY).findings)
    assert report.exit_code == 3


# -- severities and the command line -----------------------------------------------------------------

def test_apply_severities_changes_every_finding_of_the_rule():
    findings = [finding("VFIO-006", "warn", severity="high"), finding("VFIO-006", "pass", severity="medium"),
                finding("VFIO-004", "fail", severity="high")]
    out = apply_severities(findings, {"VFIO-006": "critical", "VFIO-009": "low"})
    assert [f.severity for f in out] == ["critical", "critical", "high"]


def test_policy_apply_severities_then_waivers_and_reports_the_date():
    policy = Policy(file="p.toml", severity={"VFIO-002": "low"}, waivers=(waiver("VFIO-015"),), today=TODAY,
                    description="lab")
    findings, info = policy.apply([finding("VFIO-002", "fail", severity="critical"), finding("VFIO-015", "pass")], "h")
    assert findings[0].severity == "low" and findings[0].status == "fail"
    assert info == {"file": "p.toml", "date": "2026-06-15", "waivers": 1, "expired_waivers": [],
                    "unused_waivers": [dict(waiver("VFIO-015").to_dict(),
                                            reason="no failing or warning VFIO-015 finding on this host")],
                    "description": "lab"}
    assert Policy(severity={"VFIO-002": "low"}).apply([], "h") == ([], None)  # no file, no policy object


def test_policy_apply_uses_the_local_date_by_default():
    tomorrow = date.today() + timedelta(days=1)
    yesterday = date.today() - timedelta(days=1)
    policy = Policy(file="p", waivers=(waiver(expires=tomorrow), waiver(rule="VFIO-014", expires=yesterday)))
    findings, info = policy.apply([finding("VFIO-015", "warn"), finding("VFIO-014", "warn")], "h")
    assert [f.status for f in findings] == ["waived", "warn"] and len(info["expired_waivers"]) == 1


def test_merge_cli_the_command_line_wins():
    policy = Policy(file="p", only=("VFIO-001", "VFIO-002"), skip=("VFIO-014", "VFIO-015"),
                    severity={"VFIO-006": "critical", "VFIO-002": "high"}, fail_on="warn")
    assert merge_cli(policy) == policy
    merged = merge_cli(policy, only=["VFIO-015", "VFIO-004"], skip=["VFIO-007", "VFIO-014"],
                       severity={"VFIO-002": "low"}, fail_on="critical")
    assert merged.only == ("VFIO-015", "VFIO-004")  # --rule replaces the list ...
    assert merged.skip == ("VFIO-014", "VFIO-007")  # ... and runs VFIO-015 though the policy skips it
    assert merged.severity == {"VFIO-006": "critical", "VFIO-002": "low"} and merged.fail_on == "critical"
    assert merge_cli(None, skip=["VFIO-001"]) == Policy(skip=("VFIO-001",), severity={})


# -- targets: expected drivers and VF counts ----------------------------------------------------------

class Dev:
    def __init__(self, address, vendor, device, pci_class, sv=None, sd=None):
        self.address, self.vendor, self.device, self.pci_class = address, vendor, device, pci_class
        self.subsystem_vendor, self.subsystem_device = sv, sd

    @property
    def ids(self):
        return f"{self.vendor}:{self.device}"


DEVICES = {GPU: Dev(GPU, "10de", "2204", "030000", "1458", "403b"), AUDIO: Dev(AUDIO, "10de", "1aef", "040300"),
           NIC: Dev(NIC, "8086", "1521", "020000", "8086", "0001"), "0000:03:00.0": Dev("0000:03:00.0", "8086", "1521",
                                                                                     "020000", "15d9", "1521")}


@pytest.mark.parametrize("match, hits", [
    ({"vendor": "10de"}, [GPU, AUDIO]),
    ({"vendor": "10de", "class": "03"}, [GPU]),
    ({"class": "0x0403"}, [AUDIO]),
    ({"vendor": "8086", "device": "1521", "subsystem_vendor": "15d9"}, ["0000:03:00.0"]),
    ({"subsystem_vendor": "1458", "subsystem_device": "403B"}, [GPU]),
    ({"vendor": "1af4"}, []),
])
def test_match_selectors(match, hits):
    targets, unmatched = resolve([policy_selector(match=match)], {}, DEVICES)
    assert [t.address for t in targets] == hits and len(unmatched) == (0 if hits else 1)


def test_expected_driver_and_vfs_come_from_the_most_specific_selector():
    by_class = policy_selector(match={"class": "02"}, driver="vfio-pci")
    by_address = policy_selector(address="02:00.0", driver="igb", vfs=4)
    cli = parse_all(devices=["8086:1521"])[0]  # the command line names no driver
    targets, _ = resolve([by_class, by_address] + cli, {}, DEVICES)
    got = {t.address: (t.expected_driver, t.vfs, t.for_passthrough) for t in targets}
    assert got == {NIC: ("igb", 4, False), "0000:03:00.0": ("vfio-pci", None, True)}
    targets, _ = resolve([by_address], {NIC: 7}, DEVICES)  # --vfs wins over the policy's vfs
    assert targets[0].vfs == 7


def test_a_pf_with_vfs_and_no_driver_stays_on_the_host_and_a_vfio_variant_is_passed():
    pf = resolve([policy_selector(address=NIC, vfs=8)], {}, DEVICES)[0][0]
    assert pf.expected_driver is None and not pf.for_passthrough
    variant = resolve([policy_selector(address=NIC, driver="igb_vfio_pci")], {}, DEVICES)[0][0]
    assert variant.for_passthrough
    assert "expects it on igb" in resolve([policy_selector(address=NIC, driver="igb")], {}, DEVICES)[0][0] \
        .stays_on_host_reason()


def test_unmatched_match_selector_has_a_subject_without_blanks():
    _, (sel,) = resolve([policy_selector(match={"vendor": "1af4", "device": "1041"})], {}, DEVICES)
    assert isinstance(sel, Selector) and sel.text == "vendor=1af4,device=1041"
