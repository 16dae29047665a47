"""Stopping a run cleanly: Ctrl-C (SIGINT) or SIGTERM, which schedulers, Ray and a closing terminal send before a
kill, asks the loop to stop after the current step and save; a second signal stops at once."""

import contextlib
import signal
import threading

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


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
        previous = {s: signal.signal(s, self._handle) for s in STOP_SIGNALS}
        try:
            yield self
        finally:
            for s, handler in previous.items():
                signal.signal(s, handler)
