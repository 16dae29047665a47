"""Soft Actor-Critic: its three losses as pure functions, and the agent that owns networks and optimizers.

The actor is trained by the pathwise gradient: a = tanh(mu + sigma * eps) is sampled with rsample(), so the
actor loss alpha * log pi(a|s) - min_i Q_i(s, a) backpropagates through the action into mu and sigma.
"""

import copy
from dataclasses import dataclass
from typing import ClassVar

import torch

from pathwise.agents.batch import Batch
from pathwise.agents.hyperparams import ActorCriticConfig, MaxEntropyConfig, check, check_widths
from pathwise.agents.networks import Actor, QEnsemble
from pathwise.agents.scaffold import adam, grad_norms, polyak_


@dataclass(frozen=True)
class SACConfig(MaxEntropyConfig, ActorCriticConfig):
    """Soft Actor-Critic (Haarnoja et al. 2018) hyperparameters."""

    name: ClassVar[str] = "sac"

    hidden_sizes: tuple[int, ...] = (256, 256)
    """Hidden layer widths of the actor and of each critic, e.g. 256 256."""
    tau: float = 0.005
    """Polyak step of the target networks towards the networks at each target update (1 copies them)."""

    def __post_init__(self):
        super().__post_init__()
        self.check_entropy_fields()
        check_widths("hidden_sizes", self.hidden_sizes, self.network)
        check(0.0 <= self.tau <= 1.0, f"tau must lie in [0, 1], got {self.tau}.")

    def make_agent(self, obs_dim: int, act_dim: int, device: torch.device) -> "SAC":
        return SAC(obs_dim, act_dim, self, device)

    def make_actor(self, obs_dim: int, act_dim: int) -> Actor:
        return Actor(obs_dim, act_dim, self.hidden_sizes, self.log_std_min, self.log_std_max,
                     log_std_bound=self.log_std_bound, network=self.network)

    def make_critic(self, obs_dim: int, act_dim: int) -> QEnsemble:
        return QEnsemble(obs_dim, act_dim, self.hidden_sizes, self.num_critics, network=self.network)


def critic_loss(batch: Batch, actor: Actor, critic: QEnsemble, critic_target: QEnsemble,
                alpha: torch.Tensor) -> tuple[torch.Tensor, dict]:
    with torch.no_grad():
        next_action, next_log_prob = actor(batch.next_obs).rsample_and_log_prob()  # (B, A), (B,)
        next_q = critic_target(batch.next_obs, next_action).min(dim=0).values  # (B,) clipped double Q
        # Only a true terminal state stops bootstrapping; a time-limit truncation is stored with terminated=0.
        next_v = next_q - alpha * next_log_prob  # (B,)
        q_target = batch.reward + batch.discount * (1.0 - batch.terminated) * next_v  # (B,)
    q = critic(batch.obs, batch.action)  # (E, B)
    loss = 0.5 * (q - q_target).square().mean(dim=1).sum()
    return loss, {"critic_loss": loss.detach(), "q_mean": q.detach().mean()}


def actor_loss(obs: torch.Tensor, actor: Actor, q_fn, alpha: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, dict]:
    """`q_fn(obs, action) -> (E, B)`. Returns the loss, the detached log-probs (for the temperature) and info."""
    dist = actor(obs, train=True)
    action, log_prob = dist.rsample_and_log_prob()  # (B, A), (B,): differentiable in the actor's parameters
    q = q_fn(obs, action).min(dim=0).values  # (B,)
    loss = (alpha * log_prob - q).mean()
    log_prob = log_prob.detach()
    return loss, log_prob, {"actor_loss": loss.detach(), "entropy": -log_prob.mean(),
                            "log_std": dist.scale.detach().log().mean()}


def temperature_loss(log_alpha: torch.Tensor, log_prob: torch.Tensor, target_entropy: float,
                     form: str = "alpha") -> torch.Tensor:
    # J(alpha) = E[-alpha * (log pi + target_entropy)] (Haarnoja et al. 2018b, eq. 18): alpha grows while the
    # policy's entropy is below the target and shrinks while it is above. The log_alpha form has the same sign and
    # fixed point, but its gradient does not scale with alpha.
    scale = log_alpha if form == "log_alpha" else log_alpha.exp()
    return -(scale * (log_prob + target_entropy)).mean()


def init_temperature(config: MaxEntropyConfig, act_dim: int, device: torch.device) -> tuple[float, torch.Tensor]:
    """The target entropy (target_entropy_per_dim x act_dim unless set) and log_alpha, a trainable scalar unless
    alpha is fixed."""
    target_entropy = float(config.target_entropy_per_dim * act_dim if config.target_entropy is None
                           else config.target_entropy)
    alpha = config.init_alpha if config.alpha is None else config.alpha
    return target_entropy, torch.tensor(float(alpha), device=device).log().requires_grad_(config.alpha is None)


class SAC:
    name = "sac"
    # For the speed layer (pathwise/speed), which may run these methods compiled, under autocast or replayed
    # from CUDA graphs: the one computing the losses from tensors, and the one doing the whole gradient step.
    loss_methods = ("losses",)
    step_methods = ("update",)

    def __init__(self, obs_dim: int, act_dim: int, config: SACConfig, device: torch.device):
        self.config, self.device = config, device
        self.actor = config.make_actor(obs_dim, act_dim).to(device)
        self.critic = config.make_critic(obs_dim, act_dim).to(device)
        self.critic_target = copy.deepcopy(self.critic).requires_grad_(False)
        self.target_entropy, self.log_alpha = init_temperature(config, act_dim, device)
        self.autotune = config.alpha is None
        # One Adam for critics, actor and temperature, stepped once per update.
        groups = [{"params": list(self.critic.parameters()), "lr": config.critic_lr},
                  {"params": list(self.actor.parameters()), "lr": config.actor_lr}]
        if self.autotune:
            groups.append({"params": [self.log_alpha], "lr": config.alpha_lr})
        self.optimizer = adam(*groups)
        self._params = list(self.critic.parameters())
        self._target_params = list(self.critic_target.parameters())
        self.constants = {"train/target_entropy": self.target_entropy}  # logged by the trainer, not summed

    @property
    def alpha(self) -> torch.Tensor:
        return self.log_alpha.detach().exp()

    @torch.no_grad()
    def act(self, obs: torch.Tensor, deterministic: bool = False) -> torch.Tensor:
        dist = self.actor(obs)
        return dist.mode if deterministic else dist.sample()

    def _frozen_critic(self, obs: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        return self.critic(obs, action, frozen=True)

    def update(self, batch: Batch) -> dict[str, torch.Tensor]:
        """One gradient step on critics, actor and temperature together, then the Polyak step.

        The three losses depend on disjoint parameters (the critic loss runs the actor without gradients, the
        actor loss sees the critics' weights detached, the temperature loss sees only log_alpha), so one backward
        of their sum gives each part exactly its own gradient, all taken at the same parameters, as in the
        original SAC implementation's simultaneous update. Returns detached tensors; never syncs with the host.
        """
        loss, info = self.losses(batch, self.alpha)
        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()
        polyak_(self._target_params, self._params, self.config.tau)
        info["alpha"] = self.alpha
        return info

    def grad_norms(self) -> dict[str, torch.Tensor]:
        return grad_norms(critic=self.critic.parameters(), actor=self.actor.parameters())

    def _critic_loss(self, batch: Batch, alpha: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        return critic_loss(batch, self.actor, self.critic, self.critic_target, alpha)

    def losses(self, batch: Batch, alpha: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The sum of the three losses, and their diagnostics."""
        loss_q, info = self._critic_loss(batch, alpha)
        loss_pi, log_prob, actor_info = actor_loss(batch.obs, self.actor, self._frozen_critic, alpha)
        info.update(actor_info)
        loss = loss_q + loss_pi
        if self.autotune:
            loss_alpha = temperature_loss(self.log_alpha, log_prob, self.target_entropy, self.config.temperature_loss)
            info["alpha_loss"] = loss_alpha.detach()
            loss = loss + loss_alpha
        return loss, info

    def state_dict(self) -> dict:
        return {"actor": self.actor.state_dict(), "critic": self.critic.state_dict(),
                "critic_target": self.critic_target.state_dict(), "log_alpha": self.log_alpha.detach().clone(),
                "optimizer": self.optimizer.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.actor.load_state_dict(state["actor"])
        self.critic.load_state_dict(state["critic"])
        self.critic_target.load_state_dict(state["critic_target"])
        with torch.no_grad():
            self.log_alpha.copy_(state["log_alpha"])
        self.optimizer.load_state_dict(state["optimizer"])
