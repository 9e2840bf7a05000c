"""JSON output: one report, or the fleet document when several hosts were scanned."""

from __future__ import annotations

from scanner.report import SCHEMA_VERSION


def document(reports, fleet: bool = False) -> dict:
    """One report's document, or the fleet document (schemas/fleet.schema.json) for several hosts or ``fleet``."""
    if len(reports) == 1 and not fleet:
        return reports[0].to_dict()
    from scanner.fleet.summary import fleet_summary

    return {
        "schema_version": SCHEMA_VERSION,
        "hosts": [r.to_dict() for r in reports],
        "summary": fleet_summary(reports),
    }


def render(reports, options) -> str:
    fleet = bool(options.get("fleet")) or len(reports) > 1
    doc = document(reports, fleet)
    if options.get("validate"):
        from scanner.output import validate_document

        validate_document(doc, "fleet" if fleet else "report")
    from reports.jsontext import dumps  # json.dumps(doc, indent=2, ensure_ascii=False), faster

    return dumps(doc, end="\n")
