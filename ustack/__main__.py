"""`python -m ustack` runs the CLI."""

import sys

from ustack.cli import main

sys.exit(main())
