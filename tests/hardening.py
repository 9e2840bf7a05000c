"""Helpers of the hardening tests (tests/test_hardening_*.py): record what a scan reads, break one
file of a tree in one of several ways and put it back, run code as user ``nobody``.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Dict, Optional, Tuple

import pytest

from scanner.engine.runner import Scan
from scanner.host import DEFAULT_CAP
from scanner.host.tree import TreeHost
from scanner.engine.plugins import load_plugins
from scanner.engine.scanning import scan_host
from scanner.facts.targets import parse_all

REPO = Path(__file__).resolve().parents[1]

#: The targets of the corruption matrix on the ``workstation`` tree: the GPU (group 1 with its
#: audio function and root port), the boot display (00:02.0) and the SR-IOV NIC asked for 2 VFs,
#: so that every device rule reads something.
DEVICES = ("01:00.0", "00:02.0")
VFS = ("0000:02:00.0=2",)

#: The ways one file is broken, in this order.
KINDS = ("empty", "binary", "huge", "directory", "dangling", "loop", "outside")
BINARY = b"\x00\xff\xfe\x7fELF\x02\x01\x01garbage\x00\x1b[31m\n\x00"

#: Words a reason has when a file is broken that way (what the Host layer says).
REASON_WORDS = {
    "empty": ("garbled", "empty", "not a directory", "not a symlink", "not a PCI device directory", "missing"),
    "binary": ("garbled", "not a directory", "not a symlink", "not a PCI device directory"),
    "huge": ("too large", "not a directory", "not a symlink", "garbled"),
    "directory": ("not a regular file", "not a symlink", "not a PCI device directory", "garbled"),
    "dangling": ("missing", "dangling"),
    "loop": ("symlink loop",),
    "outside": ("missing", "dangling"),
}


class RecordingHost(TreeHost):
    """A TreeHost that remembers every path a scan reads (with the size cap and how many times), lists
    or resolves."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.seen: Dict[str, set] = {}
        self.caps: Dict[str, int] = {}
        self.reads: Dict[str, int] = {}

    def _note(self, how: str, path: str) -> None:
        self.seen.setdefault("/" + path.strip("/"), set()).add(how)

    def read_bytes(self, path, cap=DEFAULT_CAP):
        self._note("read", path)
        self.caps["/" + path.strip("/")] = max(cap, self.caps.get("/" + path.strip("/"), 0))
        self.reads["/" + path.strip("/")] = self.reads.get("/" + path.strip("/"), 0) + 1
        return super().read_bytes(path, cap)

    def listdir(self, path):
        self._note("listdir", path)
        return super().listdir(path)

    def lists(self, path, name):
        self._note("lists", f"{path}/{name}")
        return super().lists(path, name)

    def resolve(self, path):
        self._note("resolve", path)
        return super().resolve(path)

    def is_dir(self, path):
        self._note("is_dir", path)
        return super().is_dir(path)


_RULES = None


def builtin_rules():
    global _RULES
    if _RULES is None:
        _RULES = load_plugins(autoload=False).sorted_rules()
    return _RULES


def scan(root, host_class=TreeHost, devices=DEVICES, vfs=VFS, rules=None, classes=()):
    """(host, report) of an in-process scan of ``root`` (by default with the matrix's targets)."""
    selectors, requests = parse_all(devices=devices, classes=classes, vfs=vfs)
    host = host_class(str(root))
    report = scan_host(host, rules or builtin_rules(), Scan(), selectors=selectors, vfs=requests)
    return host, report


@contextlib.contextmanager
def time_limit(seconds: float, what: str):
    """Fail instead of hanging: a quadratic parser once made a 1 MiB line take forever."""
    def expired(*_):
        raise TimeoutError(f"{what}: still running after {seconds} s")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


class Breaker:
    """Break one path of a tree at a time (``with breaker.broken(path, kind):``), then restore it."""

    def __init__(self, root, outside_file):
        self.root = Path(root)
        self.outside_file = Path(outside_file)
        self.stash = Path(tempfile.mkdtemp(prefix="vfio-scan-stash-"))

    def real(self, path: str) -> Path:
        return self.root / path.lstrip("/")

    def _write(self, real: Path, data: bytes) -> None:
        real.parent.mkdir(parents=True, exist_ok=True)
        real.write_bytes(data)

    def make(self, path: str, kind: str, cap: int = DEFAULT_CAP) -> None:
        real = self.real(path)
        real.parent.mkdir(parents=True, exist_ok=True)
        if kind == "empty":
            self._write(real, b"")
        elif kind == "binary":
            self._write(real, BINARY)
        elif kind == "huge":  # one byte over the cap the scan reads this path with
            self._write(real, b"A" * (cap + 1))
        elif kind == "directory":
            real.mkdir()
        elif kind == "dangling":
            os.symlink("/nowhere/at/all", real)
        elif kind == "loop":
            os.symlink(real.name, real)
        elif kind == "outside":  # a relative link climbing out of the root to a real file
            os.symlink(os.path.relpath(self.outside_file, real.parent), real)
        else:
            raise ValueError(kind)

    @contextlib.contextmanager
    def broken(self, path: str, kind: str, cap: int = DEFAULT_CAP):
        real = self.real(path)
        saved: Optional[Path] = None
        made_parents = []
        parent = real.parent
        while not parent.exists():
            made_parents.append(parent)
            parent = parent.parent
        if os.path.lexists(real):
            saved = self.stash / "saved"
            os.rename(real, saved)
        try:
            self.make(path, kind, cap)
            yield real
        finally:
            if os.path.lexists(real):
                if real.is_dir() and not real.is_symlink():
                    shutil.rmtree(real)
                else:
                    real.unlink()
            if saved is not None:
                os.rename(saved, real)
            for made in made_parents:
                shutil.rmtree(made, ignore_errors=True)


def fingerprint(root) -> Dict[str, Tuple]:
    """Every path under ``root`` (and root itself): type, checksum or link target, mtime, mode, size, owner."""
    root = Path(root)
    prints = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = os.path.join(dirpath, name)
            st = os.lstat(path)
            if stat.S_ISLNK(st.st_mode):
                content = "link:" + os.readlink(path)
            elif stat.S_ISREG(st.st_mode):
                with open(path, "rb") as handle:
                    content = hashlib.sha256(handle.read()).hexdigest()
            else:
                content = stat.S_IFMT(st.st_mode)
            prints[os.path.relpath(path, root)] = (content, st.st_mtime_ns, st.st_mode, st.st_size, st.st_uid)
    st = os.lstat(root)
    prints["."] = ("root", st.st_mtime_ns, st.st_mode, st.st_uid)
    return prints


# -- running as user nobody ------------------------------------------------------------------------

NOBODY = ("--reuid=65534", "--regid=65534", "--clear-groups")


def require_nobody() -> str:
    """setpriv, when this test can switch to user nobody (root with setpriv), else skip."""
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("setpriv is not installed")
    if os.geteuid() != 0:
        pytest.skip("switching to user nobody needs root")
    return setpriv


def world_readable_base(prefix: str) -> Path:
    """A fresh directory nobody can traverse (pytest's tmp_path is 0700, root only)."""
    base = Path(tempfile.mkdtemp(prefix=prefix))
    os.chmod(base, 0o755)
    return base


def as_nobody(argv, cwd="/tmp", timeout=120) -> subprocess.CompletedProcess:
    """Run ``python ARGV...`` as nobody with the repository on PYTHONPATH (no .pyc written)."""
    setpriv = require_nobody()
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": "/tmp", "PYTHONPATH": str(REPO),
           "PYTHONDONTWRITEBYTECODE": "1", "LANG": os.environ.get("LANG", "C.UTF-8"),
           "VFIO_SCAN_DISABLE_PLUGINS": "1", "COLUMNS": "100"}
    return subprocess.run([setpriv, *NOBODY, sys.executable, *argv], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout)
