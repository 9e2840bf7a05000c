"""Rendering reports in the asked formats, and validating JSON against the shipped schema."""

from __future__ import annotations

from typing import Callable, Iterable, List, Optional, Sequence, Tuple, Union

from scanner.engine.report import Report
from scanner.output.streaming import StreamFailed, Streamed  # noqa: F401 (StreamFailed: part of this module's API)


class InvalidReport(Exception):
    """The JSON document does not match its schema (a bug: reported, exit 3)."""


class RenderFailed(InvalidReport):
    """Some formats could not be rendered: a renderer raised (anything: an exit(), a BaseException),
    overran its deadline or returned something other than text.

    ``str()`` is one line naming each format and the plugin that gave it. ``rendered`` holds the
    outputs that did render, for the caller to write before it exits 3; a caller that only knows
    :class:`InvalidReport` writes nothing and still exits 3.
    """

    def __init__(self, failures: List[str], rendered: List[Tuple[str, str]]):
        super().__init__("; ".join(failures))
        self.failures = failures
        self.rendered = rendered


Rendered = Union[str, Streamed]


def validate_document(document: dict, schema_name: str = "report") -> None:
    from scanner.base.schemas import schema_validator  # here: only validation loads jsonschema

    validator = schema_validator(schema_name)
    errors = sorted(validator.iter_errors(document), key=lambda e: list(e.absolute_path))
    if errors:
        first = errors[0]
        where = "/" + "/".join(str(p) for p in first.absolute_path)
        raise InvalidReport(f"report does not match schemas/{schema_name}.schema.json at {where}: {first.message}")


def render_all(registry, reports: Sequence[Report], outputs: Iterable[Tuple[str, str]], verbose: bool = False,
               validate: bool = False, fleet: bool = False) -> List[Tuple[Rendered, str]]:
    """Render every (format, path) before anything is written, so one failure loses nothing: each
    output's text, or for a built-in format that streams its text, a :class:`Streamed` ready to go.

    ``fleet``: render the merged many-host output (matrix table, JSON fleet document) even for
    one report -- what ``vfio-scan fleet`` promises a script; several reports always get it.

    Each renderer runs under the plugin guard (scanner/engine/runner.py); a third-party one also under
    ``VFIO_SCAN_PLUGIN_TIMEOUT`` -- not the built-ins, whose work grows with the fleet and has no
    fixed bound. A renderer that fails costs its own output only: :class:`RenderFailed` carries the rest.
    """
    from scanner.engine.runner import Deadline, PluginCrash, plugin_timeout

    options = {"verbose": verbose, "validate": validate, "fleet": fleet or len(reports) > 1}
    builtin = {p.name for p in registry.plugins if p.source == "builtin"}
    rendered, failures = [], []
    with Deadline(plugin_timeout()) as deadline:
        for fmt, path in outputs:
            spec = registry.formats[fmt]
            try:
                guard = Deadline() if spec.plugin in builtin else deadline
                output = guard.call(_render, spec, list(reports), dict(options, **_layout(path)),
                                    spec.plugin in builtin)
                rendered.append((output, path))
            except PluginCrash as crash:
                if isinstance(crash.__cause__, InvalidReport):  # --validate: the report itself is wrong
                    raise crash.__cause__ from None
                failures.append(f"format {fmt!r} from plugin {spec.plugin} failed: {crash}")
    if failures:
        raise RenderFailed(failures, rendered)
    return rendered


def preparer(registry, outputs: Iterable[Tuple[str, str]]) -> Optional[Callable[[Report], None]]:
    """What makes ahead, from one finished report, the parts of the asked built-in outputs that are
    that report's alone (``render.prepare``: a JUnit suite), into ``report.prepared``; None when no
    asked format has such parts.

    Why: a fleet's reports are made by worker processes (scanner/engine/hostpool.py); a part made
    there is made on every CPU, while the output itself is put together by one. A part that fails to
    be made is simply not there: the renderer then makes it itself, and says so if it fails again.
    """
    builtin = {p.name for p in registry.plugins if p.source == "builtin"}
    makers = {}
    for fmt, _ in outputs:
        spec = registry.formats.get(fmt)
        if spec is not None and spec.plugin in builtin:
            renderer = spec.load()
            if getattr(renderer, "prepare", None) is not None:
                makers[renderer.__module__] = renderer.prepare
    if not makers:
        return None

    def prepare(report: Report) -> None:
        for name, make in makers.items():
            try:
                report.prepared[name] = make(report)
            except Exception:  # the renderer, making it again, reports what went wrong
                report.prepared.pop(name, None)

    return prepare


def _layout(path: str) -> dict:
    """What a human output may assume about where it goes: on a terminal, its width and colour
    (scanner/output/terminal_style.py); in a file, 100 columns and no colour, whatever window made it."""
    if path not in (None, "-"):
        return {"width": 100, "color": False}
    from scanner.output.terminal_style import output_width, use_color

    return {"width": output_width(), "color": use_color()}


def _render(spec, reports: List[Report], options: dict, builtin: bool) -> Rendered:
    """One format's text, or its pieces to come for a built-in format that streams them; run under the
    guard, since even importing the renderer runs plugin code."""
    from scanner.engine.runner import PluginCrash

    renderer = spec.load()
    pieces = getattr(renderer, "pieces", None) if builtin else None
    if pieces is not None:
        return Streamed(spec.name, spec.plugin, pieces(reports, options))
    text = renderer(reports, options)
    if not isinstance(text, str):
        raise PluginCrash(f"returned a {type(text).__name__}, not text")
    return text
