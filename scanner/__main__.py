"""``python -m scanner`` runs the same CLI as the ``vfio-scan`` console script.

May import: scanner.cli.
"""

import sys

from scanner.cli import main

sys.exit(main())
