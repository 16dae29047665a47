"""The training metrics of one log interval: the updates' diagnostics summed on the device (no host sync until
the interval ends), the episodes that ended, and where the time went."""

import math

import numpy as np
import torch


class IntervalMetrics:
    def __init__(self):
        self.reset()

    def reset(self) -> None:
        self.sums: dict[str, torch.Tensor] = {}
        self.updates = 0
        self.episodes: list[tuple[float, int, float | None]] = []  # (return, length, success or None)
        self.time_env = self.time_update = 0.0

    def add_update(self, info: dict[str, torch.Tensor]) -> None:
        if self.sums.keys() == info.keys():  # one fused add: on a GPU, one launch instead of one per metric
            torch._foreach_add_(list(self.sums.values()), [info[key] for key in self.sums])
        else:
            for key, value in info.items():
                self.sums[key] = self.sums[key] + value if key in self.sums else value.clone()
        self.updates += 1

    def collect(self, extra_tensors: dict[str, torch.Tensor]) -> tuple[dict[str, float], list[str]]:
        """The interval's figures as floats, with `extra_tensors` (read as they are, e.g. gradient norms) beside
        the updates' means, all in one transfer; and the names of those that are not finite. Starts a new
        interval."""
        busy = max(self.time_env + self.time_update, 1e-9)
        metrics: dict[str, float] = {"time/env_fraction": self.time_env / busy}
        bad: list[str] = []
        if self.sums:
            means = {k: v / self.updates for k, v in self.sums.items()}
            means.update(extra_tensors)
            values = dict(zip(means, torch.stack(list(means.values())).tolist()))
            metrics.update({f"train/{k}": v for k, v in values.items()})
            bad = [k for k, v in values.items() if not math.isfinite(v)]
        if self.episodes:
            returns, lengths, successes = zip(*self.episodes)
            metrics["train/episode_return"] = float(np.mean(returns))
            metrics["train/episode_length"] = float(np.mean(lengths))
            said = [s for s in successes if s is not None]
            if said:
                metrics["train/success_rate"] = float(np.mean(said))
        self.reset()
        return metrics, bad
