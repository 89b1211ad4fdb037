"""A tqdm progress bar that a hot training loop can update every step.

Postfix values (loss, return, ...) are formatted only when the bar is about to
be redrawn, a few times per second, so passing a GPU tensor costs a sync only
then, and the loop is not slowed by string formatting.
"""

from __future__ import annotations

import time
from typing import Any

import torch
from tqdm.auto import tqdm

_REFRESH_SECONDS = 0.25


def format_value(value: Any) -> str:
    """Show a postfix value compactly: floats to 4 significant digits, one-element tensors as floats."""
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        value = value.item()
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


class ProgressBar:
    """Progress over ``total`` units with a compact, rate-limited postfix.

    Args:
        total: number of units (steps, epochs) in the run.
        desc: the label on the left.
        unit: the unit name shown in the rate.
        disable: True hides the bar, False always shows it, None shows it only
            when stderr is a terminal (so log files stay clean).
    """

    def __init__(self, total: int, desc: str, unit: str = "step", disable: bool | None = None) -> None:
        self._bar = tqdm(
            total=total, desc=desc, unit=unit, disable=disable, dynamic_ncols=True, mininterval=_REFRESH_SECONDS
        )
        self._n = 0  # counted here too: a disabled tqdm does not count
        self._postfix: dict[str, Any] = {}
        self._last_postfix = -float("inf")

    @property
    def n(self) -> int:
        """Units done so far."""
        return self._n

    @property
    def postfix(self) -> str:
        """The postfix text last shown."""
        return self._bar.postfix or ""

    def update(self, n: int = 1, **postfix: Any) -> None:
        """Advance by ``n`` units; keyword arguments replace the shown values of the same names."""
        self._n += n
        if postfix and not self._bar.disable:
            self._postfix.update(postfix)
            now = time.monotonic()
            if now - self._last_postfix >= _REFRESH_SECONDS:
                self._last_postfix = now
                self._show_postfix()
        self._bar.update(n)

    def _show_postfix(self) -> None:
        text = ", ".join(f"{key}={format_value(value)}" for key, value in self._postfix.items())
        self._bar.set_postfix_str(text, refresh=False)

    def close(self) -> None:
        """Show the latest values and finish the bar."""
        if self._postfix:
            self._show_postfix()
        self._bar.close()

    def __enter__(self) -> ProgressBar:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()
