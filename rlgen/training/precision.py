"""Mixed precision: one object that knows whether autocast and loss scaling apply.

Training loops write ``with precision.autocast(): loss = ...`` and pass
``precision.scaler`` to :func:`rlgen.training.gradient_step`; both are no-ops where
the mode does not apply, so the loop reads the same on every device.
"""

from __future__ import annotations

import contextlib
import logging
from typing import ContextManager, Literal

import torch

from rlgen.errors import InputError

logger = logging.getLogger(__name__)

PrecisionMode = Literal["fp32", "bf16", "fp16"]
_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


class Precision:
    """Autocast and gradient scaling for one precision mode on one device.

    bf16 and fp16 autocast only run on CUDA (bf16 only on GPUs that support it);
    elsewhere the mode falls back to fp32 with a log message, because CPU
    autocast is usually slower than fp32 for the small models trained here.

    Attributes:
        mode: the requested mode.
        device: the training device.
        enabled: whether autocast actually runs.
        dtype: the autocast dtype (``torch.float32`` when disabled).
        scaler: a ``torch.amp.GradScaler`` for fp16 on CUDA (fp16 gradients
            underflow without it), else None.
    """

    def __init__(self, mode: PrecisionMode, device: torch.device) -> None:
        if mode not in ("fp32", "bf16", "fp16"):
            raise InputError(f"precision {mode!r} is not supported; use one of: fp32, bf16, fp16")
        self.mode = mode
        self.device = torch.device(device)
        on_cuda = self.device.type == "cuda" and torch.cuda.is_available()
        if mode == "bf16":
            self.enabled = on_cuda and torch.cuda.is_bf16_supported()
        else:
            self.enabled = mode == "fp16" and on_cuda
        if mode != "fp32" and not self.enabled:
            logger.info("precision %s is not available on %s; training in fp32", mode, self.device)
        self.dtype = _DTYPES[mode] if self.enabled else torch.float32
        self.scaler = torch.amp.GradScaler("cuda") if self.enabled and mode == "fp16" else None

    def autocast(self) -> ContextManager:
        """A context manager running the forward pass in the reduced dtype (or doing nothing)."""
        if not self.enabled:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.dtype)

    def __repr__(self) -> str:
        return f"Precision(mode={self.mode!r}, device={self.device}, enabled={self.enabled})"
