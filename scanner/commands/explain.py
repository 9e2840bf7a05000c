"""``vfio-scan explain RULE``: what a rule checks, why it matters, how, and how to fix it.

A third-party plugin writes the title and docs shown here: they are escaped for the terminal
(scanner/base/terminal_text.py); the docs are rendered for the terminal (scanner/output/terminal_docs.py):
paragraphs reflowed to its width, markup turned into bold or colour on a colour terminal (plain
text elsewhere), literal blocks kept as written.
"""

from __future__ import annotations

import inspect
import sys

from scanner.base.errors import UsageError
from scanner.commands.common import add_plugin_arguments, load_registry
from scanner.base.terminal_text import for_terminal


def add_arguments(parser) -> None:
    parser.add_argument("rule", metavar="RULE", help="a rule id (VFIO-004) or name (kernel-cmdline)")
    add_plugin_arguments(parser)


def run(options) -> int:
    registry = load_registry(options.strict_plugins)
    wanted = options.rule.strip()
    for rule in registry.sorted_rules():
        if wanted.upper() == rule.id or wanted.lower() == rule.name:
            print(for_terminal(f"{rule.id} {rule.name} — {rule.title}"))
            print(for_terminal(f"scope: {rule.scope} · severity: {rule.severity} · from: {rule.plugin}"))
            print()
            from scanner.output.terminal_docs import render_docs
            from scanner.output.terminal_style import output_width, use_color

            sys.stdout.write(render_docs(inspect.cleandoc(rule.docs), output_width(), use_color()))
            return 0
    raise UsageError(f"no rule {wanted!r} (see 'vfio-scan rules')")
