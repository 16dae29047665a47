"""pathwise: continuous-control reinforcement learning with pathwise (reparameterized) policy gradients."""

__version__ = "0.1.0"
