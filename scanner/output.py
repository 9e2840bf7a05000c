"""Rendering reports in the asked formats, and validating JSON against the shipped schema."""

from __future__ import annotations

import json
from typing import Iterable, List, Sequence, Tuple

from scanner.report import Report


class InvalidReport(Exception):
    """The JSON document does not match its schema (a bug: reported, exit 3)."""


def load_schema(name: str) -> dict:
    from importlib import resources

    return json.loads(resources.files("schemas").joinpath(f"{name}.schema.json").read_text(encoding="utf-8"))


def validate_document(document: dict, schema_name: str = "report") -> None:
    import jsonschema

    validator = jsonschema.Draft202012Validator(load_schema(schema_name))
    errors = sorted(validator.iter_errors(document), key=lambda e: list(e.absolute_path))
    if errors:
        first = errors[0]
        where = "/" + "/".join(str(p) for p in first.absolute_path)
        raise InvalidReport(f"report does not match schemas/{schema_name}.schema.json at {where}: {first.message}")


def render_all(registry, reports: Sequence[Report], outputs: Iterable[Tuple[str, str]], verbose: bool = False,
               validate: bool = False) -> List[Tuple[str, str]]:
    """Render every (format, path) before anything is written, so one failure loses nothing."""
    options = {"verbose": verbose, "validate": validate}
    rendered = []
    for fmt, path in outputs:
        renderer = registry.formats[fmt].load()
        rendered.append((renderer(list(reports), options), path))
    return rendered
