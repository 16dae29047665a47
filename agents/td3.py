"""TD3 (Fujimoto et al. 2018): a deterministic actor trained by the pathwise gradient of Q through its action,
clipped double-Q targets with target policy smoothing, and delayed policy and target updates."""

import copy
from dataclasses import dataclass
from typing import ClassVar

import torch

from pathwise.agents.batch import Batch
from pathwise.agents.hyperparams import ActorCriticConfig, check, check_widths
from pathwise.agents.networks import DeterministicActor, QEnsemble
from pathwise.agents.scaffold import adam, grad_norms, polyak_


@dataclass(frozen=True)
class TD3Config(ActorCriticConfig):
    """TD3 (Fujimoto et al. 2018) hyperparameters; defaults from the paper's published code."""

    name: ClassVar[str] = "td3"

    hidden_sizes: tuple[int, ...] = (256, 256)
    """Hidden layer widths of the actor and of each critic, e.g. 256 256."""
    tau: float = 0.005
    """Polyak step of the target networks towards the networks at each target update (1 copies them)."""
    policy_delay: int = 2
    """Critic updates per actor (and target) update."""
    policy_noise: float = 0.2
    """Standard deviation of the target policy smoothing noise, in the [-1, 1] action scale."""
    noise_clip: float = 0.5
    """Bound on the target policy smoothing noise."""
    exploration_noise: float = 0.1
    """Standard deviation of the Gaussian exploration noise, in the [-1, 1] action scale."""

    def __post_init__(self):
        super().__post_init__()
        check_widths("hidden_sizes", self.hidden_sizes, self.network)
        check(0.0 <= self.tau <= 1.0, f"tau must lie in [0, 1], got {self.tau}.")
        check(self.policy_delay >= 1, f"policy_delay must be at least 1, got {self.policy_delay}.")
        for name in ("policy_noise", "noise_clip", "exploration_noise"):
            check(getattr(self, name) >= 0, f"{name} must be zero or positive, got {getattr(self, name)}.")

    def make_agent(self, obs_dim: int, act_dim: int, device: torch.device) -> "TD3":
        return TD3(obs_dim, act_dim, self, device)

    def make_actor(self, obs_dim: int, act_dim: int) -> DeterministicActor:
        return DeterministicActor(obs_dim, act_dim, self.hidden_sizes, self.exploration_noise, self.network)


def critic_loss(batch: Batch, critic: QEnsemble, actor_target: DeterministicActor, critic_target: QEnsemble,
                config: TD3Config) -> tuple[torch.Tensor, dict]:
    """Clipped double Q with target policy smoothing: the target actor's action plus clipped noise, valued by
    the minimum over the target critics; only a true terminal state stops bootstrapping."""
    with torch.no_grad():
        noise = (config.policy_noise * torch.randn_like(batch.action)).clamp(-config.noise_clip, config.noise_clip)
        next_action = (actor_target(batch.next_obs).mode + noise).clamp(-1.0, 1.0)  # (B, A)
        next_q = critic_target(batch.next_obs, next_action).min(dim=0).values  # (B,)
        q_target = batch.reward + batch.discount * (1.0 - batch.terminated) * next_q  # (B,)
    q = critic(batch.obs, batch.action)  # (E, B)
    loss = 0.5 * (q - q_target).square().mean(dim=1).sum()
    return loss, {"critic_loss": loss.detach(), "q_mean": q.detach().mean()}


def actor_loss(obs: torch.Tensor, actor: DeterministicActor, critic: QEnsemble) -> torch.Tensor:
    """The pathwise gradient through a deterministic action, dQ/da * da/dtheta, from the first critic; the
    critics' weights get no gradient."""
    return -critic(obs, actor(obs).mode, frozen=True)[0].mean()


class TD3:
    name = "td3"
    # For the speed layer (pathwise/speed): the methods computing losses from tensors (it may compile them and run
    # them under autocast), and the gradient steps' device work, which keeps no Python state (CUDA graphs).
    loss_methods = ("critic_losses", "actor_losses")
    step_methods = ("critic_step", "actor_step")

    def __init__(self, obs_dim: int, act_dim: int, config: TD3Config, device: torch.device):
        self.config, self.device = config, device
        self.actor = config.make_actor(obs_dim, act_dim).to(device)
        self.actor_target = copy.deepcopy(self.actor).requires_grad_(False)
        self.critic = QEnsemble(obs_dim, act_dim, config.hidden_sizes, config.num_critics,
                                network=config.network).to(device)
        self.critic_target = copy.deepcopy(self.critic).requires_grad_(False)
        self.critic_optimizer = adam({"params": list(self.critic.parameters()), "lr": config.critic_lr})
        self.actor_optimizer = adam({"params": list(self.actor.parameters()), "lr": config.actor_lr})
        self.updates = 0  # a Python int: the policy delay costs no host sync
        self.constants: dict[str, float] = {}
        # The actor loss of the last actor step: state of the update, reported on the critic-only steps between.
        self.last_actor_loss = torch.zeros((), device=device)
        self._params = list(self.critic.parameters()) + list(self.actor.parameters())
        self._target_params = list(self.critic_target.parameters()) + list(self.actor_target.parameters())

    @torch.no_grad()
    def act(self, obs: torch.Tensor, deterministic: bool = False) -> torch.Tensor:
        action = self.actor(obs)
        return action.mode if deterministic else action.sample()

    def critic_losses(self, batch: Batch) -> tuple[torch.Tensor, dict]:
        return critic_loss(batch, self.critic, self.actor_target, self.critic_target, self.config)

    def actor_losses(self, obs: torch.Tensor) -> torch.Tensor:
        return actor_loss(obs, self.actor, self.critic)

    def update(self, batch: Batch) -> dict[str, torch.Tensor]:
        """A critic step every call; every policy_delay-th call also an actor step and the Polyak step of
        both targets."""
        self.updates += 1
        info = self.critic_step(batch)
        if self.updates % self.config.policy_delay == 0:
            self.last_actor_loss = self.actor_step(batch.obs)
        return {**info, "actor_loss": self.last_actor_loss}

    def critic_step(self, batch: Batch) -> dict[str, torch.Tensor]:
        loss, info = self.critic_losses(batch)
        self.critic_optimizer.zero_grad()
        loss.backward()
        self.critic_optimizer.step()
        return info

    def actor_step(self, obs: torch.Tensor) -> torch.Tensor:
        """The actor's step, then the Polyak step of both targets; the actor loss."""
        loss = self.actor_losses(obs)
        self.actor_optimizer.zero_grad()
        loss.backward()
        self.actor_optimizer.step()
        polyak_(self._target_params, self._params, self.config.tau)
        return loss.detach()

    def grad_norms(self) -> dict[str, torch.Tensor]:
        """The critics' from the last update, the actor's from the last actor step."""
        return grad_norms(critic=self.critic.parameters(), actor=self.actor.parameters())

    def state_dict(self) -> dict:
        return {"actor": self.actor.state_dict(), "actor_target": self.actor_target.state_dict(),
                "critic": self.critic.state_dict(), "critic_target": self.critic_target.state_dict(),
                "actor_optimizer": self.actor_optimizer.state_dict(),
                "critic_optimizer": self.critic_optimizer.state_dict(), "updates": self.updates}

    def load_state_dict(self, state: dict) -> None:
        for name in ("actor", "actor_target", "critic", "critic_target", "actor_optimizer", "critic_optimizer"):
            getattr(self, name).load_state_dict(state[name])
        self.updates = state["updates"]
