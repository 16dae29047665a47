"""`python train.py --help`: the checkout's entry to `pathwise-train` (pathwise/commands/train.py)."""

import sys

from pathwise.commands.train import main

if __name__ == "__main__":
    sys.exit(main())
