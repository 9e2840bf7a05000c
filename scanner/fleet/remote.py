"""Running the collector on one host over the system's OpenSSH client, and getting its snapshot back.

Why the ``ssh`` binary and not a Python SSH library: it is what operators already configured --
``~/.ssh/config``, ProxyJump bastions, agents, certificates, known_hosts -- and it adds nothing to
install. The collector's source goes to the remote ``python3 -`` on stdin, its snapshot comes back
on stdout; nothing is copied to or left on the host. ``BatchMode=yes`` makes a host that would
ask for a password or a host-key confirmation fail at once instead of hanging the run, and every
host has its own deadline after which its whole ssh process group is killed.

Every failure becomes :class:`~scanner.hostset.HostUnavailable` with one line saying what went
wrong where: ssh's own last error line (unreachable, refused, authentication, host key), the
collector's (no python3 on the host), the deadline, or a reply that is not a valid snapshot.
"""

from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Sequence

from scanner.fleet.inventory import InventoryHost
from scanner.hostset import HostUnavailable

SSH_FAILED = 255  # ssh's own exit status for connection and authentication failures
TRUE = ("1", "true", "yes", "on", "y")


@dataclass
class RemoteOptions:
    timeout: float = 120.0
    ssh_options: Sequence[str] = ()  # -o OPTION=VALUE, passed through, ahead of our defaults (ssh: first wins)
    ssh_config: Optional[str] = None
    python: str = "python3"
    sudo: bool = False
    save_dir: Optional[str] = None
    ssh: str = "ssh"


def collector_source() -> bytes:
    """The collector's own file: the very module ``vfio-scan collect`` runs in-process."""
    from scanner import collector

    return Path(collector.__file__).read_bytes()


def remote_python(host: InventoryHost, options: RemoteOptions) -> List[str]:
    python = host.var("ansible_python_interpreter")
    if not python or python.startswith("auto"):  # Ansible's interpreter discovery: our default instead
        python = options.python
    return shlex.split(python)


def collector_command(host: InventoryHost, options: RemoteOptions) -> List[str]:
    """The collector's command line on the host: ``[sudo -n] python3 - [--root DIR]``."""
    argv = (["sudo", "-n"] if options.sudo or (host.var("ansible_become") or "").lower() in TRUE else [])
    argv += remote_python(host, options) + ["-"]
    root = host.var("vfio_scan_root")
    if root:
        argv += ["--root", root]
    return argv


def is_local(host: InventoryHost) -> bool:
    return host.var("ansible_connection") == "local"


def ssh_argv(host: InventoryHost, options: RemoteOptions) -> List[str]:
    """``ssh`` with BatchMode and a connect timeout, the user's options first, ``--`` before the host."""
    argv = [options.ssh, "-T"]
    if options.ssh_config:
        argv += ["-F", options.ssh_config]
    for option in options.ssh_options:
        argv += ["-o", option]
    for name in ("ansible_ssh_common_args", "ansible_ssh_extra_args"):
        argv += shlex.split(host.var(name) or "")
    if host.port:
        argv += ["-p", str(host.port)]
    if host.user:
        argv += ["-l", host.user]
    key = host.var("ansible_ssh_private_key_file", "ansible_private_key_file")
    if key:
        argv += ["-i", os.path.expanduser(key)]
    argv += ["-o", "BatchMode=yes", "-o", f"ConnectTimeout={max(1, min(int(options.timeout), 30))}"]
    remote = " ".join(shlex.quote(word) for word in collector_command(host, options))
    return argv + ["--", host.address, remote]


def command_for(host: InventoryHost, options: RemoteOptions) -> List[str]:
    """What runs the collector for ``host``: ssh, or the local python for ``ansible_connection=local``."""
    return collector_command(host, options) if is_local(host) else ssh_argv(host, options)


def _last_error(stderr: bytes) -> str:
    """ssh's (or the collector's) last meaningful stderr line, without ssh's known-hosts chatter."""
    lines = [line.strip() for line in stderr.decode("utf-8", "replace").splitlines()]
    lines = [line for line in lines if line and not line.startswith("Warning: Permanently added")]
    return lines[-1] if lines else ""


def safe_name(name: str) -> str:
    """A file name for a host's snapshot: ``root@10.0.0.1:2222`` -> ``root@10.0.0.1_2222``."""
    cleaned = re.sub(r"[^A-Za-z0-9._@-]", "_", name).strip(".") or "host"
    return cleaned[:200]


def run_collector(host: InventoryHost, options: RemoteOptions) -> bytes:
    """The collector's stdout from ``host``; raises HostUnavailable with the reason it failed."""
    argv = command_for(host, options)
    where = f"{host.address}:{host.port}" if host.port else host.address
    try:
        proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                start_new_session=True)
    except OSError as exc:
        raise HostUnavailable(f"cannot run {argv[0]}: {exc.strerror or exc}") from None
    try:
        out, err = proc.communicate(collector_source(), timeout=options.timeout)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except OSError:
            pass
        proc.communicate()
        raise HostUnavailable(f"timed out after {options.timeout:g} s collecting from {where}") from None
    if proc.returncode == SSH_FAILED and not is_local(host):
        raise HostUnavailable(f"ssh to {where} failed: {_last_error(err) or 'exit status 255'}")
    if proc.returncode != 0:
        why = _last_error(err) or f"exit status {proc.returncode}"
        raise HostUnavailable(f"the collector failed on {where} (exit status {proc.returncode}): {why}")
    if not out.strip():
        raise HostUnavailable(f"the collector printed nothing on {where}" + (f": {_last_error(err)}" if err else ""))
    return out


def collect_snapshot(host: InventoryHost, options: RemoteOptions) -> dict:
    """Run the collector on ``host``, keep its reply under ``--save-snapshots``, return the parsed snapshot."""
    from scanner.host.snapshot import SnapshotError, parse_snapshot

    out = run_collector(host, options)
    if options.save_dir:  # whole or not at all: a snapshot cut short would break 'scan --snapshot DIR' later
        from scanner.atomicwrite import OutputError, write_atomically

        target = os.path.join(options.save_dir, safe_name(host.name) + ".json")
        try:
            write_atomically(target, out)
        except OutputError as exc:
            raise HostUnavailable(f"cannot save the snapshot to {target}: {exc.reason}") from None
    try:
        return parse_snapshot(out.decode("utf-8", "replace"), f"the collector's reply from {host.name}")
    except SnapshotError as exc:
        raise HostUnavailable(str(exc)) from None


def snapshot_host(host: InventoryHost, options: RemoteOptions):
    """A Host (scanner/host interface) for one inventory host, read over ssh."""
    from scanner.host.snapshot import SnapshotHost

    return SnapshotHost(collect_snapshot(host, options), origin=host.name)
