"""`python export.py --help`: the checkout's entry to `pathwise-export` (pathwise/commands/export.py)."""

import sys

from pathwise.commands.export import main

if __name__ == "__main__":
    sys.exit(main())
