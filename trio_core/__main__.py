"""``python -m trio_core``: same as the ``trio-core`` console script."""

import sys

from trio_core.cli import main

sys.exit(main())
