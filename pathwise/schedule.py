"""The learning-rate schedule: each rate falls linearly over the run (`lr_final_fraction`)."""

import torch

from pathwise.config import Config


class LearningRates:
    """Each optimizer group's rate at its configured value at learning_starts, falling linearly to
    lr_final_fraction of it at total_steps: a function of env steps alone, so a resumed run has the same rates."""

    def __init__(self, optimizers: list[torch.optim.Optimizer], config: Config):
        self.optimizers, self.config = optimizers, config
        # By position: loading an optimizer's state replaces its group dicts.
        self.base = [[float(group["lr"]) for group in o.param_groups] for o in optimizers]

    def at(self, env_steps: int) -> None:
        cfg = self.config
        if cfg.lr_final_fraction == 1.0:
            return
        progress = min(1.0, (env_steps - cfg.learning_starts) / max(1, cfg.total_steps - cfg.learning_starts))
        scale = 1.0 - (1.0 - cfg.lr_final_fraction) * progress
        for optimizer, base in zip(self.optimizers, self.base):
            for group, lr in zip(optimizer.param_groups, base):
                if isinstance(group["lr"], torch.Tensor):  # a CUDA graph's: it reads this tensor
                    group["lr"].fill_(lr * scale)
                else:
                    group["lr"] = lr * scale
