"""The remediation script: one reviewed, idempotent, ordered bash script built from a scan.

Built from the failing (not waived) findings only. Steps are grouped by phase — firmware notes,
kernel, boot configuration, modules, SR-IOV, binding, access — so nothing later undoes
something earlier; every block checks the state before acting, so a second run changes nothing;
boot-loader and initramfs regeneration and the reboot notice are deferred to one place each.
By default the script only prints what it would do (``DRY_RUN=1``); ``ROOT`` prefixes every file
it reads or writes and ``SYSFS`` (default ``$ROOT/sys``) every sysfs path, so the same script
can be tested against a fixture tree. Steps only a person can do become explicit
``# NO AUTOMATED FIX`` lines, never silent omissions.

Every value that reaches the script is validated again here against a strict pattern and
quoted; an action that fails validation is not emitted as code but as a NO AUTOMATED FIX note.
"""

from __future__ import annotations

import json
import shlex
from typing import Dict, List, Tuple

from reports import script_actions, script_devices
from scanner.model import PHASES
from scanner.report import is_blocking
from scanner.shell import UnsafeValue

PHASE_TITLES = {
    "firmware": "firmware settings (a person must do these)",
    "kernel": "kernel",
    "boot": "boot configuration (kernel command line)",
    "modules": "kernel modules",
    "sriov": "SR-IOV virtual functions",
    "binding": "driver binding",
    "access": "access for the VM's user",
}

PREAMBLE = r'''set -euo pipefail

DRY_RUN=${DRY_RUN:-1}        # 1: only print what would be done; 0: do it
ROOT=${ROOT:-}               # prefix of every file read or written (a test tree; empty on a real host)
SYSFS=${SYSFS:-$ROOT/sys}    # where sysfs is
BOOT_CHANGED=0               # the boot loader's configuration needs regenerating
INITRAMFS_CHANGED=0          # the initramfs needs rebuilding
REBOOT_REASONS=()            # why a reboot is needed

say() { printf '%s\n' "$*"; }

# run CMD ARGS...: run a command (or say it would be run)
run() {
    if [ "$DRY_RUN" = 1 ]; then say "would run: $*"; else say "+ $*"; "$@"; fi
}

# write_file PATH CONTENT: give a file exactly this content, unless it already has it (sets CHANGED=1)
CHANGED=0
write_file() {
    local path="$ROOT$1" content="$2"
    if [ -f "$path" ] && [ "$(cat "$path")" = "$content" ]; then
        say "unchanged: $path"
        return 0
    fi
    CHANGED=1
    if [ "$DRY_RUN" = 1 ]; then
        say "would write $path:"
        printf '    %s\n' "$content"
        return 0
    fi
    mkdir -p "$(dirname "$path")"
    printf '%s\n' "$content" > "$path"
    say "wrote $path"
}

# edit_file PATH SED-EXPRESSION: edit a file in place with sed -E
edit_file() {
    local path="$ROOT$1"
    if [ "$DRY_RUN" = 1 ]; then say "would edit $path: sed -E '$2'"; return 0; fi
    sed -i -E "$2" "$path"
    say "edited $path"
}

# sysfs_write VALUE PATH: write one value to a sysfs file
sysfs_write() {
    if [ "$DRY_RUN" = 1 ]; then say "would write '$1' to $2"; return 0; fi
    say "+ echo $1 > $2"
    printf '%s\n' "$1" > "$2"
}

# module_loaded NAME: is the module loaded (or built in with a /sys/module entry)?
module_loaded() {
    grep -q "^$1 " "$ROOT/proc/modules" 2>/dev/null || [ -d "$SYSFS/module/$1" ]
}

# needs_reboot WHY: remember that a reboot is needed
needs_reboot() { REBOOT_REASONS+=("$1"); }
''' + script_devices.DEVICE_FUNCTIONS


def _steps_by_phase(report, fail_on: str) -> Dict[str, List[Tuple[object, object]]]:
    phases: Dict[str, List[Tuple[object, object]]] = {p: [] for p in PHASES}
    for finding in report.findings:
        if finding.status == "waived" or not is_blocking(finding, fail_on):
            continue
        for step in finding.remediation:
            phases[step.phase].append((finding, step))
    return phases


def _header(report, addressed) -> List[str]:
    host = report.host
    lines = [
        "#!/usr/bin/env bash",
        "# shellcheck disable=SC2034  # the preamble's flags are used only by the blocks a scan needs",
        "# vfio-scan remediation script",
        f"# host: {_comment(host.get('hostname'))}  kernel: {_comment(host.get('kernel'))}  "
        f"source: {_comment(host.get('source'))}",
        f"# scanned: {_comment(report.started_at)}  by {_comment(report.tool.get('name'))} "
        f"{_comment(report.tool.get('version'))}",
        "#",
        "# It addresses these findings:" if addressed else "# Nothing to fix: no failing finding.",
    ]
    for f in addressed:
        lines.append(f"#   {f.rule_id} {f.rule} {_comment(f.subject)}: {_comment(f.message)[:150]}")
    lines += [
        "#",
        "# Review it before running. By default it only prints what it would do.",
        "#   apply on this host:        sudo DRY_RUN=0 bash THIS_SCRIPT",
        "#   try it against a tree:     ROOT=/path/to/tree DRY_RUN=0 bash THIS_SCRIPT",
        "# Running it twice changes nothing the second time. It never unbinds the device that",
        "# carries the default route or the root filesystem, never uses new_id, and never",
        "# reboots by itself.",
        "",
    ]
    return lines


def _comment(text) -> str:
    """Text safe inside a ``#`` comment: one line, no control characters."""
    text = str(text or "")
    if text.isprintable():  # the usual case, without a Python step per character
        return text.strip()
    return "".join(ch if ch.isprintable() else "?" for ch in text).strip()


def _manual(finding, step, why: str = "") -> List[str]:
    text = why or step.summary
    lines = [f"# NO AUTOMATED FIX: {finding.rule_id} {_comment(finding.subject)} — {_comment(text)}"]
    lines += [f"#   suggested: {_comment(c)}" for c in step.commands]
    said = f"MANUAL: {finding.rule_id} — " + _comment(text)
    if "$" in said or "`" in said:  # the host's own text, literal on purpose (shellcheck would ask to expand it)
        lines.append("# shellcheck disable=SC2016")
    lines.append(f"say {shlex.quote(said)}")
    return lines


def render_report(report, fail_on: str = "fail") -> str:
    phases = _steps_by_phase(report, fail_on)
    addressed, seen = [], set()  # by identity (findings hold dicts), in one pass
    for items in phases.values():
        for finding, _ in items:
            if id(finding) not in seen:
                seen.add(id(finding))
                addressed.append(finding)
    out = _header(report, addressed) + [PREAMBLE]
    context = script_actions.Context(report=report, fixed_rules={f.rule_id for f in addressed})
    for phase in PHASES:
        blocks: Dict[int, Tuple[object, List[object]]] = {}  # by identity: findings hold dicts
        for finding, step in phases[phase]:
            blocks.setdefault(id(finding), (finding, []))[1].append(step)
        if blocks:
            out.append(f"# ===== {PHASE_TITLES[phase]} =====")
        for finding, steps in blocks.values():
            out.append(f"# BEGIN {finding.rule_id} {_comment(finding.subject)}")
            for step in steps:
                out.append(f"# {_comment(step.summary)}")
                out.extend(_step_lines(finding, step, context))
            out.append(f"# END {finding.rule_id} {_comment(finding.subject)}")
            out.append("")
        out.extend(script_actions.after_phase(phase, context))
    out.extend(script_actions.after_all(context))
    out += [
        "# ===== reboot =====",
        'if [ "${#REBOOT_REASONS[@]}" -gt 0 ]; then',
        '    say "A reboot is needed for: ${REBOOT_REASONS[*]}"',
        "fi",
        "say \"Done. Run 'vfio-scan scan' again to check the result.\"",
    ]
    return "\n".join(out) + "\n"


def _step_lines(finding, step, context) -> List[str]:
    if step.action and step.action.get("kind") == "see-rule":
        others = [r for r in step.action.get("rules") or () if r in context.fixed_rules and r != finding.rule_id]
        if others:
            return [f"# follows from {', '.join(others)} in this script (after the reboot)"]
    action = step.action or {}
    if action.get("kind") == "bind-vfio" and action.get("host_critical"):
        return [f"# NO AUTOMATED FIX: {finding.rule_id} {_comment(finding.subject)} — {_comment(step.summary)}"
                ] + script_devices.refusal(action)
    body = None
    if not step.manual and step.action:
        key = _action_key(step.action, context)
        if key in context.emitted:
            return ["# already done above (the same step serves several findings)"]
        context.emitted.add(key)
        try:
            body = script_actions.emit(step.action, context)
        except UnsafeValue as exc:
            body = _manual(finding, step, f"refused: {exc}")
    return body if body is not None else _manual(finding, step)


def _action_key(action, context) -> str:
    """``json.dumps(action, sort_keys=True, default=str)``: what makes two steps the same.

    Kept per action object: one step shared by many findings (every target's ``vfio-ids`` step,
    :func:`scanner.binding.persistent_steps`, with the scan's whole list of addresses) is encoded
    once, not once per target, which made a script for thousands of targets quadratic.
    """
    known = context.encoded.get(id(action))
    if known is not None and known[0] is action:
        return known[1]
    key = json.dumps(action, sort_keys=True, default=str)
    context.encoded[id(action)] = (action, key)
    return key


def render(reports, options) -> str:
    if len(reports) != 1:
        from scanner.cli import UsageError

        raise UsageError("a remediation script is written for one host at a time")
    return render_report(reports[0], reports[0].fail_on)

