"""CrossQ (Bhatt et al., ICLR 2024): SAC without target networks, made stable by batch renormalization.

The critics normalize their inputs and hidden layers with batch renormalization, and (s, a) and (s', a') go through
them in one forward pass, so the statistics are those of both distributions; the bootstrap target is the detached
second half of that pass. The critics are wide (2048 x 2048), the actor is updated every third critic update, and
Adam runs with beta1 = 0.5. Defaults follow the paper and its tuned values in rl-baselines3-zoo's
hyperparams/crossq.yml and SBX (lr 1e-3, policy_delay 3, critics 2048 x 2048, actor 256 x 256, Adam beta1 0.5,
batch-norm momentum 0.99 in Flax's convention, i.e. 0.01 here, renormalization after 100k steps).
"""

import functools
from dataclasses import dataclass
from typing import ClassVar

import torch

from pathwise.agents.batch import Batch
from pathwise.agents.categorical import Bins, SymlogScalar
from pathwise.agents.hyperparams import ActorCriticConfig, MaxEntropyConfig, check, check_widths
from pathwise.agents.networks import Actor, BatchRenorm, QEnsemble, hidden_linears, project_to_unit_rows_
from pathwise.agents.sac import actor_loss, init_temperature, temperature_loss
from pathwise.agents.scaffold import adam, grad_norms


@dataclass(frozen=True)
class CrossQConfig(MaxEntropyConfig, ActorCriticConfig):
    """CrossQ (Bhatt et al. 2024) hyperparameters; defaults are the paper's tuned MuJoCo values."""

    name: ClassVar[str] = "crossq"

    actor_lr: float = 1e-3
    """Adam learning rate of the actor."""
    critic_lr: float = 1e-3
    """Adam learning rate of the critics."""
    alpha_lr: float = 1e-3
    """Adam learning rate of the entropy temperature."""
    actor_hidden_sizes: tuple[int, ...] = (256, 256)
    """Hidden layer widths of the actor."""
    critic_hidden_sizes: tuple[int, ...] = (2048, 2048)
    """Hidden layer widths of each critic (wide: batch-normalized critics gain from width, per the paper)."""
    policy_delay: int = 3
    """Critic updates per actor (and temperature) update."""
    adam_beta1: float = 0.5
    """Adam's beta1 for the actor and the critics."""
    batch_norm_momentum: float = 0.01
    """Weight of each batch in the running statistics of batch renormalization."""
    renorm_warmup_steps: int = 100_000
    """Training calls of each batch-renorm layer with plain batch norm before the renormalization starts."""
    weight_norm: bool = False
    """Keep each hidden unit's weights and bias at unit norm after every optimizer step (CrossQ + WN, Palenicek
    et al. 2025): the batch norm after it makes that free, and it keeps the effective learning rate from decaying
    as the weights grow, which high update ratios speed up. MLP networks only."""
    value_bins: int = 0
    """0: each critic outputs Q, fit by the squared TD error (the paper). 2 or more: a categorical critic, as XQC
    and SimbaV2 use: each critic outputs logits over this many bins evenly spaced in symlog(Q), fit by cross-entropy
    to the TD target encoded two-hot, and Q is the decoded value (agents/categorical.py); no reward scaling."""
    value_limit: float = 10.0
    """The bins' range in symlog space, [-value_limit, value_limit]: 10 holds returns up to 22,026 in size. With
    value_linear, in Q itself, and 0 there: a range that follows the rewards. With value_symlog, the range within
    which an output is read."""
    value_linear: bool = False
    """Bins evenly spaced in Q instead of in symlog(Q): finer where Q is large (a bin resolves the same difference
    of Q everywhere), over [-value_limit, value_limit], or with a value_limit of 0 over a range that follows the
    rewards: it widens to hold r / (1 - gamma) for every reward r the critics have been trained on."""
    value_smoothing: float = 0.0
    """0: the TD target encoded two-hot. Above 0: as a Gaussian of this width in bins over the bins (HL-Gauss;
    Farebrother et al. 2024 found 0.75 best)."""
    value_symlog: bool = False
    """A scalar critic that outputs symlog(Q), fit by the squared error to symlog of the TD target (DreamerV3's
    symlog regression): one scale for every task's returns, as the categorical critic has, with a scalar's loss.
    Not with value_bins."""

    def __post_init__(self):
        super().__post_init__()
        self.check_entropy_fields()
        check_widths("actor_hidden_sizes", self.actor_hidden_sizes, self.network)
        check_widths("critic_hidden_sizes", self.critic_hidden_sizes, self.network)
        check(self.policy_delay >= 1, f"policy_delay must be at least 1, got {self.policy_delay}.")
        check(0.0 <= self.adam_beta1 < 1.0, f"adam_beta1 must lie in [0, 1), got {self.adam_beta1}.")
        check(0.0 < self.batch_norm_momentum <= 1.0,
              f"batch_norm_momentum must lie in (0, 1], got {self.batch_norm_momentum}.")
        check(self.renorm_warmup_steps >= 0,
              f"renorm_warmup_steps must be zero or positive, got {self.renorm_warmup_steps}.")
        check(not self.weight_norm or self.network == "mlp",
              f"weight_norm needs the mlp network: the {self.network} network has no batch norm after every layer.")
        check(self.value_bins == 0 or self.value_bins >= 2,
              f"value_bins must be 0 (a scalar critic) or at least 2, got {self.value_bins}.")
        check(self.value_limit > 0 or (self.value_linear and self.value_limit == 0),
              f"value_limit must be positive (or 0 with value_linear: a range that follows the rewards), got "
              f"{self.value_limit}.")
        check(self.value_smoothing >= 0, f"value_smoothing must be zero or positive, got {self.value_smoothing}.")
        check(not (self.value_symlog and self.value_bins),
              "value_symlog is a scalar critic's; with value_bins the bins are already in symlog space.")
        check(not self.value_linear or self.value_bins, "value_linear places the bins of value_bins; set value_bins.")

    def make_agent(self, obs_dim: int, act_dim: int, device: torch.device) -> "CrossQ":
        return CrossQ(obs_dim, act_dim, self, device)

    def make_actor(self, obs_dim: int, act_dim: int) -> Actor:
        """Acting (train=False, the default) uses the running statistics, so a single observation is fine."""
        return Actor(obs_dim, act_dim, self.actor_hidden_sizes, self.log_std_min, self.log_std_max,
                     norm=self.norm(), log_std_bound=self.log_std_bound, network=self.network)

    def norm(self):
        return functools.partial(BatchRenorm, momentum=self.batch_norm_momentum,
                                 warmup_steps=self.renorm_warmup_steps)

    def value_head(self) -> Bins | SymlogScalar | None:
        """How the critics' outputs are read as Q and fit to the TD target; None: they are Q, fit by the squared
        error."""
        if self.value_bins:
            return Bins(self.value_bins, self.value_limit, self.value_smoothing, self.value_linear)
        return SymlogScalar(self.value_limit) if self.value_symlog else None


def critic_loss(batch: Batch, actor: Actor, critic: QEnsemble, alpha: torch.Tensor,
                head: Bins | SymlogScalar | None = None) -> tuple[torch.Tensor, dict]:
    """The critics in training mode, on (s, a) and (s', a') joined into one batch of 2B; no target network. The
    actor draws a' with its running statistics, as when acting. With a value `head`, the critics' outputs are read
    through it (logits over bins, or symlog(Q)) and fit by its loss to the same target."""
    with torch.no_grad():
        next_action, next_log_prob = actor(batch.next_obs).rsample_and_log_prob()  # (B, A), (B,)
    out = critic(torch.cat([batch.obs, batch.next_obs]), torch.cat([batch.action, next_action]),
                 train=True)  # (E, 2B), or (E, 2B, outputs) with a head
    q, next_q = out.chunk(2, dim=1)  # (E, B) each, or (E, B, outputs)
    with torch.no_grad():
        if head is not None:
            next_q = head.value(next_q)
        # Only a true terminal state stops bootstrapping; a time-limit truncation is stored with terminated=0.
        next_v = next_q.min(dim=0).values - alpha * next_log_prob  # (B,)
        q_target = batch.reward + batch.discount * (1.0 - batch.terminated) * next_v  # (B,)
    if head is None:
        loss = 0.5 * (q - q_target).square().mean(dim=1).sum()
    else:
        loss, q = head.loss(q, q_target), head.value(q.detach())
    return loss, {"critic_loss": loss.detach(), "q_mean": q.detach().mean()}


class CrossQ:
    name = "crossq"
    # For the speed layer (pathwise/speed): the methods computing losses from tensors (it may compile them and run
    # them under autocast), and the gradient steps' device work, which keeps no Python state (CUDA graphs).
    loss_methods = ("critic_losses", "actor_losses")
    step_methods = ("critic_step", "actor_step")

    def __init__(self, obs_dim: int, act_dim: int, config: CrossQConfig, device: torch.device):
        self.config, self.device = config, device
        self.actor = config.make_actor(obs_dim, act_dim).to(device)
        self.head = config.value_head()
        if isinstance(self.head, Bins):
            self.head.to(device)
        self.critic = QEnsemble(obs_dim, act_dim, config.critic_hidden_sizes, config.num_critics,
                                norm=config.norm(), out_dim=config.value_bins or 1, network=config.network).to(device)
        # With weight normalization: the hidden layers projected once here, and after each of their steps.
        self.actor_linears = hidden_linears(self.actor) if config.weight_norm else []
        self.critic_linears = hidden_linears(self.critic) if config.weight_norm else []
        project_to_unit_rows_(self.actor_linears + self.critic_linears)
        self.target_entropy, self.log_alpha = init_temperature(config, act_dim, device)
        self.autotune = config.alpha is None
        betas = (config.adam_beta1, 0.999)
        self.critic_optimizer = adam({"params": list(self.critic.parameters()), "lr": config.critic_lr,
                                      "betas": betas})
        groups = [{"params": list(self.actor.parameters()), "lr": config.actor_lr, "betas": betas}]
        if self.autotune:  # the temperature keeps Adam's default betas, as in SBX
            groups.append({"params": [self.log_alpha], "lr": config.alpha_lr})
        self.actor_optimizer = adam(*groups)
        self.updates = 0  # a Python int: the policy delay costs no host sync
        self.constants = {"train/target_entropy": self.target_entropy}
        # The diagnostics of the last actor step: state of the update, reported on the critic-only steps between.
        self.last_actor_info: dict[str, torch.Tensor] = {}

    @property
    def alpha(self) -> torch.Tensor:
        return self.log_alpha.detach().exp()

    @torch.no_grad()
    def act(self, obs: torch.Tensor, deterministic: bool = False) -> torch.Tensor:
        dist = self.actor(obs)  # the running statistics, so a single observation is fine
        return dist.mode if deterministic else dist.sample()

    def _frozen_critic(self, obs: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        out = self.critic(obs, action, frozen=True)
        return out if self.head is None else self.head.value(out)

    def critic_losses(self, batch: Batch, alpha: torch.Tensor) -> tuple[torch.Tensor, dict]:
        return critic_loss(batch, self.actor, self.critic, alpha, self.head)

    def actor_losses(self, obs: torch.Tensor, alpha: torch.Tensor) -> tuple[torch.Tensor, dict]:
        """The actor loss, the actor normalizing by its batch's statistics (and moving its running ones) and the
        critics valuing its actions with their running statistics, as at evaluation; and the temperature's."""
        loss, log_prob, info = actor_loss(obs, self.actor, self._frozen_critic, alpha)
        if self.autotune:
            loss_alpha = temperature_loss(self.log_alpha, log_prob, self.target_entropy, self.config.temperature_loss)
            info["alpha_loss"] = loss_alpha.detach()
            loss = loss + loss_alpha
        return loss, info

    def update(self, batch: Batch) -> dict[str, torch.Tensor]:
        """A critic step every call; every policy_delay-th call (the first included, as in SBX) also an actor and
        temperature step, against the critics just updated. Returns detached tensors."""
        info = self.critic_step(batch)
        if self.updates % self.config.policy_delay == 0:
            self.last_actor_info = self.actor_step(batch.obs)
        self.updates += 1
        return {**info, **self.last_actor_info, "alpha": self.alpha}

    def critic_step(self, batch: Batch) -> dict[str, torch.Tensor]:
        if isinstance(self.head, Bins):
            self.head.widen(batch.reward, batch.discount)
        loss, info = self.critic_losses(batch, self.alpha)
        self.critic_optimizer.zero_grad()
        loss.backward()
        self.critic_optimizer.step()
        project_to_unit_rows_(self.critic_linears)
        if isinstance(self.head, Bins) and self.head.follows:
            info |= {"value_low": self.head.range[0].clone(), "value_high": self.head.range[1].clone()}
        return info

    def actor_step(self, obs: torch.Tensor) -> dict[str, torch.Tensor]:
        loss, info = self.actor_losses(obs, self.alpha)
        self.actor_optimizer.zero_grad()
        loss.backward()
        self.actor_optimizer.step()
        project_to_unit_rows_(self.actor_linears)
        return info

    def grad_norms(self) -> dict[str, torch.Tensor]:
        """The critics' from the last update, the actor's from the last actor step."""
        return grad_norms(critic=self.critic.parameters(), actor=self.actor.parameters())

    def state_dict(self) -> dict:
        return {"actor": self.actor.state_dict(), "critic": self.critic.state_dict(),
                "log_alpha": self.log_alpha.detach().clone(), "critic_optimizer": self.critic_optimizer.state_dict(),
                "actor_optimizer": self.actor_optimizer.state_dict(), "updates": self.updates,
                **({"value_range": self.head.range.clone()} if isinstance(self.head, Bins) else {})}

    def load_state_dict(self, state: dict) -> None:
        for name in ("actor", "critic", "critic_optimizer", "actor_optimizer"):
            getattr(self, name).load_state_dict(state[name])
        with torch.no_grad():
            self.log_alpha.copy_(state["log_alpha"])
        self.updates = state["updates"]
        if isinstance(self.head, Bins) and "value_range" in state:
            self.head.range.copy_(state["value_range"])
