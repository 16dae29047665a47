"""`python evaluate.py --help`: the checkout's entry to `pathwise-evaluate` (pathwise/commands/evaluate.py)."""

import sys

from pathwise.commands.evaluate import main

if __name__ == "__main__":
    sys.exit(main())
