"""A built-in format's text written as it is made, and the one line when making it fails midway.

Light to import (``typing`` only): every command that writes an output, ``collect`` too, catches
:class:`StreamFailed`.
"""

from __future__ import annotations

from typing import Iterable, Iterator


class StreamFailed(Exception):
    """A built-in format failed while its text was being written: ``format 'NAME' from plugin P failed: WHY``."""


class Streamed:
    """A built-in format's text, made piece by piece while it is written (once: it is not kept).

    Why: the JSON and JUnit reports of a scan of thousands of targets run to a hundred megabytes;
    made whole before writing, they set the run's peak memory. A built-in renderer that offers
    ``render.pieces`` (same arguments, an iterator of text) is streamed: the pieces go straight into
    the temporary file that becomes the output (scanner/output/atomicwrite.py), or to stdout. Whatever
    must be checked before a byte is written (``--validate``) is checked when ``pieces`` is called,
    with the other formats, before anything is written. Should the renderer fail midway all the
    same (a bug), :class:`StreamFailed` says so in one line: an output file is left as it was, while
    stdout has had what came before.
    """

    def __init__(self, fmt: str, plugin: str, pieces: Iterable[str]):
        self.fmt, self.plugin, self._pieces = fmt, plugin, pieces

    def __iter__(self) -> Iterator[str]:
        from scanner.engine.runner import describe

        try:
            yield from self._pieces
        except (KeyboardInterrupt, GeneratorExit):
            raise
        except BaseException as exc:  # as the plugin guard takes it (scanner/engine/runner.py): an exit() too
            raise StreamFailed(f"format {self.fmt!r} from plugin {self.plugin} failed: {describe(exc)}") from exc
