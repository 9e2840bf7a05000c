"""Getting reports out: the asked formats rendered, then written whole or not at all.

``formats`` renders every output before anything is written and validates JSON against its
schema; ``streaming`` writes a big built-in format as it is made; ``atomicwrite`` puts a file in
place whole; ``terminal_style`` and ``terminal_docs`` fit human output to a terminal. The
renderers themselves are in the top-level ``reports`` package.

May import: scanner.base, scanner.facts, scanner.engine.model, scanner.engine.
"""
