"""JSON output: one report, or the fleet document when several hosts were scanned."""

from __future__ import annotations

import json

from scanner.report import SCHEMA_VERSION


def document(reports) -> dict:
    if len(reports) == 1:
        return reports[0].to_dict()
    return {
        "schema_version": SCHEMA_VERSION,
        "hosts": [r.to_dict() for r in reports],
        "summary": {
            "hosts": len(reports),
            "readiness": {state: sum(1 for r in reports if r.readiness == state)
                          for state in ("READY", "READY_WITH_WARNINGS", "NOT_READY")},
        },
    }


def render(reports, options) -> str:
    doc = document(reports)
    if options.get("validate"):
        from scanner.output import validate_document

        validate_document(doc, "report" if len(reports) == 1 else "fleet")
    return json.dumps(doc, indent=2, ensure_ascii=False) + "\n"
