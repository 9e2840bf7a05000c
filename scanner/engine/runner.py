"""The engine: run every rule over one host's facts and collect findings.

Rules are pure, but plugins can be buggy: a rule that raises -- anything, ``sys.exit()`` and
BaseException subclasses included -- or runs past its deadline becomes an ``error`` finding (the
scan goes on, exit code 3), and a rule that returns something other than findings is caught here,
at the boundary, with the plugin's name. The guard that does it (:class:`Deadline`) also runs
plugin loading (scanner/engine/plugins.py) and format plugins (scanner/output/formats.py): whatever plugin code
does, the user's Ctrl-C aside, it comes back as one :class:`PluginCrash` with one line saying why.
"""

from __future__ import annotations

import _signal  # built in and loaded at start-up: the signal module would add enum classes to every run
import os
from collections.abc import Mapping
from functools import cached_property, lru_cache
from time import monotonic
from typing import Any, FrozenSet, Iterable, List, Optional, Sequence, Tuple

from scanner.base.gc_pause import collector_paused
from scanner.base.record import field, record, replace
from scanner.engine.model import PHASES, SEVERITIES, STATUSES, Evidence, Finding, Rule, Step


@record(frozen=True)
class Scan:
    """What a scan was asked to do; rules read it beside the facts.

    ``targets`` are the devices the selectors matched (:class:`scanner.facts.targets.Target`, in address
    order); ``unmatched`` the selectors that matched nothing, which rule VFIO-010 reports.
    ``policy`` (:class:`scanner.policy.model.Policy`) changes severities and applies waivers once the
    rules ran (:func:`scanner.engine.scanning.scan_host`); rules need not look at it.
    ``vm_user`` (``--vm-user``) is the user QEMU runs as (None: libvirt's, else root) and
    ``guest_memory`` (``--guest-memory``) the VM's RAM in bytes (None: not given): VFIO-018, VFIO-019.
    ``managed`` (``--managed``): the VMM detaches each target from its host driver at VM start
    (libvirt ``managed='yes'``, Proxmox), so VFIO-013 and VFIO-017 accept a detachable target.
    """

    targets: Tuple = ()
    unmatched: Tuple = ()
    fail_on: str = "fail"
    options: dict = field(default_factory=dict)
    policy: Optional[Any] = None
    vm_user: Optional[str] = None
    guest_memory: Optional[int] = None
    managed: bool = False

    @property
    def has_targets(self) -> bool:
        return bool(self.targets or self.unmatched)

    # Cached, not recomputed: device rules and their helpers ask for these once per target, and a
    # scan may have thousands of targets (a frozen dataclass still has a __dict__ to cache in).
    @cached_property
    def target_addresses(self) -> Tuple[str, ...]:
        return tuple(t.address for t in self.targets)

    @cached_property
    def target_set(self) -> FrozenSet[str]:
        """The targets' addresses as a set, for membership tests (a frozenset keeps its hash)."""
        return frozenset(self.target_addresses)

    @cached_property
    def memo(self) -> dict:
        """What helpers derive from this scan's targets once rather than once per target
        (:func:`scanner.remediation.persistent_binding._per_scan`); a new Scan (``replace``) starts empty."""
        return {}


# -- plugin code under guard ---------------------------------------------------------------------

#: Seconds one piece of plugin code may run: one rule on one host, one third-party plugin's import
#: and registration, one third-party format's rendering. ``0`` turns the deadline off.
TIMEOUT_ENV = "VFIO_SCAN_PLUGIN_TIMEOUT"
DEFAULT_TIMEOUT = 30.0
#: The longest deadline taken: a day (an interval timer of 1e10 s overflows the platform's time_t).
MAX_TIMEOUT = 86400.0
#: Once a deadline has passed the alarm repeats this often: plugin code that swallowed one gets the next.
_REPEAT_S = 0.5
#: How much sooner than the deadline an alarm may seem to come, timer and clock measured apart.
_EARLY_S = 0.001


class PluginCrash(Exception):
    """Plugin code raised, exited, overran its deadline or handed back the wrong thing; ``str()`` says which, in one line."""


class DeadlineExceeded(BaseException):
    """Raised inside plugin code once its deadline passed. A BaseException, so that the plugin's own
    ``except Exception`` lets it through."""


def plugin_timeout() -> float:
    """The deadline ``VFIO_SCAN_PLUGIN_TIMEOUT`` asks for (default 30 s; 0: none); ValueError when it is
    not a number of seconds from 0 to :data:`MAX_TIMEOUT`."""
    text = os.environ.get(TIMEOUT_ENV, "").strip()
    if not text:
        return DEFAULT_TIMEOUT
    try:
        seconds = float(text)
    except ValueError:
        seconds = float("nan")
    if not 0 <= seconds <= MAX_TIMEOUT:  # nan and inf too
        raise ValueError(f"{TIMEOUT_ENV}={text}: expected a number of seconds up to {MAX_TIMEOUT:.0f}, a day "
                         "(0: no deadline)")
    return seconds


def describe(exc: BaseException) -> str:
    """One line for what plugin code raised: ``SystemExit: 0``, ``Boom: why``, or a deadline's own words.

    The exception's text is the plugin's own code (``__str__``): when even that fails, the type says enough.
    """
    try:
        text = str(exc).strip().splitlines()
    except KeyboardInterrupt:
        raise
    except BaseException:
        text = []
    if isinstance(exc, DeadlineExceeded) and text:
        return text[0]
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


class Deadline:
    """Runs plugin code (:meth:`call`) so that nothing it does but the user's Ctrl-C escapes, and so
    that it stops once ``seconds`` have passed.

    Why a signal: Python cannot stop a thread, and a thread per rule per host would cost more than the
    rules on a tree of 10,000 devices. SIGALRM from a real-time interval timer raises
    :class:`DeadlineExceeded` inside the plugin's loop or blocking system call; it costs one system
    call per call (the timer is set as each call starts; one that ends early leaves it to the next
    call to set again; an alarm counts only once the running call has had its whole time, so one
    left from an earlier call, whenever its handler runs, is ignored). Entered as a context
    manager around many calls (one host's rules, the loading of every third-party plugin): the
    handler is installed once, and on leaving the timer is stopped and the handler before it restored.

    Where no timer can be had there is no deadline, and nothing else changes: outside the main thread
    (only it receives signals: ``vfio-scan fleet`` scans in threads), where setitimer does not exist,
    while another real-time timer runs (someone else's alarm is left alone), or when SIGALRM's handler
    was set outside Python (it could not be put back). A deadline cannot stop code that never returns
    to the interpreter (one long call into C); a forked worker (scanner/engine/hostpool.py) is its own main
    thread and has the deadline too. Not entered, a Deadline guards without a timer.
    """

    def __init__(self, seconds: float = 0.0):
        self.seconds = seconds
        self._restore = None  # SIGALRM's previous handler, while ours is installed
        self._running = False
        self._fired = False
        self._started = 0.0  # when the running call started (time.monotonic)

    def __enter__(self) -> "Deadline":
        if self.seconds > 0:
            self._restore = _take_alarm(self._on_alarm)
        return self

    def __exit__(self, *exc_info) -> None:
        if self._restore is not None:
            _signal.setitimer(_signal.ITIMER_REAL, 0)
            _signal.signal(_signal.SIGALRM, self._restore)
            self._restore = None

    def call(self, function, *args):
        """``function(*args)``; whatever it raises but KeyboardInterrupt comes back as PluginCrash."""
        try:
            return self._timed(function, *args)
        except (KeyboardInterrupt, PluginCrash):  # Ctrl-C is the user's (a plugin's own too: exit 130)
            raise
        except BaseException as exc:  # an exit(), GeneratorExit, a BaseException of its own, the deadline
            raise PluginCrash(describe(exc)) from exc

    def _timed(self, function, *args):
        if self._restore is None:
            return function(*args)
        self._fired = False
        _signal.setitimer(_signal.ITIMER_REAL, max(self.seconds, 0.001), _REPEAT_S)
        self._started = monotonic()
        self._running = True
        try:
            result = function(*args)
        finally:
            self._running = False  # an alarm from here on is ignored; the next call or leaving stops it
        if self._fired:  # it caught the deadline and came back anyway: its answer is not trusted
            raise DeadlineExceeded(self._overrun())
        return result

    def _on_alarm(self, signum, frame) -> None:
        # Python runs a handler some bytecodes after the signal: an alarm of the last call's timer can be
        # handled once this call has started. It counts only when this call has had its time.
        if self._running and monotonic() - self._started >= self.seconds - _EARLY_S:
            self._fired = True
            raise DeadlineExceeded(self._overrun())

    def _overrun(self) -> str:
        return f"did not finish within {self.seconds:g} s ({TIMEOUT_ENV})"


def _take_alarm(handler):
    """Install ``handler`` for SIGALRM; the handler it replaced, or None when the alarm is not ours to take."""
    if not hasattr(_signal, "setitimer"):
        return None
    try:
        if _signal.getitimer(_signal.ITIMER_REAL) != (0.0, 0.0):
            return None
        previous = _signal.getsignal(_signal.SIGALRM)
        if previous is None:
            return None
        _signal.signal(_signal.SIGALRM, handler)  # ValueError outside the main thread
    except (ValueError, OSError):
        return None
    return previous


def _usable_subject(subject) -> bool:
    """``host``, a PCI address, a selector: one printable word (it names JUnit cases and script comments)."""
    return isinstance(subject, str) and _usable_word(subject)


@lru_cache(maxsize=1 << 16)  # a scan's subjects are its targets: each is asked of every device rule's findings
def _usable_word(subject: str) -> bool:
    # split() cuts at exactly the characters isspace() names: one piece, the subject itself, means none
    return bool(subject) and subject.isprintable() and subject.split() == [subject]


def _evidence_malformed(evidence) -> bool:
    if not isinstance(evidence, tuple):
        return True
    for e in evidence:
        if not (isinstance(e, Evidence) and isinstance(e.source, str) and isinstance(e.value, str)):
            return True
    return False


def _malformed_step(step) -> str:
    if not isinstance(step, Step):
        return f"a remediation step that is a {type(step).__name__}, not a Step"
    if step.phase not in PHASES:
        return f"a remediation step with an unknown phase {step.phase!r}"
    if not isinstance(step.summary, str) or not step.summary.strip():
        return "a remediation step without a summary"
    for name in ("commands", "undo"):
        lines = getattr(step, name)
        if not isinstance(lines, tuple) or not all(isinstance(c, str) for c in lines):
            return f"a remediation step whose {name} are not all strings"
    if not all(isinstance(getattr(step, flag), bool) for flag in ("requires_reboot", "manual", "persistent")):
        return "a remediation step with a flag that is not true or false"
    if step.action is not None and not (isinstance(step.action, Mapping) and isinstance(step.action.get("kind"), str)):
        return "a remediation step whose action is not a mapping with a 'kind'"
    return ""


def _malformed(item) -> str:
    """Why a rule's output cannot be reported as it is, or '' when it is a proper finding.

    Checked here, at the boundary, because a malformed finding would otherwise crash a renderer
    far from the plugin that made it (frozen dataclasses can still be altered with
    ``object.__setattr__``).
    """
    if not isinstance(item, Finding):
        return f"{type(item).__name__}, not a Finding"
    if item.status not in STATUSES:
        return f"a finding with an unknown status {item.status!r}"
    if item.status == "waived" or item.waiver is not None:
        return "a waived finding (waivers come from a policy, never from a rule)"
    if item.severity is not None and item.severity not in SEVERITIES:
        return f"a finding with an unknown severity {item.severity!r}"
    if not isinstance(item.message, str) or not item.message.strip():
        return "a finding without a message"
    if not _usable_subject(item.subject):
        return f"a finding with an unusable subject {item.subject!r}"
    if not isinstance(item.observed, str) or not isinstance(item.expected, str):
        return "a finding whose observed or expected is not text"
    if _evidence_malformed(item.evidence):
        return "a finding whose evidence is not all Evidence(source, value) text"
    if not isinstance(item.remediation, tuple):
        return "a finding whose remediation is not a list of steps"
    for step in item.remediation:
        problem = _malformed_step(step)
        if problem:
            return problem
    return ""


def unreadable_targets(facts, scan: Scan) -> dict:
    """Targets whose sysfs state cannot be read (address -> why): no device rule can judge them."""
    reason_of = getattr(facts, "device_reason", None)
    if reason_of is None:
        return {}
    found = {}
    for target in scan.targets:
        why = reason_of(target.address)
        if why:
            found[target.address] = why
    return found


#: Every device rule's one skip when a scan names no devices (the table shows them as one line).
NO_TARGETS = "no device targets given (select devices with --device or --class)"


def run_rule(rule: Rule, facts, scan: Scan, deadline: Optional[Deadline] = None,
             unreadable: Optional[dict] = None) -> List[Finding]:
    """The rule's findings on this host; whatever its check does, the findings of a rule that failed.

    ``deadline`` (:func:`run_rules` gives one per host) bounds the check; without one it is only guarded.
    ``unreadable``: :func:`unreadable_targets`, when the caller found them once for all the device rules.
    """
    if rule.scope == "device" and not scan.has_targets:
        return [Finding.skip(NO_TARGETS).bind(rule)]
    if rule.scope != "device":
        unreadable = {}
    elif unreadable is None:
        unreadable = unreadable_targets(facts, scan)
    skipped: List[Finding] = []
    if unreadable:  # judged by no rule: a missing driver link does not mean "unbound"
        skipped = [Finding.skip(f"cannot read this device's state in sysfs ({why})", subject=address).bind(rule)
                   for address, why in unreadable.items()]
        scan = replace(scan, targets=tuple(t for t in scan.targets if t.address not in unreadable))
    who = f"rule {rule.id} from plugin {rule.plugin or '?'}"
    try:
        findings = skipped + (deadline or Deadline()).call(_checked_findings, rule, facts, scan, who)
    except PluginCrash as crash:  # its exit(), its BaseException, its deadline: this rule's error, not the scan's end
        return skipped + [Finding.error(f"{who} failed: {crash}").bind(rule)]
    if not findings and rule.scope == "device" and not scan.targets:
        findings.append(Finding.skip("no selected device exists on this host (see VFIO-010)").bind(rule))
    elif not findings:
        findings.append(Finding.error(f"{who} produced no finding").bind(rule))
    return findings


def _checked_findings(rule: Rule, facts, scan: Scan, who: str) -> List[Finding]:
    """The check's output, each proper finding bound to the rule and the malformed ones turned into errors.

    All of it runs under the rule's guard: iterating what the check returned runs the plugin's
    generator, and even looking at an item can run its code (a property of a Finding subclass).
    """
    produced = rule.check(facts, scan) or ()
    if isinstance(produced, (str, bytes, Mapping, Finding)):  # iterable, but not findings
        return [Finding.error(f"{who} returned a {type(produced).__name__}, not a list of findings").bind(rule)]
    produced = list(produced)  # the whole generator first: one that fails midway reports nothing of it
    findings: List[Finding] = []
    refused: dict = {}  # subject -> what was wrong: one error per subject, however many bad items
    for item in produced:
        problem = _malformed(item)
        if not problem:
            try:
                findings.append(_bound(item, rule))
                continue
            except Exception as exc:  # whatever _malformed did not foresee: still this plugin's error
                problem = f"an unusable finding ({describe(exc)})"
        subject = item.subject if isinstance(item, Finding) and _usable_subject(item.subject) else "host"
        refused.setdefault(subject, []).append(problem)
    for subject, problems in refused.items():
        more = f" (and {len(problems) - 1} more malformed item(s))" if len(problems) > 1 else ""
        findings.append(Finding.error(f"{who} returned {problems[0]}{more}", subject=subject).bind(rule))
    return findings


def _bound(item: Finding, rule: Rule) -> Finding:
    """``item.bind(rule)``, made without a second validation for the model's own Finding: a device rule's
    findings number its targets, and :func:`_malformed` has just checked what ``bind`` would check again."""
    if type(item) is not Finding:  # a subclass may bind its own way
        return item.bind(rule)
    bound = object.__new__(Finding)
    state = bound.__dict__
    state.update(item.__dict__)
    state["rule_id"], state["rule"], state["title"] = rule.id, rule.name, rule.title
    state["severity"] = item.severity or rule.severity
    return bound


def run_rules(rules: Iterable[Rule], facts, scan: Scan, unreadable: Optional[dict] = None) -> List[Finding]:
    """Every rule on one host, each under the deadline of ``VFIO_SCAN_PLUGIN_TIMEOUT`` (one alarm
    handler for the host, one timer per rule: nothing per device). ``unreadable``: the targets no device
    rule can judge (:func:`unreadable_targets`) when the caller found them already."""
    findings: List[Finding] = []
    # the targets no device rule can judge: found once, by the first device rule to run (or the caller)
    # GC paused: the rules make a finding per rule and target (over a hundred thousand long-lived objects
    # on thousands of targets) and next to no cyclic garbage; each full collection on the way walked all
    # of it again, about a sixth of such a scan
    with Deadline(plugin_timeout()) as deadline, collector_paused():
        for rule in sorted(rules, key=lambda r: r.id):
            if rule.scope == "device" and scan.has_targets and unreadable is None:
                unreadable = unreadable_targets(facts, scan)
            findings.extend(run_rule(rule, facts, scan, deadline, unreadable))
    return findings


def select_rules(rules: Sequence[Rule], only: Sequence[str] = (), skip: Sequence[str] = ()) -> List[Rule]:
    """Rules to run: all, or those named by ``only``, minus ``skip`` (ids or names)."""
    wanted = set(only)
    unwanted = set(skip)
    return [r for r in rules if (not wanted or r.id in wanted or r.name in wanted)
            and r.id not in unwanted and r.name not in unwanted]
