"""`python -m shared.ops` runs the `cdc` command line (same as `python -m shared.ops.cli`)."""

import sys

from shared.ops.cli import main

sys.exit(main())
