"""TD3 (Fujimoto et al. 2018): a deterministic actor trained by the pathwise gradient of Q through its action,
clipped double-Q targets with target policy smoothing, and delayed policy and target updates."""

import copy
from dataclasses import dataclass

import torch

from agents.hyperparams import ActorCriticConfig, check, check_widths
from agents.networks import DeterministicActor, QEnsemble
from agents.replay_buffer import Batch
from agents.sac import grad_norms


@dataclass(frozen=True)
class TD3Config(ActorCriticConfig):
    """TD3 (Fujimoto et al. 2018) hyperparameters; defaults from the paper's published code."""

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
        check_widths("hidden_sizes", self.hidden_sizes)
        check(0.0 <= self.tau <= 1.0, f"tau must lie in [0, 1], got {self.tau}.")
        check(self.policy_delay >= 1, f"policy_delay must be at least 1, got {self.policy_delay}.")
        for name in ("policy_noise", "noise_clip", "exploration_noise"):
            check(getattr(self, name) >= 0, f"{name} must be zero or positive, got {getattr(self, name)}.")


def smoothed_target(batch: Batch, actor_target: DeterministicActor, critic_target: QEnsemble, gamma: float,
                    policy_noise: float, noise_clip: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(q_target (B,), next_action (B, A)): the target actor's action plus clipped noise (target policy
    smoothing), valued by the minimum over the target critics; only a terminal state stops bootstrapping."""
    with torch.no_grad():
        noise = (policy_noise * torch.randn_like(batch.action)).clamp(-noise_clip, noise_clip)
        next_action = (actor_target(batch.next_obs).mode + noise).clamp(-1.0, 1.0)
        next_q = critic_target(batch.next_obs, next_action).min(dim=0).values
        return batch.reward + gamma * (1.0 - batch.terminated) * next_q, next_action


class TD3:
    name = "td3"
    config_class = TD3Config

    def __init__(self, obs_dim: int, act_dim: int, config: TD3Config, device: torch.device,
                 precision: str = "fp32", compile: bool = False):
        self.config, self.device = config, device
        self.autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16")
        self.actor = self.make_actor(obs_dim, act_dim, config).to(device)
        self.actor_target = copy.deepcopy(self.actor).requires_grad_(False)
        self.critic = QEnsemble(obs_dim, act_dim, config.hidden_sizes, config.num_critics).to(device)
        self.critic_target = copy.deepcopy(self.critic).requires_grad_(False)
        self.critic_optimizer = torch.optim.Adam(self.critic.parameters(), lr=config.critic_lr, fused=True)
        self.actor_optimizer = torch.optim.Adam(self.actor.parameters(), lr=config.actor_lr, fused=True)
        self.updates = 0
        self.constants: dict[str, float] = {}
        self._last_actor_loss = torch.zeros((), device=device)
        self._params = list(self.critic.parameters()) + list(self.actor.parameters())
        self._target_params = list(self.critic_target.parameters()) + list(self.actor_target.parameters())
        if compile:
            torch._inductor.config.fallback_random = True
            self.update = torch.compile(self.update)

    @staticmethod
    def make_actor(obs_dim: int, act_dim: int, config: TD3Config) -> DeterministicActor:
        return DeterministicActor(obs_dim, act_dim, config.hidden_sizes, config.exploration_noise)

    @torch.no_grad()
    def act(self, obs: torch.Tensor, deterministic: bool = False) -> torch.Tensor:
        action = self.actor(obs)
        return action.mode if deterministic else action.sample()

    def update(self, batch: Batch) -> dict[str, torch.Tensor]:
        """A critic step every call; every policy_delay-th call also an actor step and the Polyak step of
        both targets. The counter is a Python int: no host sync."""
        cfg = self.config
        with self.autocast:
            q_target, _ = smoothed_target(batch, self.actor_target, self.critic_target, cfg.gamma,
                                          cfg.policy_noise, cfg.noise_clip)
            q = self.critic(batch.obs, batch.action)  # (E, B)
            loss_q = 0.5 * (q - q_target).square().mean(dim=1).sum()
        self.critic_optimizer.zero_grad(set_to_none=True)
        loss_q.backward()
        self.critic_optimizer.step()
        self.updates += 1
        if self.updates % cfg.policy_delay == 0:
            with self.autocast:
                # The pathwise gradient through a deterministic action: dQ/da * da/dtheta, from the first critic.
                loss_pi = -self.critic(batch.obs, self.actor(batch.obs).mode, frozen=True)[0].mean()
            self.actor_optimizer.zero_grad(set_to_none=True)
            loss_pi.backward()
            self.actor_optimizer.step()
            with torch.no_grad():
                torch._foreach_lerp_(self._target_params, self._params, cfg.tau)
            self._last_actor_loss = loss_pi.detach()
        return {"critic_loss": loss_q.detach(), "q_mean": q.detach().mean(), "actor_loss": self._last_actor_loss}

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
