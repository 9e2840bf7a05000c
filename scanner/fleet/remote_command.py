"""What runs the collector on one host: the ``ssh`` command line, and the source sent to it.

Why the ``ssh`` binary and not a Python SSH library: it is what operators already configured --
``~/.ssh/config``, ProxyJump bastions, agents, certificates, known_hosts -- and it adds nothing to
install. The collector's source goes to the remote ``python3 -`` on stdin, its snapshot comes back
on stdout; nothing is copied to or left on the host. ``BatchMode=yes`` makes a host that would
ask for a password or a host-key confirmation fail at once instead of hanging the run. An
inventory host with ``ansible_connection=local`` runs the collector here instead.
"""

from __future__ import annotations

import os
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, List, Optional, Sequence

from scanner.fleet.collection import MAX_ERROR_BYTES, MAX_REPLY_BYTES
from scanner.fleet.inventory import InventoryHost

if TYPE_CHECKING:
    from scanner.fleet.collection import InFlight

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
    in_flight: Optional["InFlight"] = None  # the run's running collections, to stop them all on a signal
    max_reply_bytes: int = MAX_REPLY_BYTES
    max_error_bytes: int = MAX_ERROR_BYTES


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
