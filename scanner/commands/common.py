"""Pieces several subcommands share: the host to read, device targets, plugin loading, writing outputs."""

from __future__ import annotations

import os
import re
import sys

from scanner.base.errors import UsageError


def add_host_arguments(group, kernel_log: bool = True) -> None:
    """``--root DIR`` (and ``--kernel-log FILE``), ``--snapshot FILE``: what :func:`make_host` reads."""
    group.add_argument("--root", metavar="DIR", help="read a directory laid out like / (a captured tree) instead of "
                                                     "this machine")
    if kernel_log:
        group.add_argument("--kernel-log", metavar="FILE", help="kernel log to use (default: dmesg or the journal; "
                                                                "in a --root tree, its var/log/dmesg)")
    group.add_argument("--snapshot", nargs="+", action="extend", metavar="FILE",
                       help="read a snapshot made by 'vfio-scan collect' (or fleet --save-snapshots) instead of this "
                            "machine; 'scan' takes several files or directories of *.json, one host each")


def _snapshot_jobs(source):
    """The ``--snapshot`` hosts (scanner/engine/snapshots.py), or None; refused beside --root/--kernel-log."""
    if not source.snapshots:
        return None
    if source.root is not None or source.kernel_log is not None:
        raise UsageError("--snapshot cannot be combined with --root or --kernel-log (a snapshot carries its own "
                         "kernel log)")
    from scanner.engine.snapshots import snapshot_jobs

    return snapshot_jobs(source.snapshots)


def host_set(source):
    """The hosts a scan reads (scanner/engine/hostset.py) from a :class:`~scanner.commands.options.HostSource`:
    ``vfio-scan fleet``'s, one per ``--snapshot`` file, or :func:`make_host`'s one. Usage errors (exit 2)
    are raised here, before any scanning."""
    from scanner.engine.hostset import HostJob, HostSet

    if source.preset is not None:  # made by 'vfio-scan fleet'
        return source.preset
    jobs = _snapshot_jobs(source)
    if jobs is not None:
        return HostSet(jobs, processes=True)
    host = make_host(source)
    return HostSet([HostJob(None, lambda: host, source=host.source)])


def make_host(source):
    """The host a command reads: ``--root DIR``, one ``--snapshot FILE``, or this machine; a bad path is a usage error."""
    kernel_log, root = source.kernel_log, source.root
    jobs = _snapshot_jobs(source)
    if jobs is not None:
        if len(jobs) != 1:
            raise UsageError(f"--snapshot: this command reads one host, and {len(jobs)} snapshots were given "
                             "('vfio-scan scan' reads many)")
        return jobs[0].load()
    check_host_options(root, kernel_log)
    if root is not None:
        from scanner.host.tree import TreeHost

        return TreeHost(root, kernel_log_file=kernel_log)
    from scanner.host.live import LiveHost

    return LiveHost(kernel_log_file=kernel_log)


def check_host_options(root, kernel_log) -> None:
    """``--root DIR`` and ``--kernel-log FILE`` as given (None when absent), refused before any reading
    when they cannot be what they claim: an empty ``--root ""`` (not this machine!), a missing directory
    or one that is no host's tree, a kernel log that is missing, not a regular file (a FIFO would hang
    the read) or too large. ``vfio-scan collect`` checks its options here too."""
    if kernel_log is not None:
        from scanner.host import LARGE_CAP
        from scanner.host.inputfile import InputFileError, check_input_file

        try:
            check_input_file(kernel_log, LARGE_CAP)
        except InputFileError as exc:
            raise UsageError(f"--kernel-log {kernel_log}: {exc}") from None
    if root is None:
        return
    if not root:
        raise UsageError("--root: empty; give the directory of a captured tree (or leave --root out to read "
                         "this machine)")
    if not os.path.isdir(root):
        raise UsageError(f"--root {root}: no such directory")
    from scanner.host.tree import missing_host_signs

    missing = missing_host_signs(root)
    if missing:
        raise UsageError(f"--root {root}: does not look like a host's tree: {missing}")


def add_target_arguments(group, vfs: bool = True) -> None:
    group.add_argument("--device", action="append", default=[], metavar="SEL",
                       help="a device to pass through: 0000:01:00.0, 01:00.0, or vendor:device ids such as "
                            "10de:2204 (every match); repeatable")
    group.add_argument("--class", dest="pci_class", action="append", default=[], metavar="PREFIX",
                       help="every device whose class code starts with PREFIX (0300 = VGA, 02 = network); repeatable")
    if vfs:
        group.add_argument("--vfs", action="append", default=[], metavar="PF=N",
                           help="ask for N SR-IOV virtual functions on the physical function PF (0000:3b:00.0=8)")


def parse_targets(targets):
    """Selectors from the command line (a :class:`~scanner.commands.options.Targets`); a malformed one is a
    usage error naming the accepted forms."""
    devices, classes, vfs = targets.devices, targets.classes, targets.vfs
    if not (devices or classes or vfs):  # parse_all's answer for nothing, without importing scanner.facts.targets
        return [], {}
    from scanner.facts.targets import SelectorError, parse_all

    try:
        return parse_all(devices, classes, vfs)
    except SelectorError as exc:
        raise UsageError(str(exc)) from None


def add_policy_arguments(group, severity: bool = True) -> None:
    """``--policy FILE`` (and ``--severity ID=LEVEL``): what :func:`load_policy` reads."""
    group.add_argument("--policy", metavar="FILE",
                       help="judge the host against a policy file (TOML or JSON: targets and their drivers, rules, "
                            "severities, fail_on, waivers); the command line adds to it and wins over it")
    group.add_argument("--as-of", metavar="DATE",
                       help="judge waiver expiry as of DATE (YYYY-MM-DD) instead of today: what fails once waivers "
                            "have expired")
    if severity:
        group.add_argument("--severity", action="append", default=[], metavar="ID=LEVEL",
                           help="give a rule another severity, e.g. VFIO-006=critical (repeatable; wins over the policy)")


def load_policy(choice, registry):
    """``--policy FILE`` merged with ``--rule``, ``--skip-rule``, ``--severity`` and ``--fail-on``.

    The file is validated (schema, dates, rule ids against the loaded rules) before any scanning;
    a problem is a usage error naming the file, where in it and what. Without a file the result
    is an empty policy carrying the command line's choices (a :class:`~scanner.commands.options.PolicyChoice`).
    """
    from scanner.engine.model import SEVERITIES
    from scanner.policy.model import merge_cli

    check_given("--policy", choice.file, "a policy file (TOML or JSON), or leave --policy out")
    check_given("--as-of", choice.as_of, "a date YYYY-MM-DD, or leave --as-of out to judge as of today")
    to_id = {r.name: r.id for r in registry.rules.values()}
    to_id.update({r.id: r.id for r in registry.rules.values()})
    policy = None
    if choice.file:
        # Only a policy file needs its reader (TOML, difflib, the validator): imported here.
        from scanner.policy.file import PolicyError
        from scanner.policy.file import load_policy as read_policy

        try:
            policy = read_policy(choice.file, known_rules={r.id for r in registry.rules.values()})
        except PolicyError as exc:
            raise UsageError(str(exc)) from None
    severity = {}
    for item in choice.severities:
        rule, sep, level = item.partition("=")
        rule, level = rule.strip(), level.strip().lower()
        if not sep:
            raise UsageError(f"--severity {item}: expected RULE=LEVEL, e.g. VFIO-006=critical")
        if rule not in to_id:
            raise UsageError(f"--severity {item}: no such rule {rule!r} (see 'vfio-scan rules')")
        if level not in SEVERITIES:
            raise UsageError(f"--severity {item}: LEVEL is one of {', '.join(SEVERITIES)}")
        severity[to_id[rule]] = level
    only = [to_id.get(r, r) for r in choice.rules]
    skip = [to_id.get(r, r) for r in choice.skip_rules]
    merged = merge_cli(policy, only, skip, severity, choice.fail_on)
    as_of = choice.as_of
    if as_of:
        from datetime import date

        from scanner.base.record import replace

        try:
            if not re.match(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$", as_of.strip()):
                raise ValueError(as_of)
            merged = replace(merged, today=date.fromisoformat(as_of.strip()))
        except ValueError:
            raise UsageError(f"--as-of {as_of}: expected a date YYYY-MM-DD") from None
    return merged


def add_vm_user_arguments(group) -> None:
    """``--vm-user`` and ``--guest-memory``: who QEMU runs as and the VM's memory (VFIO-018, VFIO-019)."""
    group.add_argument("--vm-user", metavar="USER", help="the user QEMU runs as (default: the user of libvirt's "
                                                          "/etc/libvirt/qemu.conf where present, else root)")
    group.add_argument("--guest-memory", metavar="SIZE", help="the VM's memory (16G, 16384M; a bare number is MiB), "
                                                              "to check that its user may lock it")


def add_plugin_arguments(parser) -> None:
    parser.add_argument("--strict-plugins", action="store_true",
                        help="a plugin that fails to load is an error (exit 2) instead of a warning")


def load_registry(strict_plugins: bool = False):
    """Load plugins; print one warning per failed plugin, or fail under ``--strict-plugins``."""
    from scanner.base.gc_pause import end_of_startup
    from scanner.engine.plugins import load_plugins

    registry = load_plugins()
    end_of_startup()  # what follows (a scan, maybe of many hosts) runs with cyclic GC on
    for info in registry.failures:
        from scanner.base.terminal_text import for_terminal  # a plugin's own words: escaped for the terminal

        line = for_terminal(f"plugin {info.name!r} ({info.source}) failed to load: {info.error}")
        if strict_plugins:
            raise UsageError(line + " [--strict-plugins]")
        print(f"vfio-scan: warning: {line}", file=sys.stderr)
    return registry


def check_given(option: str, value, wanted: str) -> None:
    """An option typed with an empty value (``--json ''``: a variable that was not set) is a usage
    error, not the option left out: that would quietly skip an output, a policy or a date."""
    if value == "":
        raise UsageError(f"{option}: empty; give {wanted}")


def check_writable(path: str, option: str) -> None:
    """Refuse before scanning when an output file cannot be written (nothing gathered is lost)."""
    check_given(option, path, "a file name (or - for stdout)")
    if path == "-":
        return
    parent = os.path.dirname(os.path.abspath(path))
    if os.path.isdir(path):
        raise UsageError(f"{option} {path}: is a directory")
    if not os.path.isdir(parent):
        raise UsageError(f"{option} {path}: directory {parent} does not exist")
    if not os.access(parent, os.W_OK) or (os.path.exists(path) and not os.access(path, os.W_OK)):
        raise UsageError(f"{option} {path}: not writable")


def check_distinct(files) -> None:
    """Refuse before scanning two outputs (``(option, path)``) that name one file: the last written
    would silently replace the others. Stdout (``-``) aside; paths compare resolved (links, ``..``), and
    files that exist by what they are (a hard link)."""
    seen = {}
    for option, path in files:
        if path == "-":
            continue
        try:
            stat = os.stat(path)
            key = (stat.st_dev, stat.st_ino)
        except OSError:  # not there yet (or a dangling link): where it would be made
            key = os.path.realpath(path)
        if key in seen:
            raise UsageError(f"{option} {path}: the same file as {seen[key]}; give each output a file of its own")
        seen[key] = f"{option} {path}"


def write_output(path: str, text) -> None:
    """Write one output -- its text, or the pieces of a streamed one (scanner/output/formats.py) -- to stdout
    (``None`` or ``-``) or to a file, whole or not at all (scanner/output/atomicwrite.py); a write that fails
    raises OutputError, a streamed format that fails midway StreamFailed."""
    from scanner.output.atomicwrite import OutputError, text_blocks, write_atomically

    if path not in (None, "-"):
        write_atomically(path, text)
        return
    try:
        for block in ([text] if isinstance(text, str) else text_blocks(text)):
            sys.stdout.write(block)
        sys.stdout.flush()
    except OSError as exc:  # > /dev/full, a closed pipe (EPIPE)
        _drop_stdout()
        raise OutputError("-", exc.strerror or str(exc), exc.errno) from None


def _drop_stdout() -> None:
    """Point stdout at /dev/null after it failed, as the Python docs advise for SIGPIPE: what is still
    buffered then goes nowhere at exit, instead of failing again with a second error and exit 120."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):  # no real descriptor behind sys.stdout
        pass


def write_outputs(command: str, outputs) -> bool:
    """Write every ``(text, path)``; one that fails is one line on stderr, and the others are still
    written (nothing already gathered is lost). True when every output was written."""
    from scanner.output.atomicwrite import OutputError
    from scanner.output.streaming import StreamFailed

    written = True
    for text, path in outputs:
        try:
            write_output(path, text)
        except (OutputError, StreamFailed) as exc:
            print(f"vfio-scan {command}: error: {exc}", file=sys.stderr)
            written = False
    return written
