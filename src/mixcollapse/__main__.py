"""``python -m mixcollapse`` runs the command-line interface (torchrun uses this form)."""

import sys

from mixcollapse.cli import main

sys.exit(main())
