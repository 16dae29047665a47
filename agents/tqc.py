"""TQC (Kuznetsov et al., ICML 2020): SAC with distributional critics whose overestimation is cut by truncation.

Each critic predicts n quantiles of the return. The target pools the quantiles of every target critic at (s', a'),
sorts them and drops the top `drop_per_critic` x critics, the atoms most likely overestimated; each critic's
quantiles are fit to the rest by the quantile Huber loss. The actor maximizes the mean of all quantiles. Everything
else (actor, temperature, the one simultaneous update, the Polyak step) is SAC's. Defaults are sb3-contrib's and
SBX's (2 critics of 25 quantiles, 2 dropped from each); the paper's MuJoCo runs use 5 critics.
"""

from dataclasses import dataclass
from typing import ClassVar

import torch

from pathwise.agents.batch import Batch
from pathwise.agents.hyperparams import check
from pathwise.agents.networks import Actor, QEnsemble
from pathwise.agents.sac import SAC, SACConfig


@dataclass(frozen=True)
class TQCConfig(SACConfig):
    """TQC (Kuznetsov et al. 2020) hyperparameters: SAC's, and the quantiles."""

    name: ClassVar[str] = "tqc"

    num_quantiles: int = 25
    """Quantiles of the return each critic predicts."""
    drop_per_critic: int = 2
    """Top quantiles dropped from the pooled target per critic (the truncation that curbs overestimation)."""

    def __post_init__(self):
        super().__post_init__()
        check(self.num_quantiles >= 1, f"num_quantiles must be at least 1, got {self.num_quantiles}.")
        check(0 <= self.drop_per_critic < self.num_quantiles,
              f"drop_per_critic must lie in [0, num_quantiles), got {self.drop_per_critic}.")

    def make_agent(self, obs_dim: int, act_dim: int, device: torch.device) -> "TQC":
        return TQC(obs_dim, act_dim, self, device)

    def make_critic(self, obs_dim: int, act_dim: int) -> QEnsemble:
        return QEnsemble(obs_dim, act_dim, self.hidden_sizes, self.num_critics, out_dim=self.num_quantiles,
                         network=self.network)


def quantile_huber_loss(quantiles: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """quantiles (E, B, N) at the midpoint fractions tau_i = (i + 0.5) / N, each fit to every target atom (B, T):
    the mean over all (member, sample, quantile, atom) of |tau_i - 1{u < 0}| * Huber_1(u), u = atom - quantile.
    The target is a constant: no gradient reaches it."""
    n = quantiles.shape[-1]
    tau = (torch.arange(n, device=quantiles.device, dtype=quantiles.dtype) + 0.5) / n  # (N,)
    delta = target.detach()[None, :, None, :] - quantiles[..., None]  # (E, B, N, T)
    huber = torch.where(delta.abs() <= 1.0, 0.5 * delta.square(), delta.abs() - 0.5)
    weight = (tau[:, None] - (delta < 0).to(delta.dtype)).abs()  # |tau - 1{u < 0}|: (N, 1) against (E, B, N, T)
    return (weight * huber).mean()


@torch.no_grad()
def target_atoms(batch: Batch, actor: Actor, critic_target: QEnsemble, alpha: torch.Tensor,
                 drop_per_critic: int) -> torch.Tensor:
    """(B, T): the target critics' quantiles at (s', a' ~ pi), pooled, sorted, the top E x drop_per_critic
    dropped, each made a soft value and bootstrapped; only a true terminal state stops the bootstrap."""
    next_action, next_log_prob = actor(batch.next_obs).rsample_and_log_prob()  # (B, A), (B,)
    next_z = critic_target(batch.next_obs, next_action)  # (E, B, N)
    pooled = next_z.permute(1, 0, 2).reshape(len(next_action), -1).sort(dim=1).values  # (B, E * N)
    kept = pooled[:, :pooled.shape[1] - drop_per_critic * next_z.shape[0]]  # (B, T)
    bootstrap = (batch.discount * (1.0 - batch.terminated))[:, None]  # (B, 1)
    return batch.reward[:, None] + bootstrap * (kept - alpha * next_log_prob[:, None])


def critic_loss(batch: Batch, actor: Actor, critic: QEnsemble, critic_target: QEnsemble, alpha: torch.Tensor,
                drop_per_critic: int, loss_fn=quantile_huber_loss) -> tuple[torch.Tensor, dict]:
    """`loss_fn`: quantile_huber_loss, or a kernel equal to it."""
    target = target_atoms(batch, actor, critic_target, alpha, drop_per_critic)  # (B, T)
    z = critic(batch.obs, batch.action)  # (E, B, N)
    loss = loss_fn(z, target)
    return loss, {"critic_loss": loss.detach(), "q_mean": z.detach().mean()}


class TQC(SAC):
    name = "tqc"
    # The critics' loss: the formula above, or a fused kernel equal to it that the speed layer puts here.
    quantile_loss = staticmethod(quantile_huber_loss)

    def _frozen_critic(self, obs: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        """The actor's Q: the mean over every critic's quantiles, as one row (1, B)."""
        return self.critic(obs, action, frozen=True).mean(dim=(0, 2))[None]

    def _critic_loss(self, batch: Batch, alpha: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        return critic_loss(batch, self.actor, self.critic, self.critic_target, alpha, self.config.drop_per_critic,
                           self.quantile_loss)
