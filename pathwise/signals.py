"""Stopping a run cleanly: Ctrl-C (SIGINT), SIGTERM (which Slurm, Kubernetes and Ray send before a kill) or SIGHUP
(a closing terminal; left alone under nohup, which ignores it) asks the loop to stop after the current step and
save; a second signal stops at once."""

import contextlib
import signal
import threading

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class StopRequest:
    """`signum` is the first stop signal received, or None."""

    def __init__(self):
        self.signum: int | None = None

    def __bool__(self) -> bool:
        return self.signum is not None

    def _handle(self, signum, frame):
        if self.signum is not None:
            raise KeyboardInterrupt
        self.signum = signum

    @contextlib.contextmanager
    def installed(self):
        """The handlers, for the duration of the block (only in the main thread, where Python allows them)."""
        if threading.current_thread() is not threading.main_thread():
            yield self
            return
        # A SIGHUP that is ignored (nohup) stays ignored: the user asked the run to outlive its terminal.
        previous = {s: signal.signal(s, self._handle) for s in STOP_SIGNALS
                    if s != signal.SIGHUP or signal.getsignal(s) is not signal.SIG_IGN}
        try:
            yield self
        finally:
            for s, handler in previous.items():
                signal.signal(s, handler)
