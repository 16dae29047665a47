"""`python sweep.py --help`: the checkout's entry to `pathwise-sweep` (pathwise/commands/sweep.py)."""

import sys

from pathwise.commands.sweep import main

if __name__ == "__main__":
    sys.exit(main())
