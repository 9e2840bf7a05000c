"""The remediation script: one reviewed, idempotent, ordered bash script built from a scan.

Built from the failing (not waived) findings only. Steps are grouped by phase — firmware notes,
kernel, boot configuration, modules, SR-IOV, binding, access — so nothing later undoes
something earlier; every block checks the state before acting, so a second run changes nothing;
boot-loader and initramfs regeneration and the reboot notice are deferred to one place each.
By default the script only prints what it would do (``DRY_RUN=1``), with a diff of each file.
With ``ROOT`` it changes a copy of a host's tree and nothing else (scanner/remediation/script_paths.py), and
runs no host tool. Each block is a function run in a subshell of its own: a failure ends that
block only, and the summary names it (scanner/remediation/script_runtime.py). Steps only a person can do
become explicit ``# NO AUTOMATED FIX`` lines, never silent omissions.

Every value that reaches the script is validated again here against a strict pattern and
quoted; an action that fails validation, or a file change that cannot be merged safely, is not
emitted as code but as a NO AUTOMATED FIX note naming the reason.
"""

from __future__ import annotations

import json
import shlex
from typing import Dict, List, Tuple

from scanner.remediation import script_actions
from scanner.remediation import script_devices
from scanner.remediation.script_files import Raw
from scanner.remediation.script_guard import HOST_GUARD
from scanner.remediation.script_paths import INROOT
from scanner.remediation.script_runtime import runtime
from scanner.remediation.confedit import EditError
from scanner.engine.model import PHASES
from scanner.engine.report import is_blocking
from scanner.remediation.shell import UnsafeValue

PHASE_TITLES = {
    "firmware": "firmware settings (a person must do these)",
    "kernel": "kernel",
    "boot": "boot configuration (kernel command line)",
    "modules": "kernel modules",
    "sriov": "SR-IOV virtual functions",
    "binding": "driver binding",
    "access": "access for the VM's user",
}


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
        "# shellcheck disable=SC2034,SC2317  # the runtime's functions and flags serve only the blocks a scan needs",
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
        "# Review it before running. By default it only prints what it would do, with a diff of",
        "# every file it would change.",
        "#   apply on this host:        sudo DRY_RUN=0 bash THIS_SCRIPT",
        "#   try it against a tree:     ROOT=/path/to/tree DRY_RUN=0 bash THIS_SCRIPT",
        "#                              (files under the tree only; no host tool is run)",
        "# A run that changes something keeps a copy of every file it changes and an undo script",
        "# in /var/backups/vfio-scan/<time>-<pid>/ (BACKUPS=DIR elsewhere); it names them at the end.",
        "# Running it twice changes nothing the second time. It never unbinds a device the host",
        "# needs (its default route, its root, boot or swap disks), checks that each address still",
        "# holds the device that was scanned, never uses new_id, and never reboots by itself.",
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
    context = script_actions.Context(report=report, fixed_rules={f.rule_id for f in addressed})
    body: List[str] = []
    for phase in PHASES:
        blocks: Dict[int, Tuple[object, List[object]]] = {}  # by identity: findings hold dicts
        for finding, step in phases[phase]:
            blocks.setdefault(id(finding), (finding, []))[1].append(step)
        if blocks:
            body.append(f"# ===== {PHASE_TITLES[phase]} =====")
        for finding, steps in blocks.values():
            lines: List[str] = []
            for step in steps:
                lines.append(f"# {_comment(step.summary)}")
                lines.extend(_step_lines(finding, step, context))
            body += _block(f"{finding.rule_id} {_comment(finding.subject)}", lines, context)
        for name, lines in script_actions.after_phase(phase, context):
            body += _block(name, lines, context, marks=False)
    for name, lines in script_actions.after_all(context):
        body += [f"# ===== {name} ====="] + _block(name, lines, context, marks=False)
    body += ["# ===== the end: what needs a reboot, what did not complete, where the undo script is =====",
             "finish"]
    rebuild = context.rebuild_line()
    preamble = runtime(INROOT, context.regenerate, [rebuild] if rebuild else [])
    out = _header(report, addressed) + [preamble + INROOT + HOST_GUARD + script_devices.DEVICE_FUNCTIONS] + body
    return context.files.finish("\n".join(out) + "\n")


def _block(name: str, lines: List[str], context, marks: bool = True) -> List[str]:
    """One fix as a function run by the runtime's ``block``: its failure stops it and nothing else."""
    context.blocks += 1
    function = f"fix_{context.blocks}"
    code = [line if isinstance(line, Raw) else ("    " + line if line else "") for line in lines]
    if not any(line.strip() and not line.lstrip().startswith("#") for line in lines):
        code.append("    :")
    out = [f"{function}() {{"] + code + ["}", f"block {shlex.quote(name)} {function}"]
    if marks:
        out = [f"# BEGIN {name}"] + out + [f"# END {name}"]
    return out + [""]


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
        except (UnsafeValue, EditError) as exc:
            body = _manual(finding, step, f"refused: {exc}")
    return body if body is not None else _manual(finding, step)


def _action_key(action, context) -> str:
    """``json.dumps(action, sort_keys=True, default=str)``: what makes two steps the same.

    Kept per action object: one step shared by many findings (every target's ``vfio-ids`` step,
    :func:`scanner.remediation.persistent_binding.persistent_steps`, with the scan's whole list of addresses) is encoded
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
        from scanner.base.errors import UsageError

        raise UsageError("a remediation script is written for one host at a time")
    return render_report(reports[0], reports[0].fail_on)

