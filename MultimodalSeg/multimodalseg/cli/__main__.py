import sys

from multimodalseg.cli import main

sys.exit(main())
