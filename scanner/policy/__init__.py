"""Policies: what a host must look like, and the waivers that accept a known gap until a date.

``model`` is a policy and how it changes findings, ``waivers`` how a waiver applies; ``file``
reads a TOML or JSON policy file, ``schema`` validates it against ``schemas/policy.schema.json``
in one line, and ``toml`` finds the line each key is on, for the messages.

May import: scanner.base, scanner.host, scanner.facts, scanner.engine.model.
"""
