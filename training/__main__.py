"""``python -m training``: see :mod:`training.core.cli`."""

import sys

from training.core.cli import main

sys.exit(main())
