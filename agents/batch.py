"""What the losses read: a batch of transitions, as the replay buffer samples it."""

from typing import NamedTuple

import torch


class Batch(NamedTuple):
    obs: torch.Tensor  # (B, O)
    action: torch.Tensor  # (B, A), in [-1, 1]
    reward: torch.Tensor  # (B,): with n-step returns, the discounted sum of up to n rewards
    next_obs: torch.Tensor  # (B, O): the true observation the return ends in, also at a time-limit truncation
    terminated: torch.Tensor  # (B,): 1.0 only where the return ends in a true terminal state: no bootstrap
    discount: torch.Tensor  # (B,): gamma ** k for a k-step return, the factor on the bootstrapped value
