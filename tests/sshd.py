"""A private OpenSSH server for the fleet tests: 127.0.0.1 and a few more loopback addresses, one high port.

Everything lives in a temporary directory: the host key, the client key, authorized_keys, the
server's config and a client config (``ssh -F``) that trusts exactly that host key. The server
runs in the foreground (``sshd -D -e -f CONFIG``) as a child of the test and is stopped by the
fixture's finalizer. Several "hosts" are this one server: on 127.0.0.2, .3, ... a ``Match
LocalAddress`` block forces the command to run with ``--root TREE`` appended, so each address
collects another fixture tree, as if it were another machine; 127.0.0.1 runs commands as asked
(for inventories that pass ``vfio_scan_root`` themselves, and for Ansible).
"""

from __future__ import annotations

import getpass
import os
import shlex
import shutil
import socket
import subprocess
import time
from pathlib import Path
from typing import Dict, Optional

SSHD = "/usr/sbin/sshd"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def dead_port() -> int:
    """A port where nothing listens (bound and released: connecting to it is refused)."""
    return free_port()


class Sshd:
    def __init__(self, workdir: Path, forced_roots: Dict[str, str], extra_forced: Optional[Dict[str, str]] = None):
        """``forced_roots``: address -> tree root collected there; ``extra_forced``: address -> a raw ForceCommand."""
        self.dir = Path(workdir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.user = getpass.getuser()
        self.forced_roots = dict(forced_roots)
        self.extra_forced = dict(extra_forced or {})
        self.addresses = ["127.0.0.1"] + list(self.forced_roots) + list(self.extra_forced)
        self.host_key = self.dir / "host_ed25519"
        self.client_key = self.dir / "client_ed25519"
        self.config = self.dir / "sshd_config"
        self.client_config = self.dir / "ssh_config"
        self.known_hosts = self.dir / "known_hosts"
        self.log = self.dir / "sshd.log"
        self.proc: Optional[subprocess.Popen] = None

    def _keygen(self, path: Path) -> None:
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "vfio-scan-test", "-f", str(path)],
                       check=True, capture_output=True)

    def write_files(self) -> None:
        self._keygen(self.host_key)
        self._keygen(self.client_key)
        (self.dir / "authorized_keys").write_text(self.client_key.with_suffix(".pub").read_text())
        host_pub = " ".join(self.host_key.with_suffix(".pub").read_text().split()[:2])
        names = ",".join(f"[{a}]:{self.port}" for a in self.addresses)
        self.known_hosts.write_text(f"{names} {host_pub}\n")
        lines = [f"Port {self.port}"] + [f"ListenAddress {a}" for a in self.addresses] + [
            f"HostKey {self.host_key}",
            f"AuthorizedKeysFile {self.dir / 'authorized_keys'}",
            "PidFile none",
            "UsePAM no",
            "StrictModes no",
            "PermitRootLogin yes",
            "PasswordAuthentication no",
            "KbdInteractiveAuthentication no",
            "PubkeyAuthentication yes",
            "Subsystem sftp internal-sftp",
            "MaxStartups 100:30:200",
            "LogLevel VERBOSE",
        ]
        for address, root in self.forced_roots.items():
            lines += [f"Match LocalAddress {address}",
                      f"    ForceCommand eval \"$SSH_ORIGINAL_COMMAND --root {shlex.quote(str(root))}\""]
        for address, command in self.extra_forced.items():
            lines += [f"Match LocalAddress {address}", f"    ForceCommand {command}"]
        self.config.write_text("\n".join(lines) + "\n")
        self.client_config.write_text("\n".join([
            "Host *",
            f"    User {self.user}",
            f"    IdentityFile {self.client_key}",
            "    IdentitiesOnly yes",
            f"    UserKnownHostsFile {self.known_hosts}",
            "    GlobalKnownHostsFile /dev/null",
            "    StrictHostKeyChecking yes",
            "    LogLevel ERROR",
        ]) + "\n")

    def start(self) -> None:
        self.write_files()
        if os.geteuid() == 0:  # sshd's privilege-separation directory, made by its systemd unit normally
            os.makedirs("/run/sshd", mode=0o755, exist_ok=True)
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen([SSHD, "-D", "-e", "-f", str(self.config)], stdout=log,
                                         stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"sshd exited with {self.proc.returncode}: {self.log.read_text()[-2000:]}")
            if all(self._listening(a) for a in self.addresses):
                return
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"sshd did not start listening: {self.log.read_text()[-2000:]}")

    def _listening(self, address: str) -> bool:
        try:
            with socket.create_connection((address, self.port), timeout=0.5):
                return True
        except OSError:
            return False

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def host(self, address: str = "127.0.0.1", port: Optional[int] = None) -> str:
        return f"{self.user}@{address}:{port or self.port}"


def why_no_sshd() -> Optional[str]:
    """Why this machine cannot run the test sshd, or None when it can."""
    if not os.path.exists(SSHD):
        return f"{SSHD} is not installed (apt-get install openssh-server)"
    for tool in ("ssh", "ssh-keygen"):
        if not shutil.which(tool):
            return f"{tool} is not installed (apt-get install openssh-client)"
    return None
