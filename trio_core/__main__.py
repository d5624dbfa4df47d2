"""``python -m trio_core``: same as the ``trio-core`` console script."""

import sys

from .cli import main

sys.exit(main())
