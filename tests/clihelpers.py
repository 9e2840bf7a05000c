"""Helpers shared by the CLI, plugin and report tests: run the real CLI, build plugins and trees.

The CLI always runs in a subprocess (``python -m scanner``), the way a user or a CI job runs it,
so that exit codes, stderr and entry-point discovery are the real ones.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Optional

from hosttree import DEBIAN_KCONFIG, DMESG_INTEL_ON, ready_host

REPO = Path(__file__).resolve().parents[1]
SCHEMA_FILE = REPO / "schemas" / "report.schema.json"


def cli_env(pythonpath: Optional[os.PathLike] = None, **extra: str) -> dict:
    env = dict(os.environ)
    env.pop("VFIO_SCAN_DISABLE_PLUGINS", None)
    env.pop("PYTHONPATH", None)
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    env["COLUMNS"] = "100"
    if pythonpath is not None:
        env["PYTHONPATH"] = str(pythonpath)
    env.update(extra)
    return env


def run_cli(*args, pythonpath: Optional[os.PathLike] = None, env: Optional[dict] = None,
            **extra_env: str) -> subprocess.CompletedProcess:
    """``python -m scanner ARGS`` from the repository, text output captured."""
    return subprocess.run([sys.executable, "-m", "scanner", *map(str, args)], cwd=REPO,
                          env=env if env is not None else cli_env(pythonpath, **extra_env),
                          capture_output=True, text=True, timeout=300)


def stderr_lines(proc: subprocess.CompletedProcess) -> list:
    return [line for line in proc.stderr.splitlines() if line.strip()]


def scan_json(root, *args, **kw) -> tuple:
    """Scan ``root`` as JSON; returns (process, parsed document)."""
    proc = run_cli("scan", "--root", root, "--format", "json", *args, **kw)
    assert proc.stdout, f"no JSON on stdout (exit {proc.returncode}); stderr: {proc.stderr}"
    return proc, json.loads(proc.stdout)


def by_rule(document: dict) -> dict:
    return {f["rule_id"]: f for f in document["findings"]}


def load_schema() -> dict:
    return json.loads(SCHEMA_FILE.read_text(encoding="utf-8"))


# -- third-party plugins through a real entry point ------------------------------------------

def make_plugin(where: Path, source: str, module: str = "acme_vfio", ep_name: str = "acme",
                dist: str = "acme-vfio", version: str = "1.0") -> Path:
    """An installed distribution in ``where``: ``<module>.py`` plus ``<dist>-<version>.dist-info``
    declaring the entry point ``<ep_name> = <module>`` in the group ``vfio_scan``.
    Put ``where`` on PYTHONPATH and importlib.metadata finds it like any installed package."""
    where = Path(where)
    where.mkdir(parents=True, exist_ok=True)
    (where / f"{module}.py").write_text(textwrap.dedent(source), encoding="utf-8")
    info = where / f"{dist.replace('-', '_')}-{version}.dist-info"
    info.mkdir(exist_ok=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n", encoding="utf-8")
    (info / "entry_points.txt").write_text(f"[vfio_scan]\n{ep_name} = {module}\n", encoding="utf-8")
    return where


#: A well-behaved plugin: one host rule that passes.
GOOD_PLUGIN = '''
    """ACME-100 acme-firmware: the ACME card runs firmware 2.0 or newer.

    What: reads the ACME firmware version. Why: older firmware breaks FLR.
    How: from the facts. Fix: flash firmware 2.1 with acme-flash.
    """
    from scanner import hookimpl
    from scanner.engine.model import Finding, Rule


    @hookimpl
    def vfio_scan_register_rules(register):
        register(Rule(id="ACME-100", name="acme-firmware", scope="host", severity="low",
                      title="ACME firmware is recent", check=check, docs=__doc__))


    def check(facts, scan):
        yield Finding.passed("ACME firmware 2.1 is recent enough", observed="2.1", expected=">= 2.0")
'''


def plugin_with_rule(rule_kwargs: str, check_body: str = 'yield Finding.passed("ok")', docstring: str = None) -> str:
    """Plugin source whose single rule is ``Rule(<rule_kwargs>, check=check)``."""
    doc = docstring if docstring is not None else "ACME-100 acme plugin: docs for the rule."
    return f'''
    """{doc}"""
    from scanner import hookimpl
    from scanner.engine.model import Finding, Rule


    @hookimpl
    def vfio_scan_register_rules(register):
        register(Rule({rule_kwargs}, check=check))


    def check(facts, scan):
        {check_body}
    '''


ACME_RULE = 'id="ACME-100", name="acme-firmware", scope="host", severity="low", title="ACME firmware is recent", docs=__doc__'

#: A plugin whose check raises: that rule errors, the scan goes on.
RAISING_PLUGIN = plugin_with_rule(ACME_RULE, 'raise RuntimeError("acme firmware query exploded")\n        yield')

#: A plugin whose check yields something that is not a Finding.
NON_FINDING_PLUGIN = plugin_with_rule(ACME_RULE, 'yield {"status": "pass"}')


# -- fixture trees with one thing broken -----------------------------------------------------

def no_iommu_request_host(root):
    """Intel on GRUB, ``intel_iommu`` nowhere, a kernel that does not turn VT-d on by itself:
    only VFIO-004 fails (severity high), and its fix edits /etc/default/grub and runs update-grub."""
    tree = ready_host(root, cmdline="BOOT_IMAGE=/boot/vmlinuz-6.1.0-56-amd64 root=/dev/sda1 ro quiet")
    tree.kconfig(dict(DEBIAN_KCONFIG, INTEL_IOMMU_DEFAULT_ON="n", INTEL_IOMMU_DEFAULT_ON_INTGPU_OFF="n"))
    tree.remove("/sys/class/iommu/dmar0")
    tree.grub(default="quiet")
    tree.kernel_log(DMESG_INTEL_ON.replace("intel_iommu=on iommu=pt", "").replace("[    0.086142] DMAR: IOMMU enabled\n", ""))
    return tree


def no_dmar_host(root):
    """The firmware exposes no DMAR table: VFIO-002 fails (critical)."""
    tree = ready_host(root)
    tree.remove("/sys/firmware/acpi/tables/DMAR")
    return tree


def warn_only_host(root):
    """No interrupt remapping seen, and no device MSI to judge by: VFIO-006 warns, everything else passes."""
    tree = ready_host(root)
    tree.write("/proc/interrupts", "           CPU0       CPU1\n  0:         44          0   IO-APIC    2-edge      timer\n")
    tree.kernel_log(DMESG_INTEL_ON.replace("[    0.210809] DMAR-IR: Enabled IRQ remapping in xapic mode\n", ""))
    return tree


def unreadable_cmdline_host(root):
    """/proc/cmdline is missing: VFIO-004 cannot judge and skips with the reason."""
    tree = ready_host(root)
    tree.remove("/proc/cmdline")
    return tree


#: Every built-in rule, host rules first; extend when a rule is added.
HOST_IDS = [f"VFIO-00{n}" for n in range(1, 8)] + ["VFIO-016", "VFIO-019", "VFIO-023"]
DEVICE_IDS = ["VFIO-010", "VFIO-011", "VFIO-012", "VFIO-013", "VFIO-014", "VFIO-015", "VFIO-017", "VFIO-018",
              "VFIO-020", "VFIO-021", "VFIO-022"]
BUILTIN_IDS = sorted(HOST_IDS + DEVICE_IDS)  # in id order, as the registry lists them
#: Host rules that judge only when an option asks (VFIO-019: --guest-memory) and skip, saying so, otherwise.
ON_REQUEST_IDS = ["VFIO-019"]
#: What passes on a ready host scanned without options.
READY_HOST_IDS = [r for r in HOST_IDS if r not in ON_REQUEST_IDS]


def run_under_tty(*args, **env) -> tuple:
    """``python -m scanner ARGS`` with stdout on a pseudo-terminal, as a person sees it: (exit code, text)."""
    import pty

    leader, follower = pty.openpty()
    proc = subprocess.run([sys.executable, "-m", "scanner", *map(str, args)], cwd=REPO, stdout=follower,
                          stderr=subprocess.PIPE, env=cli_env(**env), timeout=300)
    os.close(follower)
    chunks = []
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # EIO: the other end is closed
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(leader)
    return proc.returncode, b"".join(chunks).decode().replace("\r\n", "\n")
