"""`python -m shared` runs the `cdc` command line (same as `python -m shared.cli`)."""

import sys

from shared.cli import main

sys.exit(main())
