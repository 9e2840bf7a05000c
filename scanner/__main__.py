"""``python -m scanner`` runs the same CLI as the ``vfio-scan`` console script."""

import sys

from scanner.cli import main

sys.exit(main())
