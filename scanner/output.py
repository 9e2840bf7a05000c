"""Rendering reports in the asked formats, and validating JSON against the shipped schema."""

from __future__ import annotations

from typing import Iterable, List, Sequence, Tuple

from scanner.report import Report


class InvalidReport(Exception):
    """The JSON document does not match its schema (a bug: reported, exit 3)."""


def load_schema(name: str) -> dict:
    import json  # here: only validation reads a schema (the json format imports json itself)
    from importlib import resources

    return json.loads(resources.files("schemas").joinpath(f"{name}.schema.json").read_text(encoding="utf-8"))


def schema_validator(schema_name: str):
    """A validator for a shipped schema; ``$ref`` to a sibling (fleet -> report) resolves from the wheel, never the network."""
    import jsonschema

    schema = load_schema(schema_name)
    try:
        from referencing import Registry, Resource
    except ImportError:  # jsonschema < 4.18
        base = schema["$id"].rsplit("/", 1)[0] + "/"
        store = {base + f"{n}.schema.json": load_schema(n) for n in ("report", "fleet", "snapshot")}
        return jsonschema.Draft202012Validator(schema, resolver=jsonschema.RefResolver(schema["$id"], schema, store=store))
    resources = []
    for name in ("report", "fleet", "snapshot"):
        sibling = load_schema(name)
        resources.append((sibling["$id"], Resource.from_contents(sibling)))
    return jsonschema.Draft202012Validator(schema, registry=Registry().with_resources(resources))


def validate_document(document: dict, schema_name: str = "report") -> None:
    validator = schema_validator(schema_name)
    errors = sorted(validator.iter_errors(document), key=lambda e: list(e.absolute_path))
    if errors:
        first = errors[0]
        where = "/" + "/".join(str(p) for p in first.absolute_path)
        raise InvalidReport(f"report does not match schemas/{schema_name}.schema.json at {where}: {first.message}")


def render_all(registry, reports: Sequence[Report], outputs: Iterable[Tuple[str, str]], verbose: bool = False,
               validate: bool = False, fleet: bool = False) -> List[Tuple[str, str]]:
    """Render every (format, path) before anything is written, so one failure loses nothing.

    ``fleet``: render the merged many-host output (matrix table, JSON fleet document) even for
    one report -- what ``vfio-scan fleet`` promises a script; several reports always get it.
    """
    options = {"verbose": verbose, "validate": validate, "fleet": fleet or len(reports) > 1}
    rendered = []
    for fmt, path in outputs:
        renderer = registry.formats[fmt].load()
        rendered.append((renderer(list(reports), options), path))
    return rendered
