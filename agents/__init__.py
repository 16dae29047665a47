"""pathwise: continuous-control reinforcement learning with pathwise (reparameterized) policy gradients."""

from agents.policy import Policy, export_policy, load_policy

__version__ = "0.1.0"
__all__ = ["Policy", "export_policy", "load_policy"]
