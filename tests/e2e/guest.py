"""Run vfio-scan inside a real Linux kernel: one guest boot per scenario, through the QEMU harness.

The harness (``run-guest.sh``, see ``../shared/qemu-host/README.md``) boots Debian's packaged 6.1
kernel under QEMU/TCG on a q35 machine with an emulated VT-d or AMD-Vi IOMMU, an SR-IOV NVMe PF,
e1000e/e1000 NICs and a PCIe-to-PCI bridge, runs one command as root with the host's ``/`` visible
(read-only, under a throwaway overlay) and a writable ``/out`` shared back.

Where it is: ``$VFIO_SCAN_QEMU_HARNESS``, else ``<checkout>/../shared/qemu-host/run-guest.sh``.
Where it is missing, or cannot set itself up (it installs QEMU and fetches the kernel package
with apt as root: exit 125), the e2e tests are *skipped* with that reason — unless
``VFIO_SCAN_E2E=required`` (set by ``.ci/run``), where that skip is a *failure*.

A scenario is one guest script: the :data:`PROLOGUE` below plus the scenario's body. The body runs
every vfio-scan command the scenario needs through ``vs NAME ARGS...`` (or any command through
``step NAME CMD...``), which leaves ``NAME.out``, ``NAME.err`` and ``NAME.rc`` in ``/out``; the
tests then assert on those files on the host side. Nothing is asserted inside the guest.

What the harness lacks, and this module adds in the prologue (the harness should do it itself):
``/dev/fd``, ``/dev/stdin``, ``/dev/stdout``, ``/dev/stderr`` (udev/systemd make them on a real
host; bash's process substitution ``< <(...)``, which the remediation script uses, needs
``/dev/fd``), and the CPU's KVM module (udev loads it by the CPU's modalias; the harness
coldplugs only PCI devices, so ``/dev/kvm`` never appears, even on the AMD flavour that has svm).
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Sequence

import pytest

HARNESS_ENV = "VFIO_SCAN_QEMU_HARNESS"
REQUIRED_ENV = "VFIO_SCAN_E2E"
CHECKOUT = Path(__file__).resolve().parents[2]
DEFAULT_HARNESS = CHECKOUT.parent / "shared" / "qemu-host" / "run-guest.sh"
GUEST_TIMEOUT = 600        # seconds the harness lets one guest run (boot, every command, power-off)
SETUP_FAILED = 125         # the harness's exit code for a usage or setup error
NO_EXIT_CODE = 124         # the guest never reported one: timeout or boot failure

#: Every boot of this session: (scenario, wall seconds). Printed in the terminal summary.
BOOTS: List[tuple] = []
_setup_failure: Optional[str] = None


def required() -> bool:
    return os.environ.get(REQUIRED_ENV, "").strip().lower() == "required"


def unavailable(reason: str):
    """Skip the test with ``reason`` — or fail it when the e2e run is required (CI)."""
    if required():
        pytest.fail(f"{REQUIRED_ENV}=required, but the e2e tests cannot run: {reason}", pytrace=False)
    pytest.skip(reason)


def harness() -> Path:
    """The harness script, or a skip (failure under ``VFIO_SCAN_E2E=required``) saying why not."""
    configured = os.environ.get(HARNESS_ENV)
    path = Path(configured) if configured else DEFAULT_HARNESS
    where = f"${HARNESS_ENV}={configured}" if configured else f"{path} (set ${HARNESS_ENV} to use another)"
    if not path.is_file():
        unavailable(f"QEMU guest harness not found: {where}")
    if not os.access(path, os.X_OK):
        unavailable(f"QEMU guest harness is not executable: {where}")
    return path


def vfio_scan_command() -> List[str]:
    """How the guest runs vfio-scan: the console script installed beside this Python (the venv's),
    else ``python -m scanner``. The guest sees the host's / except /tmp; a checkout or venv there
    (a CI clone, say) is staged under /var/tmp first and run from that copy."""
    script = Path(sys.executable).with_name("vfio-scan")
    command = [str(script)] if script.is_file() else [sys.executable, "-m", "scanner"]
    if any(Path(p).resolve().is_relative_to("/tmp") for p in (command[0], str(CHECKOUT), sys.prefix)):
        return staged_command()
    return command


STAGE_ROOT = Path("/var/tmp/vfio-scan-e2e")


def staged_command() -> List[str]:
    """Copy the package and the venv's libraries where the guest can see them; run them from there."""
    import hashlib
    import shutil
    import sysconfig

    stage = STAGE_ROOT / hashlib.sha256(str(CHECKOUT).encode()).hexdigest()[:12]
    if stage.exists():
        shutil.rmtree(stage)
    ignore = shutil.ignore_patterns("__pycache__", "ansible*", "hypothesis*", "pip", "pip-*", "setuptools*")
    try:
        for package in ("scanner", "rules", "reports", "schemas"):
            shutil.copytree(CHECKOUT / package, stage / "src" / package, ignore=ignore)
        shutil.copytree(sysconfig.get_paths()["purelib"], stage / "site", ignore=ignore)
    except OSError as exc:
        unavailable(f"cannot stage the checkout under {STAGE_ROOT} for the guest: {exc}")
    python = os.path.realpath(sys.executable)
    if Path(python).is_relative_to("/tmp"):
        unavailable(f"the Python interpreter {python} is under /tmp, which the guest does not see")
    return ["env", f"PYTHONPATH={stage / 'src'}:{stage / 'site'}", python, "-m", "scanner"]


#: The Python of the arm64 guest's Debian 12 userland, for which its dependencies are fetched.
ARM64_PYTHON = "3.11"


def arm64_dependencies() -> Path:
    """The project's runtime dependencies as aarch64 wheels, unpacked once into a folder the arm64 guest
    is shown (``pip install --target``, binary wheels only: pluggy and jsonschema are pure Python,
    zstandard, lz4 and rpds-py have manylinux aarch64 builds). Kept per dependency list under /var/tmp."""
    import hashlib

    try:
        import tomllib
    except ImportError:  # Python < 3.11
        import tomli as tomllib
    wanted = [d for d in tomllib.loads((CHECKOUT / "pyproject.toml").read_text())["project"]["dependencies"]
              if "python_version <" not in d]
    # the guest's small userland has no libgcc_s.so.1, which the Rust extension of jsonschema 4.18+'s
    # rpds-py needs (every real arm64 Debian has it: libgcc-s1 is required); 4.17 is pure Python
    wanted = [d if not d.startswith("jsonschema") else d + ",<4.18" for d in wanted]
    target = STAGE_ROOT / ("pydeps-arm64-" + hashlib.sha256("\n".join(wanted).encode()).hexdigest()[:12])
    if (target / ".complete").is_file():
        return target
    command = [sys.executable, "-m", "pip", "install", "--quiet", "--target", str(target), "--upgrade",
               "--platform", "manylinux2014_aarch64", "--python-version", ARM64_PYTHON, "--implementation", "cp",
               "--only-binary=:all:", *wanted]
    proc = subprocess.run(command, capture_output=True, text=True, timeout=600)
    if proc.returncode != 0:
        unavailable(f"cannot fetch the aarch64 dependencies for the arm64 guest: {proc.stderr.strip()[-500:]}")
    (target / ".complete").write_text("\n".join(wanted) + "\n")
    return target


#: The start of every guest script: helpers, then the scenario's body. Bash, run as root in the guest.
PROLOGUE = r'''
set -uo pipefail
export VFIO_SCAN_DISABLE_PLUGINS=1   # the built-in rules only: what is under test, and ~3 s faster under TCG
export COLUMNS=100 LC_ALL=C.UTF-8
# Missing in the harness's guest (udev/systemd make them on a real host); bash's process
# substitution needs /dev/fd, and the remediation script uses it.
[ -e /dev/fd ] || ln -s /proc/self/fd /dev/fd
[ -e /dev/stdin ] || ln -s /proc/self/fd/0 /dev/stdin
[ -e /dev/stdout ] || ln -s /proc/self/fd/1 /dev/stdout
[ -e /dev/stderr ] || ln -s /proc/self/fd/2 /dev/stderr
# udev also loads the CPU's modules at boot, by its modalias: kvm_intel / kvm_amd, which make /dev/kvm.
# The harness coldplugs only PCI devices; load just the KVM ones (the rest of the CPU modalias costs
# ~5 s under TCG). kvm_intel refuses a CPU without VT-x, as on a real host.
modprobe -q kvm_intel 2>/dev/null || modprobe -q kvm_amd 2>/dev/null
OUT=/out
: > "$OUT/steps.log"

# step NAME CMD...: run CMD, keep its stdout, stderr and exit code as $OUT/NAME.{out,err,rc}
step() {
    local name=$1 t0 t1 rc; shift
    read -r t0 _ < /proc/uptime
    "$@" > "$OUT/$name.out" 2> "$OUT/$name.err"
    rc=$?
    echo "$rc" > "$OUT/$name.rc"
    read -r t1 _ < /proc/uptime
    printf 'at %6.1fs %s rc=%s %.1fs: %s\n' "$t0" "$name" "$rc" "$(awk -v a="$t0" -v b="$t1" 'BEGIN { print b - a }')" "$*" >> "$OUT/steps.log"
    return 0
}

# vs NAME ARGS...: a vfio-scan command as a step
vs() { local name=$1; shift; step "$name" "${VFIO_SCAN[@]}" "$@"; }

# ground truth: what the kernel itself says, for the host side to compare with the findings
ground_truth() {
    cat /proc/cmdline > "$OUT/cmdline.txt"
    dmesg > "$OUT/dmesg.txt" 2>&1
    ls /sys/firmware/acpi/tables > "$OUT/acpi-tables.txt" 2>&1
    ls /sys/class/iommu > "$OUT/iommu-units.txt" 2>&1
    ls /sys/kernel/iommu_groups > "$OUT/iommu-groups.txt" 2>&1
    grep -E '^(vendor_id|flags)' /proc/cpuinfo | sort -u > "$OUT/cpuinfo.txt"
    if [ -e /dev/kvm ]; then echo present; else echo absent; fi > "$OUT/dev-kvm.txt"
}
'''


#: Boots of one scenario when the guest's kernel panics before the scenario's script starts.
BOOT_ATTEMPTS = 2


@dataclass
class GuestRun:
    """What one boot left behind: the harness's exit code and output, and the out folder."""

    name: str
    out: Path
    rc: int
    stdout: str
    stderr: str
    wall: float
    command: List[str] = field(default_factory=list)

    def path(self, name: str) -> Path:
        return self.out / name

    def text(self, name: str) -> str:
        path = self.out / name
        assert path.is_file(), f"{self.name}: the guest left no {name} in {self.out}\n{self.describe()}"
        return path.read_text(errors="replace")

    def rc_of(self, step: str) -> int:
        return int(self.text(f"{step}.rc").strip())

    def json(self, name: str):
        return json.loads(self.text(name))

    def report(self, name: str) -> "Report":
        return Report(self.json(name), f"{self.name}:{name}")

    def describe(self) -> str:
        """The steps the guest ran, their exit codes and times, and the end of its stderr."""
        steps = (self.out / "steps.log").read_text() if (self.out / "steps.log").is_file() else "(no steps.log)\n"
        return f"steps:\n{steps}harness rc={self.rc}, wall {self.wall:.1f}s; stderr tail:\n{self.stderr[-3000:]}"


class Report:
    """A JSON report, with findings looked up by (rule id, subject)."""

    def __init__(self, doc: dict, label: str):
        self.doc = doc
        self.label = label
        self.by_key: Dict[tuple, dict] = {}
        for finding in doc["findings"]:
            key = (finding["rule_id"], finding["subject"])
            assert key not in self.by_key, f"{label}: two findings for {key}"
            self.by_key[key] = finding

    @property
    def readiness(self) -> str:
        return self.doc["summary"]["readiness"]

    def finding(self, rule_id: str, subject: str = "host") -> dict:
        assert (rule_id, subject) in self.by_key, (
            f"{self.label}: no {rule_id} finding for {subject}; have {sorted(self.by_key)}")
        return self.by_key[(rule_id, subject)]

    def status(self, rule_id: str, subject: str = "host") -> str:
        return self.finding(rule_id, subject)["status"]

    def statuses(self, subject: Optional[str] = None) -> Dict[tuple, str]:
        return {k: f["status"] for k, f in self.by_key.items() if subject is None or k[1] == subject}

    def failing(self) -> List[tuple]:
        return sorted(k for k, f in self.by_key.items() if f["status"] == "fail")

    def show(self, rule_id: str, subject: str = "host") -> str:
        """One finding as text, for assertion messages."""
        return json.dumps(self.finding(rule_id, subject), indent=1)[:4000]


def boot(name: str, body: str, out: Path, *, cmdline: str = "", iommu: str = "intel",
         env: Optional[Dict[str, str]] = None, extra_args: Sequence[str] = (), arch: str = "x86_64",
         kernel: str = "6.1") -> GuestRun:
    """Boot one guest, run ``PROLOGUE + body`` in it with ``out`` as ``/out``, and return what it left.

    ``arch="arm64"`` boots Debian's arm64 kernel on QEMU's virt board (SMMUv3, GICv3 ITS; UEFI +
    ACPI, or a device tree with ``--direct`` in ``extra_args``): its userland cannot run this
    machine's Python, so the guest runs ``python3 -m scanner`` from the checkout with the
    dependencies built for aarch64 (:func:`arm64_dependencies`). ``kernel="6.12"`` boots Debian 13's.

    A harness that is missing or cannot set itself up skips (fails under ``VFIO_SCAN_E2E=required``);
    a guest that never reports an exit code, or a script that did not reach its end, fails.
    """
    global _setup_failure
    if _setup_failure:
        unavailable(_setup_failure)
    run_guest = harness()
    platform: List[str] = ["--kernel", kernel] if kernel != "6.1" else []
    if arch == "arm64":
        deps = arm64_dependencies()
        vfio_scan = ["python3", "-m", "scanner"]
        platform += ["--arch", "arm64", "--share", str(deps), "--env", f"PYTHONPATH={CHECKOUT}:{deps}"]
    else:
        vfio_scan = vfio_scan_command()
    out.mkdir(parents=True, exist_ok=True)
    script = out / "guest-script.sh"
    script.write_text("#!/bin/bash\n# generated by tests/e2e/guest.py for scenario " + name + "\n"
                      + "VFIO_SCAN=(" + " ".join(shlex.quote(w) for w in vfio_scan) + ")\n"
                      + PROLOGUE + "\n# ---- scenario " + name + "\n" + body
                      + '\nread -r t _ < /proc/uptime; echo "at $t: done" >> "$OUT/steps.log"; echo done > "$OUT/guest-done"\n')
    command = [str(run_guest), "--out", str(out), "--iommu", iommu, "--timeout", str(GUEST_TIMEOUT)]
    if cmdline:
        command += ["--cmdline-extra", cmdline]
    for key, value in (env or {}).items():
        command += ["--env", f"{key}={value}"]
    command += platform + list(extra_args) + ["--script", str(script)]
    started = time.monotonic()
    for attempt in range(BOOT_ATTEMPTS):
        try:
            proc = subprocess.run(command, cwd=str(CHECKOUT), stdin=subprocess.DEVNULL, capture_output=True,
                                  text=True, timeout=GUEST_TIMEOUT + 120)
        except OSError as exc:
            unavailable(f"cannot run the QEMU guest harness {run_guest}: {exc}")
        except subprocess.TimeoutExpired as exc:
            pytest.fail(f"{name}: the guest harness did not return within {GUEST_TIMEOUT + 120}s: "
                        f"{(exc.stderr or b'')[-2000:]!r}")
        if (out / "steps.log").exists() or "Kernel panic" not in proc.stderr + proc.stdout:
            break
        # the kernel died before the script ran a line: under TCG on a busy machine its timer check
        # can fail ("timer doesn't work through Interrupt-remapped IO-APIC"); nothing under test ran
        sys.stderr.write(f"{name}: the guest kernel panicked while booting (attempt {attempt + 1}); booting again\n")
    wall = time.monotonic() - started
    BOOTS.append((name, wall))
    run = GuestRun(name, out, proc.returncode, proc.stdout, proc.stderr, wall, command)
    if proc.returncode == SETUP_FAILED:
        lines = [line for line in proc.stderr.splitlines() if line.strip()]
        _setup_failure = ("the QEMU guest harness cannot set itself up (exit 125): "
                          + " | ".join(lines[-5:] or ["no message"]))
        unavailable(_setup_failure)
    if proc.returncode == NO_EXIT_CODE:
        pytest.fail(f"{name}: the guest did not boot or did not finish (harness exit 124)\n{run.describe()}",
                    pytrace=False)
    if not (out / "guest-done").is_file():
        pytest.fail(f"{name}: the guest script did not reach its end (exit {proc.returncode})\n{run.describe()}",
                    pytrace=False)
    return run


class Scenarios:
    """Named boots of one guest script, each booted once and shared by every test that asks for it
    (a skip or a failed boot is kept too: the same answer, without booting again)."""

    def __init__(self, body: str, scenarios: Dict[str, dict]):
        self.body = body
        self.scenarios = scenarios
        self.done: Dict[str, object] = {}

    def booted(self, name: str, tmp_path_factory) -> GuestRun:
        if name not in self.done:
            try:
                self.done[name] = boot(name, self.body, tmp_path_factory.mktemp(f"e2e-{name}"), **self.scenarios[name])
            except BaseException as exc:
                self.done[name] = exc
        if isinstance(self.done[name], BaseException):
            raise self.done[name]
        return self.done[name]

    def fixture(self, name: str):
        """A module fixture for one scenario (the same boot as the parametrized tests')."""
        @pytest.fixture(scope="module")
        def fixture(tmp_path_factory):
            return self.booted(name, tmp_path_factory)
        return fixture


def keys(findings: Iterable[dict]) -> List[tuple]:
    """The comparable part of findings: (rule_id, subject, status, message), sorted."""
    return sorted((f["rule_id"], f["subject"], f["status"], f["message"]) for f in findings)
