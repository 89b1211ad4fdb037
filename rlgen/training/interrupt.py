"""Ctrl-C and SIGTERM that stop training cleanly: finish the step, save a checkpoint, exit.

Training loops run inside ``with GracefulInterrupt() as interrupt:`` and check
``interrupt.requested`` once per iteration. SIGTERM (``kill``, ``docker stop``,
Slurm's time limit) is treated like Ctrl-C, since schedulers send it to ask a job
to stop and save.
"""

from __future__ import annotations

import logging
import signal
import threading
from types import FrameType

logger = logging.getLogger(__name__)

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class GracefulInterrupt:
    """While active, the first SIGINT / SIGTERM only sets ``requested``; a second one aborts at once.

    Signal handlers can only be installed from the main thread, so elsewhere
    this is a no-op and ``requested`` stays False.

    Attributes:
        requested: True once a stop was asked for.
        signal_name: the signal that asked (``"SIGINT"`` or ``"SIGTERM"``), None before.
    """

    def __init__(self) -> None:
        self.requested = False
        self.signal_name: str | None = None
        self._previous: dict[int, signal.Handlers | None] = {}
        self._active = False

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.requested:
            raise KeyboardInterrupt  # the second signal: stop now, without saving
        self.requested = True
        self.signal_name = signal.Signals(signum).name
        logger.warning(f"{self.signal_name} received: stopping after this step and saving a checkpoint "
                       "(send it again to abort without saving)")

    def __enter__(self) -> GracefulInterrupt:
        if threading.current_thread() is threading.main_thread():
            for sig in SIGNALS:
                self._previous[sig] = signal.getsignal(sig)
                signal.signal(sig, self._handle)
            self._active = True
        return self

    def __exit__(self, *exc_info) -> None:
        if self._active:
            for sig, previous in self._previous.items():
                # getsignal gives None for a handler not installed from Python; the default is the safe choice then.
                signal.signal(sig, previous if previous is not None else signal.SIG_DFL)
            self._active = False
