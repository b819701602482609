"""``python -m pipeline_core``."""

import sys

from pipeline_core.cli import main

sys.exit(main())
