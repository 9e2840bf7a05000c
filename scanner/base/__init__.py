"""What every layer may use, and which uses nothing of vfio-scan in turn.

``lazyre`` (patterns compiled on first use), ``terminal_text`` (host text made safe to print),
``errors`` (the one bad-input error, exit 2), ``schemas`` (the shipped JSON Schemas as validators),
``gc_pause`` (cyclic GC paused at start-up and while a host's rules run), ``record`` (dataclass-like classes
that cost a tenth as much to define), ``cached`` (``functools.cached_property`` without 3.11's lock).

May import: nothing of vfio-scan.
"""
