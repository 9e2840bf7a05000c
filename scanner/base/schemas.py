"""The JSON Schemas shipped in the wheel (``schemas/``), loaded as validators.

Read from the installed package, never the network: a ``$ref`` to a sibling schema (fleet -> report)
resolves to the copy beside it. Every layer validates with them: the snapshot reader its input, the
JSON renderer its output, ``diff`` what it compares.
"""

from __future__ import annotations


def load_schema(name: str) -> dict:
    """The shipped schema ``schemas/NAME.schema.json``, as a dict.

    Read through the ``schemas`` package's own loader, which reads a file from a directory or a zip
    alike: ``importlib.resources`` would do the same after 8 ms of imports, paid by every scan of a
    snapshot (and by every worker of a fleet audit).
    """
    import json  # here: only validation reads a schema (the json format imports json itself)
    import os

    import schemas

    where = os.path.join(os.path.dirname(schemas.__file__), f"{name}.schema.json")
    return json.loads(schemas.__spec__.loader.get_data(where).decode("utf-8"))


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
