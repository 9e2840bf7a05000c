"""``vfio-scan scan``: read a host, run every rule, report in one or more formats."""

from __future__ import annotations

import sys

from scanner.base.errors import UsageError
from scanner.commands.common import (add_host_arguments, add_plugin_arguments, add_policy_arguments, add_target_arguments,
                                     add_vm_user_arguments,
                                     check_distinct, check_writable, host_set, load_policy, load_registry, parse_targets, write_outputs)
from scanner.engine.report import FAIL_ON_CHOICES


def add_arguments(parser, hosts: bool = True) -> None:
    """Every scan option; ``hosts=False`` leaves out where hosts come from ('vfio-scan fleet' has its own)."""
    if hosts:
        src = parser.add_argument_group("what to scan")
        add_host_arguments(src)
    dev = parser.add_argument_group("device targets")
    add_target_arguments(dev)
    out = parser.add_argument_group("output")
    out.add_argument("--format", default="table", help="table (default), json or junit, or a plugin's format")
    out.add_argument("-o", "--output", metavar="FILE", help="write the --format output to FILE instead of stdout")
    out.add_argument("--json", metavar="FILE", dest="json_file", help="also write the JSON report to FILE")
    out.add_argument("--junit", metavar="FILE", dest="junit_file", help="also write the JUnit XML report to FILE")
    out.add_argument("--script", metavar="FILE", dest="script_file",
                     help="also write the remediation script (bash, dry-run by default) to FILE")
    out.add_argument("-v", "--verbose", action="store_true", help="show the evidence behind every finding in the table")
    out.add_argument("--validate", action="store_true", help="validate the JSON report against its schema before writing")
    sel = parser.add_argument_group("judgement")
    sel.add_argument("--fail-on", choices=FAIL_ON_CHOICES, default=None, metavar="LEVEL",
                     help="what makes the exit code 1: 'fail' (default: any failing check; or the policy's fail_on), "
                          "'warn' (warnings too), or a severity (info, low, medium, high, critical: failing checks at "
                          "or above it)")
    sel.add_argument("--rule", action="append", default=[], metavar="ID", help="run only this rule (repeatable; id or name)")
    sel.add_argument("--skip-rule", action="append", default=[], metavar="ID", help="do not run this rule (repeatable)")
    add_vm_user_arguments(sel)
    sel.add_argument("--managed", action="store_true",
                     help="the VM manager detaches each target from its host driver at VM start (libvirt "
                          "managed='yes', Proxmox): a target on its host driver passes when it can be detached")
    add_policy_arguments(sel)
    add_plugin_arguments(parser)


def pick_rules(registry, choice, policy=None):
    """The rules to run: ``choice`` (a :class:`~scanner.commands.options.PolicyChoice`) names only known ones."""
    from scanner.engine.runner import select_rules

    known = {r.id for r in registry.rules.values()} | {r.name for r in registry.rules.values()}
    for option, values in (("--rule", choice.rules), ("--skip-rule", choice.skip_rules)):
        unknown = [v for v in values if v not in known]
        if unknown:
            raise UsageError(f"{option} {unknown[0]}: no such rule (see 'vfio-scan rules')")
    if policy is not None:  # --rule/--skip-rule already merged into the policy's only/skip
        return select_rules(registry.sorted_rules(), policy.only, policy.skip)
    return select_rules(registry.sorted_rules(), choice.rules, choice.skip_rules)


def vm_user(text):
    """``--vm-user`` as given (None when not): one plain word, or a usage error."""
    if text is not None and (not text or not text.isprintable() or text.split() != [text]):
        raise UsageError(f"--vm-user {text!r}: not a user name")
    return text


def guest_memory(text):
    """``--guest-memory`` in bytes (None when not given); a size that is none is a usage error."""
    if text is None:
        return None
    from scanner.facts.memlock import parse_size

    try:
        return parse_size(text)
    except ValueError as exc:
        raise UsageError(f"--guest-memory {exc}") from None


def one_host_per_script(out, hosts, source) -> None:
    """A remediation script is for one host, and so are NFD's labels (one node's): asked of many (--snapshot
    files, a fleet), a usage error before anything is scanned, instead of a failed output after every host was."""
    if len(hosts.jobs) <= 1:
        return
    given = f"{'--snapshot gives' if source.snapshots else 'the fleet has'} {len(hosts.jobs)} hosts"
    asked = [f"--script {out.script_file}"] if out.script_file else []
    if out.format == "script":
        asked.insert(0, f"-o {out.output}" if out.output not in (None, "-") else "--format script")
    if asked:
        raise UsageError(f"{asked[0]}: a remediation script is written for one host at a time, and {given}; "
                         "write one script per host")
    if out.format == "nfd":
        raise UsageError(f"--format nfd labels one node, and {given}: scan one host per run (the DaemonSet runs "
                         "on each node)")


def run(options, finished=None) -> int:
    """Scan as ``options`` (a :class:`~scanner.commands.options.ScanOptions`) say and write every output;
    ``finished(reports, written, code)`` (``fix``'s) may then say more and decide the exit code, once
    everything was written: ``written`` is each output's (format, path)."""
    out, command = options.outputs, options.command
    extra = (("json", "--json", out.json_file), ("junit", "--junit", out.junit_file),
             ("script", "--script", out.script_file))
    files = [(option, path) for option, path in [("-o", out.output)] + [(opt, path) for _, opt, path in extra]
             if path is not None]
    for option, path in files:
        check_writable(path, option)
    check_distinct(files)
    selectors, vfs = parse_targets(options.targets)
    hosts = host_set(options.hosts)  # one host, one per --snapshot file, or vfio-scan fleet's
    one_host_per_script(out, hosts, options.hosts)
    registry = load_registry(options.strict_plugins)
    if out.format not in registry.formats:
        raise UsageError(f"--format {out.format}: unknown format; choose from {', '.join(sorted(registry.formats))}")
    policy = load_policy(options.policy, registry)  # validated here, before any scanning
    rules = pick_rules(registry, options.policy, policy)
    selectors = list(policy.targets) + list(selectors)  # command-line targets add to the policy's

    from scanner.engine.runner import Scan
    from scanner.output.formats import InvalidReport, RenderFailed, preparer, render_all
    from scanner.engine.report import EXIT_INCOMPLETE, combined_exit_code
    from scanner.engine.scanning import scan_host

    outputs = [(out.format, out.output or "-")]
    outputs += [(fmt, path) for fmt, _, path in extra if path]
    vm = options.vm
    scan = Scan(fail_on=policy.fail_on or "fail", policy=policy, vm_user=vm_user(vm.user),
                guest_memory=guest_memory(vm.guest_memory), managed=vm.managed,
                options={"topology": any(fmt == "html" for fmt, _ in outputs)})  # the HTML draws each PCI tree
    reports = hosts.scan(lambda host: scan_host(host, rules, scan, selectors=selectors, vfs=vfs), fail_on=scan.fail_on,
                         finish=preparer(registry, outputs))  # used only where worker processes scan
    try:
        rendered = render_all(registry, reports, outputs, verbose=out.verbose, validate=out.validate,
                              fleet=hosts.fleet)
    except RenderFailed as exc:  # a format plugin failed: its line, the other outputs still written, exit 3
        from scanner.base.terminal_text import for_terminal  # a plugin's words: escaped; imported for this only

        print(f"vfio-scan {command}: error: {for_terminal(str(exc))}", file=sys.stderr)
        write_outputs(command, exc.rendered)
        return EXIT_INCOMPLETE
    except InvalidReport as exc:  # --validate caught a report that breaks the contract: one line, exit 3
        print(f"vfio-scan {command}: error: {exc}", file=sys.stderr)
        return EXIT_INCOMPLETE
    if not write_outputs(command, rendered):  # each failure already said on stderr, in one line
        return EXIT_INCOMPLETE
    code = combined_exit_code(reports)
    return finished(reports, outputs, code) if finished else code
