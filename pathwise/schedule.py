"""The schedules over env steps: each learning rate falls linearly over the run, or over its first
`lr_decay_steps` (`lr_final_fraction`); the discount's horizon grows from `gamma_start` to the agent's gamma."""

import torch

from pathwise.config import Config


class LearningRates:
    """Each optimizer group's rate at its configured value at learning_starts, falling linearly to
    lr_final_fraction of it at lr_decay_steps (total_steps where that is 0), then held: a function of env steps
    alone, so a resumed run has the same rates."""

    def __init__(self, optimizers: list[torch.optim.Optimizer], config: Config):
        self.optimizers, self.config = optimizers, config
        # By position: loading an optimizer's state replaces its group dicts.
        self.base = [[float(group["lr"]) for group in o.param_groups] for o in optimizers]

    def at(self, env_steps: int) -> None:
        cfg = self.config
        if cfg.lr_final_fraction == 1.0:
            return
        scale = 1.0 - (1.0 - cfg.lr_final_fraction) * progress(env_steps, cfg.learning_starts,
                                                              cfg.lr_decay_steps or cfg.total_steps)
        for optimizer, base in zip(self.optimizers, self.base):
            for group, lr in zip(optimizer.param_groups, base):
                if isinstance(group["lr"], torch.Tensor):  # a CUDA graph's: it reads this tensor
                    group["lr"].fill_(lr * scale)
                else:
                    group["lr"] = lr * scale


def progress(env_steps: int, start: int, end: int) -> float:
    """How far `env_steps` is from `start` to `end`, in [0, 1]."""
    return min(1.0, max(0.0, (env_steps - start) / max(1, end - start)))


def discount(config: Config, env_steps: int) -> float:
    """The discount at `env_steps`: the agent's gamma, or with gamma_start one whose horizon 1 / (1 - discount)
    grows linearly from gamma_start's at learning_starts to gamma's at gamma_rise_steps (total_steps where that is
    0), then held; a function of env steps alone, so a resumed run has the same discount."""
    gamma = config.agent.gamma
    if not config.gamma_start:
        return gamma
    first, last = 1.0 / (1.0 - config.gamma_start), 1.0 / (1.0 - gamma)
    horizon = first + (last - first) * progress(env_steps, config.learning_starts,
                                                config.gamma_rise_steps or config.total_steps)
    return 1.0 - 1.0 / horizon
