"""``python -m multimodalseg`` (Slicer runs ``PythonSlicer -m multimodalseg ...``)."""

import sys

from multimodalseg.cli import main

sys.exit(main())
