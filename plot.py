"""`python plot.py --help`: the checkout's entry to `pathwise-plot` (pathwise/commands/plot.py)."""

import sys

from pathwise.commands.plot import main

if __name__ == "__main__":
    sys.exit(main())
