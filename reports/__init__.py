"""Built-in output formats. Registered by name only: a renderer module is imported when asked for.
Renderers are pure functions of reports: the only I/O they do is what :mod:`scanner.output` hands them.

May import: scanner.base, scanner.facts, scanner.engine.model, scanner.remediation, scanner.engine, scanner.output.
"""

from scanner import hookimpl

BUILTIN_FORMATS = (
    ("table", "reports.table_format:render", "human-readable table grouped by subject, with fixes"),
    ("json", "reports.json:render", "JSON document (schemas/report.schema.json)"),
    ("junit", "reports.junit:render", "JUnit XML for CI dashboards: one suite per host, passes included"),
    ("script", "reports.script:render", "bash remediation script: ordered, guarded, dry-run by default"),
    ("html", "reports.html:render", "one self-contained HTML page: verdict, hosts x rules grid, fixes, PCI tree pictures"),
    ("prometheus", "reports.prometheus:render", "metrics for node_exporter's textfile collector"),
    ("nfd", "reports.nfd:render", "node-feature-discovery feature file: Kubernetes node labels (one host)"),
)


@hookimpl
def vfio_scan_register_formats(register):
    for name, target, description in BUILTIN_FORMATS:
        register(name, target, description)
