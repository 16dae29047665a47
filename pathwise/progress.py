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
    def __init__(self, total: int, initial: int = 0, stream=None):
        self.stream = stream or sys.stderr
        self.total, self.step = total, initial
        self.shown_time, self.shown_step = time.perf_counter(), initial
        self.last_rate = 0.0
        self.bar = None
        if self.stream.isatty():
            self.bar = tqdm(total=total, initial=initial, unit="step", file=self.stream, dynamic_ncols=True,
                            smoothing=0.05)

    def advance(self, n: int) -> None:
        self.step += n
        if self.bar is not None:
            self.bar.update(n)

    def show(self, stats: dict[str, str]) -> None:
        """Called once per log interval with the latest figures, e.g. {"return": "-160.2"}."""
        if self.bar is not None:
            self.bar.set_postfix(stats, refresh=False)
            return
        now = time.perf_counter()
        rate = (self.step - self.shown_step) / max(now - self.shown_time, 1e-9)  # since the last line
        if self.step == self.shown_step:
            rate = self.last_rate
        self.shown_time, self.shown_step, self.last_rate = now, self.step, rate
        eta = (self.total - self.step) / rate if rate > 0 else 0.0
        fields = [f"step {self.step:,}/{self.total:,}", f"{rate:.0f} steps/s", f"ETA {format_duration(eta)}"]
        fields += [f"{k} {v}" for k, v in stats.items()]
        print(" | ".join(fields), file=self.stream, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
