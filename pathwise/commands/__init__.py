"""The commands: `train.py` and its siblings in a checkout, `pathwise-train` and its siblings once installed."""
