"""Ctrl-C that stops training cleanly: finish the step, save a checkpoint, exit.

Training loops run inside ``with GracefulInterrupt() as interrupt:`` and check
``interrupt.requested`` once per iteration.
"""

from __future__ import annotations

import logging
import signal
import threading
from types import FrameType

logger = logging.getLogger(__name__)


class GracefulInterrupt:
    """While active, the first SIGINT only sets ``requested``; a second one aborts.

    Signal handlers can only be installed from the main thread, so elsewhere
    this is a no-op and ``requested`` stays False.

    Attributes:
        requested: True once Ctrl-C was pressed.
    """

    def __init__(self) -> None:
        self.requested = False
        self._previous: signal.Handlers | None = None
        self._active = False

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        logger.warning("interrupt received: stopping after this step and saving a checkpoint (Ctrl-C again to abort)")

    def __enter__(self) -> GracefulInterrupt:
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.getsignal(signal.SIGINT)
            signal.signal(signal.SIGINT, self._handle)
            self._active = True
        return self

    def __exit__(self, *exc_info) -> None:
        if self._active:
            # getsignal gives None for a handler not installed from Python; the default is the safe choice then.
            previous = self._previous if self._previous is not None else signal.SIG_DFL
            signal.signal(signal.SIGINT, previous)
            self._active = False
