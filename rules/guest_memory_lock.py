"""VFIO-019 guest-memory-lock: the VM's user may lock all of the guest's memory.

What: with ``--guest-memory SIZE`` (the VM's RAM: ``16G``, ``16384M``; a bare number is MiB, as
for QEMU's ``-m``), the ``RLIMIT_MEMLOCK`` the user QEMU runs as gets (see VFIO-018 for who that
is) covers the guest's memory plus 1 GiB, the margin libvirt itself adds for a VM with a VFIO
device (ROMs, the display's memory and the firmware's flash are pinned too).

Why: VFIO pins every page of guest memory for the device's DMA, and the kernel counts the pinned
pages against QEMU's locked-memory limit. A user's default is 8 MiB (64 KiB on older systems):
QEMU stops at start with ``vfio_pin_pages_remote: RLIMIT_MEMLOCK (65536) exceeded`` and
``VFIO_MAP_DMA failed: Cannot allocate memory``.

How: root passes (CAP_IPC_LOCK: no limit applies), and so does a user libvirt starts QEMU as
(``/etc/libvirt/qemu.conf`` present): libvirt raises the limit for each VM itself. Otherwise the
``memlock`` lines of ``/etc/security/limits.conf`` and ``/etc/security/limits.d/*.conf`` are
replayed as pam_limits reads them (the files in that order; a line for the user outranks one for
its ``@group``, which outranks ``*``; the last of the same rank wins), for the soft limit (what
the kernel checks) and the hard one (how far ``ulimit -l`` may raise it). Where no line applies, the
session keeps what its login daemon got from systemd: ``DefaultLimitMEMLOCK=`` in
``/etc/systemd/system.conf`` or its ``system.conf.d`` drop-ins, else systemd's default of 8 MiB. A
soft limit too low under a hard one that is high enough is a warning (``ulimit -l`` before starting
QEMU works); both too low is a fail. A limits file that cannot be read is a skip with the reason.
Without ``--guest-memory`` the rule skips, saying how to ask -- unless ``--vm-user`` names a user
whose limit is known and finite: QEMU pins all of the guest's memory, so that user's 8 MiB default
holds no guest at all, and READY without a word would fail at VM start. That is a warning naming the
limit and the largest guest it holds (with libvirt's margin); an unlimited one passes.

Fix: ``USER soft memlock KIB`` and ``USER hard memlock KIB`` in
``/etc/security/limits.d/95-vfio-scan-memlock.conf`` (merged into that file, never clobbering it),
effective at the user's next login; a QEMU started by a systemd unit needs ``LimitMEMLOCK=`` in the
unit instead.
"""

from typing import List

from scanner import hookimpl
from scanner.engine.model import Evidence, Finding, Rule, Step

RULE_ID = "VFIO-019"
#: What libvirt adds to the guest's memory for a VM with a VFIO device (qemuDomainGetMemLockLimitBytes).
MARGIN = 1 << 30  # 1 GiB


@hookimpl
def vfio_scan_register_rules(register):
    register(Rule(id=RULE_ID, name="guest-memory-lock", scope="host", severity="high",
                  title="The VM's user may lock the guest's memory", check=check, docs=__doc__))


def check(facts, scan):
    guest = scan.guest_memory
    if not guest:
        yield _without_size(facts, scan)
        return
    from scanner.facts.memlock import format_size

    need = guest + MARGIN
    expected = f"memlock of at least {format_size(need)} (the guest's {format_size(guest)} + 1 GiB)"
    user = facts.vm_user(scan.vm_user)
    if user.reason:
        yield Finding.skip(user.reason, expected=expected, evidence=user.evidence)
    elif user.is_root:
        yield Finding.passed(f"QEMU runs as root ({user.source}): CAP_IPC_LOCK, no locked-memory limit applies",
                             observed="root", expected=expected, evidence=user.evidence)
    elif user.libvirt:
        yield Finding.passed(f"libvirt raises the limit for each VM itself (to its memory + 1 GiB with a VFIO device); "
                             f"it starts QEMU as {user.label()}", observed="libvirt", expected=expected,
                             evidence=user.evidence)
    else:
        yield _judge_limits(facts, user, guest, need, expected)


def _without_size(facts, scan) -> Finding:
    """No guest size: a skip, unless ``--vm-user`` names a user whose finite limit is known (a warning)."""
    ask = ("give --guest-memory SIZE (the VM's RAM, e.g. 16G) to check that the VM's user may lock it: VFIO pins all "
           "guest memory")
    user = facts.vm_user(scan.vm_user) if scan.vm_user else None
    if user is None or user.reason or user.is_root or user.libvirt:
        return Finding.skip(ask)  # root and libvirt pass at any size: that is said when the size is given
    from scanner.facts.memlock import MIB, UNLIMITED, format_size  # only now: a plain scan needs none of it

    limits = _limits(facts, user)
    if isinstance(limits, Finding):
        return limits
    soft, hard, evidence, said = limits
    observed = f"soft {format_size(soft)}, hard {format_size(hard)}"
    if soft == UNLIMITED:
        return Finding.passed(f"{said}: no limit on the guest's memory", observed=observed, evidence=evidence)
    room = soft - MARGIN
    holds = (f"a guest of at most {format_size(room)} (its memory + 1 GiB, libvirt's margin, is pinned)"
             if room >= 64 * MIB else "no guest at all (VFIO pins all of a guest's memory, and more)")
    return Finding.warn(f"{said}: that holds {holds}; give --guest-memory SIZE to check the VM's own size against it",
                        observed=observed, evidence=evidence)


def _limits(facts, user, expected: str = None):
    """(soft, hard, evidence, "USER may lock N (from where)") of the user's locked-memory limit as pam_limits
    sets it, or the skip when a limits file cannot be read."""
    from scanner.facts.memlock import format_size, memlock_for

    unread = [r for r in facts.limits_files if not r.ok and not r.missing]
    evidence = list(user.evidence) + [Evidence(r.path, f"<{r.reason}>") for r in unread]
    if unread:
        return Finding.skip(f"cannot read {unread[0].describe()}: the locked-memory limit of {user.name} is unknown",
                            expected=expected, evidence=evidence)
    memlock = memlock_for(facts.memlock_lines, user.who)
    base_soft, base_hard, base_from = _baseline(facts)
    soft = memlock.soft if memlock.soft is not None else base_soft
    hard = memlock.hard if memlock.hard is not None else base_hard
    evidence += _limit_evidence(memlock, base_from)
    return soft, hard, evidence, f"{user.label()} may lock {format_size(soft)} ({_source(memlock.soft_from, base_from)})"


def _judge_limits(facts, user, guest: int, need: int, expected: str) -> Finding:
    from scanner.facts.memlock import KIB, format_size

    limits = _limits(facts, user, expected)
    if isinstance(limits, Finding):
        return limits
    soft, hard, evidence, said = limits
    observed = f"soft {format_size(soft)}, hard {format_size(hard)}"
    if soft >= need:
        return Finding.passed(f"{said}: enough for {format_size(guest)} of guest memory (a QEMU started by a systemd "
                              "unit gets the unit's LimitMEMLOCK= instead)", observed=observed, expected=expected,
                              evidence=evidence)
    if hard >= need:
        return Finding.warn(f"{said}, under the {format_size(need)} a {format_size(guest)} guest pins; the hard limit "
                            f"({format_size(hard)}) lets 'ulimit -l {-(-need // KIB)}' raise it before QEMU starts, "
                            "else VFIO's DMA mapping fails", observed=observed, expected=expected, evidence=evidence,
                            remediation=_steps(facts, user, need))
    return Finding.fail(f"{said}, under the {format_size(need)} a {format_size(guest)} guest pins: QEMU stops at start "
                        "with \"vfio_pin_pages_remote: RLIMIT_MEMLOCK exceeded\"", observed=observed, expected=expected,
                        evidence=evidence, remediation=_steps(facts, user, need))


def _baseline(facts):
    """(soft, hard, where) of what a session has before pam_limits: systemd's DefaultLimitMEMLOCK."""
    from scanner.facts.memlock import SYSTEMD_DEFAULT

    configured = facts.systemd_memlock
    if configured is not None:
        soft, hard, path = configured
        return soft, hard, f"DefaultLimitMEMLOCK in {path}"
    return SYSTEMD_DEFAULT, SYSTEMD_DEFAULT, "systemd's default of 8 MiB (64 KiB before systemd 253)"


def _source(line, base_from: str) -> str:
    return line.where if line is not None else f"no memlock line applies, so the login's own: {base_from}"


def _limit_evidence(memlock, base_from: str) -> List[Evidence]:
    lines = [line for line in (memlock.soft_from, memlock.hard_from, memlock.ignored) if line is not None]
    found = [Evidence(line.where, line.text) for line in dict.fromkeys(lines)]
    if memlock.ignored is not None:
        found.append(Evidence("pam_limits", f"{memlock.ignored.where} sets no limits at all for this user"))
    return found + [Evidence("baseline", base_from)]


def _steps(facts, user, need: int) -> List[Step]:
    from scanner.facts.memlock import KIB
    from scanner.remediation.vm_access import ACCOUNT_NAME, MEMLOCK_FILE, memlock_step

    kib = -(-need // KIB)
    if not ACCOUNT_NAME.match(user.name):
        return [Step(summary=f"Let {user.name} lock {kib} KiB (soft and hard memlock in {MEMLOCK_FILE}); its name is "
                             "not one this tool writes into a file", phase="access", manual=True)]
    return [memlock_step(user.name, kib, facts.etc_file(MEMLOCK_FILE))]
