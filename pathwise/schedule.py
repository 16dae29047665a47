"""The learning-rate schedule: each rate falls linearly over the run, or over its first `lr_decay_steps`
(`lr_final_fraction`)."""

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
        end = cfg.lr_decay_steps or cfg.total_steps
        progress = min(1.0, (env_steps - cfg.learning_starts) / max(1, end - cfg.learning_starts))
        scale = 1.0 - (1.0 - cfg.lr_final_fraction) * progress
        for optimizer, base in zip(self.optimizers, self.base):
            for group, lr in zip(optimizer.param_groups, base):
                if isinstance(group["lr"], torch.Tensor):  # a CUDA graph's: it reads this tensor
                    group["lr"].fill_(lr * scale)
                else:
                    group["lr"] = lr * scale
