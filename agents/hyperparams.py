"""What agents' config sections are made of: the fields the family shares, and the check that guards them.

Each agent declares its own section (a frozen dataclass) in its own file, from these parts; the run's config holds
the chosen agent's section. A bad value raises ValueError with one sentence, which the config layer passes on to
the user, naming where the value came from.
"""

from dataclasses import dataclass
from typing import Literal


def check(ok: bool, message: str) -> None:
    if not ok:
        raise ValueError(message)


@dataclass(frozen=True)
class ActorCriticConfig:
    """What every agent of the family has: an actor, an ensemble of critics, discounting."""

    num_critics: int = 2
    """Q networks in the critic ensemble; the target takes their minimum (clipped double Q)."""
    gamma: float = 0.99
    """Discount factor."""
    n_step: int = 1
    """Rewards in each critic target (n-step returns): the discounted sum of up to n rewards, then the bootstrap
    from the n-th next observation; fewer where the episode ends first."""
    actor_lr: float = 3e-4
    """Adam learning rate of the actor."""
    critic_lr: float = 3e-4
    """Adam learning rate of the critics."""
    network: Literal["mlp", "residual"] = "mlp"
    """Actor and critics: mlp, Linear-ReLU layers of the hidden sizes; residual, a linear layer to the width, one
    pre-norm residual block (norm, a 4x wider ReLU layer, back) per hidden size and a final norm, as SimBa and BRO
    (LayerNorm; CrossQ's batch renormalization in CrossQ). Residual needs equal hidden sizes."""

    def __post_init__(self):
        check(self.num_critics >= 1, f"num_critics must be at least 1, got {self.num_critics}.")
        check(0.0 <= self.gamma <= 1.0, f"gamma must lie in [0, 1], got {self.gamma}.")
        check(self.n_step >= 1, f"n_step must be at least 1, got {self.n_step}.")
        for name in ("actor_lr", "critic_lr"):
            check(getattr(self, name) > 0, f"{name} must be positive, got {getattr(self, name)}.")


@dataclass(frozen=True)
class MaxEntropyConfig:
    """A tanh-Gaussian actor and the entropy temperature of maximum-entropy RL (SAC and its kin)."""

    alpha_lr: float = 3e-4
    """Adam learning rate of the entropy temperature."""
    alpha: float | None = None
    """A fixed entropy temperature; none (the default) tunes it towards target-entropy."""
    init_alpha: float = 1.0
    """Initial entropy temperature when it is tuned."""
    target_entropy: float | None = None
    """Entropy the temperature is tuned towards; none means target-entropy-per-dim x action_dim."""
    target_entropy_per_dim: float = -1.0
    """The target entropy per action dimension, where target-entropy is none: -1 is SAC's -action_dim, -0.5
    SimBa's -action_dim / 2."""
    log_std_min: float = -5.0
    """Lower bound of the actor's log standard deviation."""
    log_std_max: float = 2.0
    """Upper bound of the actor's log standard deviation."""
    temperature_loss: Literal["alpha", "log_alpha"] = "alpha"
    """The temperature's loss: alpha, -alpha (log pi + target entropy), whose gradient shrinks with alpha
    (Haarnoja et al. 2018b; CleanRL); log_alpha, -log alpha (log pi + target entropy), SB3's and SBX's form."""
    log_std_bound: Literal["tanh", "clip"] = "tanh"
    """How the actor's log standard deviation is held to its bounds: tanh squashes the network's output into
    them (a std of 0.22 at initialization with the default bounds), clip cuts the output itself (a std near 1
    at initialization)."""

    def check_entropy_fields(self) -> None:
        for name in ("alpha_lr", "init_alpha"):
            check(getattr(self, name) > 0, f"{name} must be positive, got {getattr(self, name)}.")
        check(self.alpha is None or self.alpha >= 0, f"alpha must be non-negative, got {self.alpha}.")
        check(self.log_std_min < self.log_std_max,
              f"log_std_min must be below log_std_max, got {self.log_std_min} and {self.log_std_max}.")


def check_widths(name: str, widths: tuple[int, ...], network: str = "mlp") -> None:
    check(len(widths) > 0 and all(w > 0 for w in widths), f"{name} must be one or more positive widths, "
          f"got {list(widths)}.")
    check(network != "residual" or len(set(widths)) == 1,
          f"the residual network needs one width for all its blocks; {name} has {list(widths)}.")
