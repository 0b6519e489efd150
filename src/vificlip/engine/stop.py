"""Graceful stop: the first SIGTERM/SIGINT ends training after the current optimiser step with a resumable
snapshot and exits with :data:`STOP_EXIT_CODES`; a second signal aborts at once (docs/engine.md)."""

from __future__ import annotations

import logging
import signal
import threading
from typing import Any

from ..data.loader import seed_worker
from ..errors import VificlipError

log = logging.getLogger(__name__)


# Exit status of a run stopped by a signal (the shell's 128 + signal number); the CLI returns it.
STOP_EXIT_CODES = {signal.SIGTERM: 143, signal.SIGINT: 130}


class TrainingStopped(VificlipError):
    """SIGTERM/SIGINT: the run saved a resumable snapshot and stopped; ``exit_code`` is 143 or 130."""

    def __init__(self, message: str, signum: int) -> None:
        super().__init__(message)
        self.exit_code = STOP_EXIT_CODES.get(signum, 128 + signum)


class StopSignals:
    """While active, the first SIGTERM/SIGINT asks training to stop after the current optimiser step; a second
    one aborts at once (KeyboardInterrupt). Only the main thread can install handlers; elsewhere it stays idle."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> StopSignals:
        if threading.current_thread() is threading.main_thread():
            for signum in STOP_EXIT_CODES:
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous.clear()

    def _handle(self, signum: int, frame: Any) -> None:
        if self.signum is not None:
            self.__exit__()
            raise KeyboardInterrupt(f"second signal ({signal.Signals(signum).name}): aborted")
        self.signum = signum
        log.warning("%s received: stopping after this optimiser step with a resumable checkpoint (send it "
                    "again to abort at once)", signal.Signals(signum).name)  # fmt: skip


def train_worker_init(worker_id: int) -> None:
    """Loader workers leave SIGINT/SIGTERM to the main process, which stops cleanly and shuts them down."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    seed_worker(worker_id)
