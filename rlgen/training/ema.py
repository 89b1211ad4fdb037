"""Exponential moving average of a model's weights (for sampling and evaluation).

Generative models sample better from averaged weights (DDPM, WGAN-GP with EMA);
the average lives in a frozen copy of the model, ``EMA.shadow``.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from rlgen.errors import InputError


class EMA(nn.Module):
    """A frozen copy of ``model`` whose weights track an exponential moving average.

    After each optimizer step, ``ema.update(model)`` does, for every floating
    parameter, ``shadow = d * shadow + (1 - d) * param``. With ``warmup`` the decay
    is ``d = min(decay, (1 + n) / (10 + n))`` after ``n`` earlier updates, so the
    average is not dominated by the random initial weights early in training.
    Buffers (e.g. BatchNorm statistics, already running averages) are copied.

    It is an ``nn.Module`` so that ``ema.to(device)`` works and its
    ``state_dict()`` (shadow weights plus the update count) can be saved with
    :func:`rlgen.training.save_checkpoint` like any module.

    Args:
        model: the live model; it is deep-copied once here.
        decay: the long-run decay in [0, 1).
        warmup: ramp the decay up from 0.1 as described above.
    """

    def __init__(self, model: nn.Module, decay: float = 0.999, warmup: bool = True) -> None:
        super().__init__()
        if not 0.0 <= decay < 1.0:
            raise InputError(f"EMA decay must be in [0, 1), got {decay!r}")
        self.decay = decay
        self.warmup = warmup
        self.num_updates = 0
        self.shadow = copy.deepcopy(model).eval().requires_grad_(False)

    def current_decay(self) -> float:
        """The decay the next ``update`` will use."""
        if not self.warmup:
            return self.decay
        return min(self.decay, (1 + self.num_updates) / (10 + self.num_updates))

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """Move the shadow weights toward ``model``'s current weights."""
        weight = 1.0 - self.current_decay()
        pairs = list(zip(self.shadow.parameters(), model.parameters(), strict=True))
        floats = [(s, p.detach()) for s, p in pairs if s.is_floating_point()]
        if floats:
            # One multi-tensor kernel instead of one launch per parameter (hundreds in a UNet).
            shadows, params = zip(*floats)
            torch._foreach_lerp_(list(shadows), list(params), weight)
        for shadow_p, p in pairs:
            if not shadow_p.is_floating_point():
                shadow_p.copy_(p)
        for shadow_b, b in zip(self.shadow.buffers(), model.buffers(), strict=True):
            shadow_b.copy_(b)
        self.num_updates += 1

    def forward(self, *args, **kwargs):
        """Run the averaged model."""
        return self.shadow(*args, **kwargs)

    def train(self, mode: bool = True) -> EMA:
        """Keep the shadow in eval mode: it is only used for inference."""
        super().train(mode)
        self.shadow.eval()
        return self

    def get_extra_state(self) -> torch.Tensor:
        # A tensor (not an int) so the state_dict stays all-tensor for safetensors.
        return torch.tensor(self.num_updates, dtype=torch.int64)

    def set_extra_state(self, state: torch.Tensor) -> None:
        self.num_updates = int(state)
