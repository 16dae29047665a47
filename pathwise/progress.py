"""Progress on the console: a live bar on a terminal, a plain line every interval otherwise (CI, log files)."""

import sys
import time

from tqdm import tqdm


def format_duration(seconds: float) -> str:
    seconds = int(seconds)
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}h{m:02d}m{s:02d}s" if h else f"{m}m{s:02d}s" if m else f"{s}s"


class Progress:
    """Steps, speed, ETA and the latest figures. The ETA comes from the average speed of the learning phase (its
    evaluations included) from the first line that lies wholly in it: the random-action phase before
    `learning_starts` runs many times faster and would promise minutes for a run of hours, so until then the ETA
    says it is estimating."""

    def __init__(self, total: int, initial: int = 0, learning_starts: int = 0, stream=None):
        self.stream = stream or sys.stderr
        self.total, self.step, self.learning_starts = total, initial, learning_starts
        self.shown_time, self.shown_step = time.perf_counter(), initial
        self.last_rate = 0.0
        self.learning_since: tuple[float, int] | None = None  # (time, step) the learning phase's speed counts from
        self.eta = "estimating"
        self.bar = None
        if self.stream.isatty():
            # tqdm's own remaining time would mix the two phases' speeds: the ETA goes in the postfix instead.
            self.bar = tqdm(total=total, initial=initial, unit="step", file=self.stream, dynamic_ncols=True,
                            smoothing=0.05, bar_format="{l_bar}{bar}| {n_fmt}/{total_fmt} [{elapsed}, "
                                                       "{rate_fmt}{postfix}]")

    def advance(self, n: int) -> None:
        self.step += n
        if self.bar is not None:
            self.bar.update(n)

    def show(self, stats: dict[str, str]) -> None:
        """Called once per log interval (and after an evaluation) with the latest figures, e.g.
        {"return": "-160.2"}."""
        now = time.perf_counter()
        if self.step != self.shown_step:
            self.last_rate = (self.step - self.shown_step) / max(now - self.shown_time, 1e-9)
            if self.shown_step >= self.learning_starts:
                self.learning_since = self.learning_since or (self.shown_time, self.shown_step)
                rate = (self.step - self.learning_since[1]) / max(now - self.learning_since[0], 1e-9)
                self.eta = format_duration((self.total - self.step) / max(rate, 1e-9))
            self.shown_time, self.shown_step = now, self.step
        if self.bar is not None:
            self.bar.set_postfix({"ETA": self.eta, **stats}, refresh=False)
            return
        fields = [f"step {self.step:,}/{self.total:,}", f"{self.last_rate:.0f} steps/s", f"ETA {self.eta}"]
        fields += [f"{k} {v}" for k, v in stats.items()]
        print(" | ".join(fields), file=self.stream, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
