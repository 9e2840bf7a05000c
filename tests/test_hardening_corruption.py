"""The corruption matrix: every file a scan reads, in turn, broken in each of several ways.

The list of paths is not written here: a scan of the complete ``workstation`` tree (with device
targets, so the device rules read too) is recorded through :class:`hardening.RecordingHost`, and
every path it read, listed or resolved is then made empty, binary, huge (one byte over the cap
it is read with), a directory, a dangling link, a link loop and a link out of the root. For each:

* the scan completes (in bounded time) and the report renders in every format;
* exit code 0, 1 or 3, and no rule errors (a rule that raises on garbage is a bug);
* every finding that changed against the unbroken tree is a ``skip`` that carries the reason
  (the file or its device, and what is wrong with it), or one of the few *legitimate readings*
  listed below, where the broken file really does say something (an empty ACPI tables
  directory has no DMAR table);
* the file a link out of the root points to is never read.

Sampling keeps it fast: the files the host rules and the targets depend on get every kind,
every other path (devices and groups that are not targets, tool lookups) three kinds in
rotation, so each kind still meets each attribute of some device. A sample also goes through
the real CLI in a subprocess, to see stderr without a traceback.
"""

from __future__ import annotations

import json
import re

import pytest

from clihelpers import DEVICE_IDS, run_cli
from hardening import (DEVICES, KINDS, REASON_WORDS, VFS, Breaker, RecordingHost, builtin_rules, fingerprint, scan,
                       time_limit)
from hosttree import workstation
from scanner.engine.runner import _malformed
from scanner.host import DEFAULT_CAP
from scanner.engine.plugins import load_plugins

SECRET = "OUTSIDE-THE-ROOT-SECRET-7f3a"
PCI = "/sys/bus/pci/devices/"
GROUPS = "/sys/kernel/iommu_groups/"

#: Broken files that legitimately change a verdict: (path pattern, kind) -> {rule id: status}.
#: Each is a true reading of what the broken file says, not a guess about what it could not read.
LEGITIMATE = {
    # a missing /dev/kvm is what VFIO-001 checks (the message names the reason: missing, loop)
    (r"/dev/kvm", "dangling|loop|outside"): {"VFIO-001": "fail"},
    # an empty ACPI tables directory has no DMAR table
    (r"/sys/firmware/acpi/tables", "directory"): {"VFIO-002": "fail"},
    # no (or an empty) iommu_groups directory: the IOMMU made no groups
    (r"/sys/kernel/iommu_groups", "directory|dangling|outside"): {"VFIO-005": "fail"},
    # an empty /proc/modules: nothing is loaded
    (r"/proc/modules", "empty"): {"VFIO-007": "fail"},
    # an empty /etc/modules, or a link to nothing, loads nothing at boot: vfio_pci, loaded now, is not loaded again
    (r"/etc/modules", "empty|dangling|outside"): {"VFIO-007": "fail"},
    # an empty /sys/bus/pci/devices: the selected devices do not exist
    (r"/sys/bus/pci/devices", "directory"): {"VFIO-010": "fail"},
    # an empty reset_method file: every reset method is disabled
    (r"/sys/bus/pci/devices/[^/]+/reset_method", "empty"): {"VFIO-014": "warn"},
}


def legitimate(path, kind, rule_id, status) -> bool:
    return any(re.fullmatch(p, path) and re.fullmatch(k, kind) and allowed.get(rule_id) == status
               for (p, k), allowed in LEGITIMATE.items())


@pytest.fixture(scope="module")
def matrix(tmp_path_factory):
    """The tree, what its scan read, the unbroken report, and the breaker."""
    base = tmp_path_factory.mktemp("matrix")
    tree = workstation(base / "ws")
    outside = base / "outside" / "secret"
    outside.parent.mkdir()
    outside.write_text(SECRET + "\n")
    host, report = scan(tree.root, host_class=RecordingHost)
    assert report.exit_code == 1 and not any(f.status == "error" for f in report.findings)
    def contents():  # breaking and restoring a file touches its directory's mtime, nothing else
        return {path: (what, mode, size) for path, (what, _mtime, mode, size, *_rest) in fingerprint(tree.root).items()
                if path != "."}

    before = contents()
    data = {"tree": tree, "seen": host.seen, "caps": host.caps, "baseline": report,
            "breaker": Breaker(tree.root, outside)}
    yield data
    assert contents() == before, "the matrix did not put the tree back as it was"


def _device_of(path):
    return path[len(PCI):].split("/")[0] if path.startswith(PCI) and len(path) > len(PCI) else None


def _group_of(path):
    return path[len(GROUPS):].split("/")[0] if path.startswith(GROUPS) and len(path) > len(GROUPS) else None


def important(path, baseline) -> bool:
    """Paths the verdicts hang on: host files, the targets and their group mates, their groups."""
    targets = set(baseline.targets)
    facts_groups = {"1"}  # the GPU's IOMMU group in the workstation tree, shared with its audio function
    mates = targets | {"0000:01:00.1"}
    device, group = _device_of(path), _group_of(path)
    if device is not None:
        return device in mates
    if group is not None:
        return group in facts_groups
    if re.match(r"^/(usr/)?s?bin/", path):  # looking for a tool: absent in the tree
        return False
    return True


def cells(matrix):
    """(path, kind) pairs to try: every kind on important paths, three in rotation on the rest."""
    chosen, others = [], []
    for path in sorted(matrix["seen"]):
        if path == "/":
            continue
        if important(path, matrix["baseline"]):
            chosen += [(path, kind) for kind in KINDS]
        else:
            others.append(path)
    for i, path in enumerate(others):
        chosen += [(path, KINDS[(3 * i + j) % len(KINDS)]) for j in range(3)]
    return chosen


def test_the_recording_saw_what_every_rule_reads(matrix):
    seen = matrix["seen"]
    # host rules, device rules and the boot stack all read through the host
    for path in ("/proc/cmdline", "/proc/cpuinfo", "/proc/modules", "/proc/interrupts", "/var/log/dmesg",
                 "/sys/firmware/acpi/tables", "/sys/kernel/iommu_groups", "/sys/class/iommu", "/dev/kvm",
                 "/etc/default/grub", "/sys/bus/pci/devices", "/dev/vfio",
                 "/sys/bus/pci/devices/0000:01:00.0/driver", "/sys/bus/pci/devices/0000:01:00.0/boot_vga",
                 "/sys/bus/pci/devices/0000:01:00.0/reset_method",
                 "/sys/bus/pci/devices/0000:02:00.0/sriov_numvfs", "/sys/kernel/iommu_groups/1/devices"):
        assert path in seen, path
    assert len(seen) > 150
    every = {p for p, _ in cells(matrix)}
    assert every == set(seen) - {"/"}  # every read path is broken at least once
    kinds = {}
    for path, kind in cells(matrix):
        kinds.setdefault(path, set()).add(kind)
    assert all(len(k) >= 3 for k in kinds.values())
    assert kinds["/proc/cmdline"] == set(KINDS)


def _reported(finding) -> str:
    return " ".join([finding.message, finding.observed] + [f"{e.source} {e.value}" for e in finding.evidence])


def check_cell(matrix, path, kind, report):
    """Everything that must hold of a scan of the tree with ``path`` broken as ``kind``; problems as text."""
    problems = []
    where = f"{path} [{kind}]"
    if report.exit_code not in (0, 1, 3):
        problems.append(f"{where}: exit code {report.exit_code}")
    baseline = {(f.rule_id, f.subject): f for f in matrix["baseline"].findings}
    device = _device_of(path)
    tokens = [path] + ([device] if device else [])
    for f in report.findings:
        if _malformed(f):
            problems.append(f"{where}: malformed finding {f.rule_id} {f.subject}: {_malformed(f)}")
        if f.status == "error":
            problems.append(f"{where}: {f.rule_id} {f.subject} errored: {f.message}")
            continue
        if SECRET in _reported(f):
            problems.append(f"{where}: {f.rule_id} read a file outside the root")
        before = baseline.get((f.rule_id, f.subject))
        if before is not None and before.status == f.status:
            continue
        if legitimate(path, kind, f.rule_id, f.status):
            continue
        if f.status != "skip":
            problems.append(f"{where}: {f.rule_id} {f.subject} went from {before.status if before else None} to "
                            f"{f.status} on a broken file: {f.message[:200]}")
            continue
    # the reason is told: some finding that changed names the file (or its device) and what is wrong
    changed = [f for f in report.findings
               if (baseline.get((f.rule_id, f.subject)) is None
                   or baseline[(f.rule_id, f.subject)].status != f.status) and f.status == "skip"]
    if changed and not any(any(t in _reported(f) for t in tokens) and any(w in _reported(f) for w in REASON_WORDS[kind])
                           for f in changed):
        # a consequence of another skip (no target left once /sys/bus/pci/devices is gone) is fine
        # when some other finding tells the reason
        if not any(any(t in _reported(f) for t in tokens) for f in report.findings):
            problems.append(f"{where}: skips without the reason: " + " | ".join(f.message[:120] for f in changed))
    return problems


def _run_cells(matrix, kinds):
    breaker = matrix["breaker"]
    problems = []
    count = 0
    for path, kind in cells(matrix):
        if kind not in kinds:
            continue
        cap = matrix["caps"].get(path, DEFAULT_CAP)
        with breaker.broken(path, kind, cap=cap):
            with time_limit(20, f"scan with {path} [{kind}]"):
                _, report = scan(matrix["tree"].root)
        problems += check_cell(matrix, path, kind, report)
        count += 1
    return count, problems


@pytest.mark.parametrize("kind", KINDS)
def test_corruption_matrix(matrix, kind):
    count, problems = _run_cells(matrix, {kind})
    assert count > 40
    assert not problems, f"{len(problems)} problem(s):\n" + "\n".join(problems[:40])


# -- what the Host layer says for each kind, on one file every rule cares about ---------------------

@pytest.mark.parametrize("kind, rule_id, reason", [
    ("empty", "VFIO-001", "garbled: empty"),
    ("binary", "VFIO-001", "garbled: binary data"),
    ("huge", "VFIO-001", "too large"),
    ("directory", "VFIO-001", "not a regular file"),
    ("dangling", "VFIO-001", "missing"),
    ("loop", "VFIO-001", "symlink loop"),
    ("outside", "VFIO-001", "missing"),
])
def test_each_kind_gives_its_reason_on_cpuinfo(matrix, kind, rule_id, reason):
    with matrix["breaker"].broken("/proc/cpuinfo", kind, cap=matrix["caps"]["/proc/cpuinfo"]):
        _, report = scan(matrix["tree"].root)
    (finding,) = [f for f in report.findings if f.rule_id == rule_id]
    assert finding.status == "skip"
    assert "/proc/cpuinfo" in finding.message and reason in finding.message


@pytest.mark.parametrize("path, kind", [
    ("/sys/bus/pci/devices/0000:01:00.1", "directory"),        # an empty directory is no device
    ("/sys/bus/pci/devices/0000:01:00.1", "loop"),
    ("/sys/bus/pci/devices/0000:01:00.1/driver", "dangling"),  # a driver link into a tree that lacks it
    ("/sys/bus/pci/devices/0000:01:00.1/driver", "empty"),     # a plain file is no driver named "driver"
])
def test_an_unreadable_group_mate_is_not_an_unbound_one(matrix, path, kind):
    """The GPU's audio function on snd_hda_intel blocks group 1; unreadable, it must not turn into a pass."""
    with matrix["breaker"].broken(path, kind):
        _, report = scan(matrix["tree"].root)
    finding = next(f for f in report.findings if f.rule_id == "VFIO-012" and f.subject == "0000:01:00.0")
    assert finding.status == "skip", finding.message
    assert "0000:01:00.1" in finding.message and "cannot be read" in finding.message


@pytest.mark.parametrize("path, kind", [
    ("/sys/bus/pci/devices/0000:01:00.0", "binary"),
    ("/sys/bus/pci/devices/0000:01:00.0/iommu_group", "loop"),
    ("/sys/bus/pci/devices/0000:01:00.0/driver", "directory"),
])
def test_an_unreadable_target_is_skipped_by_every_device_rule(matrix, path, kind):
    with matrix["breaker"].broken(path, kind):
        _, report = scan(matrix["tree"].root)
    mine = [f for f in report.findings if f.subject == "0000:01:00.0"]
    assert {f.rule_id for f in mine} == set(DEVICE_IDS)
    for f in mine:
        assert f.status == "skip", (f.rule_id, f.message)
        assert "cannot read this device's state" in f.message and path in f.message
    # the other targets are judged as before
    assert next(f for f in report.findings if f.rule_id == "VFIO-015" and f.subject == "0000:00:02.0").status == "warn"


def test_gzip_bomb_in_config_gz_is_refused_quickly(tmp_path):
    """/proc/config.gz is decompressed with the same cap as any read, not into gigabytes."""
    import zlib

    tree = workstation(tmp_path / "ws")
    tree.remove("/boot/config-6.1.0-56-amd64")
    squeeze = zlib.compressobj(9, zlib.DEFLATED, 31)
    bomb = squeeze.compress(b"\0" * (64 << 20)) + squeeze.flush()  # 64 MiB of zeros in ~64 KiB
    assert len(bomb) < 200_000
    tree.write("/proc/config.gz", bomb)
    with time_limit(20, "scan with a gzip bomb"):
        _, report = scan(tree.root)
    (f,) = [f for f in report.findings if f.rule_id == "VFIO-003"]
    assert f.status == "skip"
    assert "/proc/config.gz (too large" in f.message


def test_modules_builtin_with_one_huge_line_is_parsed_in_linear_time(tmp_path):
    """A 4 MiB modules.builtin of one line (files read with the 16 MiB cap are parsed) once hung:
    searching for ``name.ko`` from every position of the line was quadratic."""
    tree = workstation(tmp_path / "ws")
    for name in ("modules.builtin", "modules.dep"):
        tree.write(f"/lib/modules/6.1.0-56-amd64/{name}", b"A" * (4 << 20))
    tree.write("/proc/cpuinfo", b"flags : " + b"vmx " * (1 << 20))
    with time_limit(30, "scan of 4 MiB one-line files"):
        _, report = scan(tree.root)
    assert not any(f.status == "error" for f in report.findings)


# -- the same through the real CLI: exit codes and no traceback ------------------------------------

CLI_SAMPLE = [
    ("/proc/cmdline", "binary", "json"),
    ("/proc/cpuinfo", "huge", "table"),
    ("/sys/firmware/acpi/tables", "loop", "junit"),
    ("/sys/kernel/iommu_groups", "empty", "json"),
    ("/sys/bus/pci/devices/0000:01:00.0", "directory", "table"),
    ("/sys/bus/pci/devices/0000:01:00.1/driver", "dangling", "junit"),
    ("/boot/config-6.1.0-56-amd64", "outside", "json"),
    ("/sys/bus/pci/devices", "binary", "table"),
]


@pytest.mark.parametrize("path, kind, fmt", CLI_SAMPLE)
def test_corruption_through_the_cli(matrix, path, kind, fmt):
    args = ["scan", "--root", matrix["tree"].root, "--format", fmt, "--verbose"]
    for sel in DEVICES:
        args += ["--device", sel]
    for req in VFS:
        args += ["--vfs", req]
    with matrix["breaker"].broken(path, kind, cap=matrix["caps"].get(path, DEFAULT_CAP)):
        proc = run_cli(*args, VFIO_SCAN_DISABLE_PLUGINS="1")
    assert proc.returncode in (0, 1, 3), proc.stderr
    assert "Traceback" not in proc.stderr and "Traceback" not in proc.stdout
    assert proc.stderr == ""
    assert SECRET not in proc.stdout
    if fmt == "json":
        doc = json.loads(proc.stdout)
        assert not any(f["status"] == "error" for f in doc["findings"])
    assert proc.stdout.strip()


def test_every_format_renders_every_broken_host_file(matrix):
    """The renderers (table, json with its schema, junit, script) take every host-file report."""
    from scanner.output.formats import validate_document

    registry = load_plugins(autoload=False)
    renderers = {name: spec.load() for name, spec in registry.formats.items()}
    assert {"table", "json", "junit", "script"} <= set(renderers)
    breaker = matrix["breaker"]
    count = 0
    for path, kind in cells(matrix):
        if _device_of(path) or _group_of(path) or not important(path, matrix["baseline"]):
            continue
        if kind not in ("binary", "loop"):
            continue
        with breaker.broken(path, kind, cap=matrix["caps"].get(path, DEFAULT_CAP)):
            _, report = scan(matrix["tree"].root, rules=builtin_rules())
        validate_document(report.to_dict())
        for name, render in renderers.items():
            text = render([report], {"verbose": True, "validate": False, "fail_on": "fail"})
            assert isinstance(text, str) and text.strip(), (name, path, kind)
            assert SECRET not in text
        count += 1
    assert count > 15
