"""The one error every layer may raise for bad input found after parsing: the CLI makes it one line and exit 2.

It lives below everything that raises it (the snapshot list, plugin selection, the script format)
so that none of them imports the command line to say so.
"""


class UsageError(Exception):
    """Bad input found after parsing (a missing --root, an unknown format...): exit 2, one line."""
