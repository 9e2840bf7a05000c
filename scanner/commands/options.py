"""What a command was asked to do, as typed values: the one place the parsed command line is read.

:func:`from_namespace` turns argparse's namespace into one options object per command, right after
parsing (scanner/cli.py); the commands and everything below them take these objects, never the
namespace, so what each layer depends on is spelled out, and a function can be called with the
options it needs rather than a stand-in for a whole command line.

Values are carried over as given: checking them (a malformed target, an unreadable policy) stays
with the code that uses them, in the same order as before, so the errors a user sees do not move.

The classes are declared like dataclasses but are not: a frozen dataclass costs a generated
``__init__`` (and more) at import, on every run, for objects made once; a plain scan is measured on
its start-up. The annotations are never evaluated (``from __future__ import annotations``).
"""

from __future__ import annotations

TYPE_CHECKING = False  # typing's own flag, without importing typing first
if TYPE_CHECKING:  # names for the annotations only
    from typing import Optional, Tuple

    from scanner.engine.hostset import HostSet


class Options:
    """A frozen record, declared like a dataclass: each annotated name is a field, given by keyword, and
    its class value (if any) is its default. Building the class costs no more than any class."""

    FIELDS: tuple = ()

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        cls.FIELDS = cls.FIELDS + tuple(name for name in cls.__dict__.get("__annotations__", {}) if name != "FIELDS")

    def __init__(self, **values):
        unknown = set(values) - set(self.FIELDS)
        if unknown:
            raise TypeError(f"{type(self).__name__}: no field {', '.join(sorted(unknown))}")
        for name in self.FIELDS:
            if name in values:
                value = values[name]
            elif hasattr(type(self), name):
                value = getattr(type(self), name)
            else:
                raise TypeError(f"{type(self).__name__}: {name} is required")
            object.__setattr__(self, name, value)

    def __setattr__(self, name, value):
        raise AttributeError(f"{type(self).__name__} is frozen: use replace()")

    def __delattr__(self, name):
        raise AttributeError(f"{type(self).__name__} is frozen")

    def replace(self, **changes) -> "Options":
        """A copy with ``changes``, as ``dataclasses.replace``."""
        return type(self)(**dict(self.items(), **changes))

    def items(self) -> list:
        return [(name, getattr(self, name)) for name in self.FIELDS]

    def __eq__(self, other):
        return type(other) is type(self) and self.items() == other.items()

    __hash__ = None  # equal by value, and some values are not hashable (a prepared host set)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(f'{n}={v!r}' for n, v in self.items())})"


# -- the concerns several commands share -----------------------------------------------------------

class HostSource(Options):
    """Where the host (or hosts) to read come from: ``--root`` (with ``--kernel-log``), ``--snapshot``
    files, or a host set made by the command itself (``vfio-scan fleet``'s); nothing: this machine."""

    root: Optional[str] = None
    kernel_log: Optional[str] = None
    snapshots: Tuple[str, ...] = ()
    preset: Optional[HostSet] = None


class Targets(Options):
    """The devices asked for, as typed: ``--device``, ``--class``, ``--vfs`` selectors (parsed by the command)."""

    devices: Tuple[str, ...] = ()
    classes: Tuple[str, ...] = ()
    vfs: Tuple[str, ...] = ()


class PolicyChoice(Options):
    """How findings are judged: ``--policy`` file, ``--rule``/``--skip-rule``, ``--severity`` overrides,
    ``--fail-on`` and ``--as-of`` (waiver expiry)."""

    file: Optional[str] = None
    rules: Tuple[str, ...] = ()
    skip_rules: Tuple[str, ...] = ()
    severities: Tuple[str, ...] = ()  # RULE=LEVEL, as typed
    fail_on: Optional[str] = None
    as_of: Optional[str] = None  # YYYY-MM-DD, as typed


class Outputs(Options):
    """What a scan writes: ``--format`` to ``-o`` (stdout when None), the extra ``--json``/``--junit``/
    ``--script`` files, and how (``--verbose`` table, ``--validate`` JSON). Width and colour are not
    options: each output takes them from where it goes (scanner/output/formats.py)."""

    format: str = "table"
    output: Optional[str] = None
    json_file: Optional[str] = None
    junit_file: Optional[str] = None
    script_file: Optional[str] = None
    verbose: bool = False
    validate: bool = False


class VmSide(Options):
    """What the scan is told about the VM: the user QEMU runs as, its memory, and whether its manager
    detaches the targets itself (``--vm-user``, ``--guest-memory``, ``--managed``), as typed."""

    user: Optional[str] = None
    guest_memory: Optional[str] = None
    managed: bool = False


# -- one object per command ------------------------------------------------------------------------

class ScanOptions(Options):
    """``scan``, ``fix`` and the scanning half of ``fleet``; ``command`` names the command in messages."""

    command: str
    hosts: HostSource
    targets: Targets
    policy: PolicyChoice
    outputs: Outputs
    vm: VmSide
    strict_plugins: bool


class FleetHosts(Options):
    """Which hosts ``fleet`` reaches: HOST arguments, ``--hosts-file``, ``-i`` inventories, ``--limit``."""

    names: Tuple[str, ...]
    hosts_files: Tuple[str, ...]
    inventories: Tuple[str, ...]
    limits: Tuple[str, ...]


class Connection(Options):
    """How ``fleet`` reaches each host: ``--parallel``, ``--timeout``, ssh's options and config, the remote
    Python, ``--sudo``, and where to keep the snapshots."""

    parallel: int
    timeout: float
    ssh_options: Tuple[str, ...]
    ssh_config: Optional[str]
    python: str
    sudo: bool
    save_snapshots: Optional[str]


class FleetOptions(Options):
    hosts: FleetHosts
    connection: Connection
    scan: ScanOptions  # its hosts are filled in by the command, once it knows them


class ListOptions(Options):
    """``rules`` and ``plugins``: a listing as a table or JSON."""

    format: str
    strict_plugins: bool


class ExplainOptions(Options):
    rule: str
    strict_plugins: bool


class GroupsOptions(Options):
    hosts: HostSource
    format: str


class CollectOptions(Options):
    hosts: HostSource
    output: Optional[str]
    print_script: bool


class DiffOptions(Options):
    command: str
    old: str
    new: str
    targets: Targets
    format: str
    output: Optional[str]
    strict_plugins: bool


class GateOptions(Options):
    """``qemu-args`` and ``vm-config``: the host, the devices to pass, the policy, who QEMU runs as and the
    guest's memory, then what to print: ``machine``, and for vm-config the VM manager (``vmm``),
    ``--check FILE`` and ``--managed``."""

    hosts: HostSource
    targets: Targets
    policy: PolicyChoice
    strict_plugins: bool
    machine: str
    vmm: Optional[str] = None
    check: Optional[str] = None
    managed: bool = False
    vm_user: Optional[str] = None  # the user QEMU will run as, as typed: VFIO-018 and VFIO-019 judge it
    guest_memory: Optional[str] = None  # the VM's memory, as typed (--guest-memory 16G)


# -- from the parsed command line ------------------------------------------------------------------

def _host_source(args, kernel_log: bool = True, snapshots: bool = True) -> HostSource:
    return HostSource(root=args.root, kernel_log=args.kernel_log if kernel_log else None,
                      snapshots=tuple(args.snapshot or ()) if snapshots else ())


def _targets(args, vfs: bool = True) -> Targets:
    return Targets(devices=tuple(args.device), classes=tuple(args.pci_class), vfs=tuple(args.vfs) if vfs else ())


def _scan(args, hosts: bool = True) -> ScanOptions:
    return ScanOptions(
        command=args.command,
        hosts=_host_source(args) if hosts else HostSource(),
        targets=_targets(args),
        policy=PolicyChoice(file=args.policy, rules=tuple(args.rule), skip_rules=tuple(args.skip_rule),
                            severities=tuple(args.severity), fail_on=args.fail_on, as_of=args.as_of),
        outputs=Outputs(format=args.format, output=args.output, json_file=args.json_file, junit_file=args.junit_file,
                        script_file=args.script_file, verbose=args.verbose, validate=args.validate),
        vm=VmSide(user=args.vm_user, guest_memory=args.guest_memory, managed=args.managed),
        strict_plugins=args.strict_plugins)


def _fleet(args) -> FleetOptions:
    return FleetOptions(
        hosts=FleetHosts(names=tuple(args.hosts), hosts_files=tuple(args.hosts_file),
                         inventories=tuple(args.inventory), limits=tuple(args.limit)),
        connection=Connection(parallel=args.parallel, timeout=args.timeout, ssh_options=tuple(args.ssh_option),
                              ssh_config=args.ssh_config, python=args.python, sudo=args.sudo,
                              save_snapshots=args.save_snapshots),
        scan=_scan(args, hosts=False))


def _gate(args, **extra) -> GateOptions:
    return GateOptions(hosts=_host_source(args), targets=_targets(args, vfs=False),
                       policy=PolicyChoice(file=args.policy, as_of=args.as_of),
                       strict_plugins=args.strict_plugins, machine=args.machine, vm_user=args.vm_user,
                       guest_memory=args.guest_memory, **extra)


BUILDERS = {
    "scan": _scan,
    "fix": _scan,
    "fleet": _fleet,
    "rules": lambda args: ListOptions(format=args.format, strict_plugins=args.strict_plugins),
    "plugins": lambda args: ListOptions(format=args.format, strict_plugins=args.strict_plugins),
    "explain": lambda args: ExplainOptions(rule=args.rule, strict_plugins=args.strict_plugins),
    "groups": lambda args: GroupsOptions(hosts=_host_source(args, kernel_log=False), format=args.format),
    "collect": lambda args: CollectOptions(hosts=_host_source(args, snapshots=False), output=args.output,
                                           print_script=args.print_script),
    "diff": lambda args: DiffOptions(command=args.command, old=args.old, new=args.new,
                                     targets=_targets(args, vfs=False), format=args.format, output=args.output,
                                     strict_plugins=args.strict_plugins),
    "qemu-args": _gate,
    "vm-config": lambda args: _gate(args, vmm=args.vmm, check=args.check, managed=args.managed),
}


def from_namespace(args) -> Options:
    """The options object of ``args.command``, from argparse's namespace: every option the command
    takes lands in a field (tests/test_options.py walks the parser to hold this to account)."""
    return BUILDERS[args.command](args)
