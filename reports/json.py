"""JSON output: one report, or the fleet document when several hosts were scanned.

The text is made piece by piece (:func:`pieces`), one finding at a time, so that a scan of thousands
of targets is written without its whole document or text in memory. Only ``--validate`` builds the
whole document first: the schema is checked against all of it before a byte is written.
"""

from __future__ import annotations

from typing import Iterator

from scanner.engine.report import SCHEMA_VERSION


def document(reports, fleet: bool = False) -> dict:
    """One report's document, or the fleet document (schemas/fleet.schema.json) for several hosts or ``fleet``."""
    if len(reports) == 1 and not fleet:
        return reports[0].to_dict()
    from scanner.engine.fleet_summary import fleet_summary

    return {
        "schema_version": SCHEMA_VERSION,
        "hosts": [r.to_dict() for r in reports],
        "summary": fleet_summary(reports),
    }


def streamed_document(reports, fleet: bool = False) -> dict:
    """:func:`document` with each report's findings, and a fleet's hosts, made only as they are written."""
    from reports.finding_json import written
    from reports.jsontext import Stream

    def one(report) -> dict:
        return report.to_dict_with(Stream(map(written, report.findings)))

    if len(reports) == 1 and not fleet:
        return one(reports[0])
    from scanner.engine.fleet_summary import fleet_summary

    return {
        "schema_version": SCHEMA_VERSION,
        "hosts": Stream(one(r) for r in reports),
        "summary": fleet_summary(reports),
    }


def pieces(reports, options) -> Iterator[str]:
    """The text of :func:`render` in pieces. ``--validate`` is checked here, before the first piece."""
    from reports.jsontext import iterdumps  # json.dumps(doc, indent=2, ensure_ascii=False), faster

    fleet = bool(options.get("fleet")) or len(reports) > 1
    if options.get("validate"):
        from scanner.output.formats import validate_document

        doc = document(reports, fleet)
        validate_document(doc, "fleet" if fleet else "report")
    else:
        doc = streamed_document(reports, fleet)
    return iterdumps(doc, end="\n")


def render(reports, options) -> str:
    return "".join(pieces(reports, options))


render.pieces = pieces  # what scanner/output/formats.py streams to the destination instead of the whole text
