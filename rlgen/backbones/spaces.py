"""Input spaces: what one observation looks like, and raw observations to float features.

Backbones are built from a gymnasium space or a bare shape tuple (the
generative side has no spaces), so this module is the one place that turns
either into an ``InputSpec`` and checks tensors against it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import gymnasium
import torch
import torch.nn.functional as F

from rlgen.errors import InputError

SUPPORTED_SPACES = "a gymnasium Box, a gymnasium Discrete, or a shape tuple such as (4, 84, 84)"


@dataclass(frozen=True)
class InputSpec:
    """The shape of one observation as the backbone receives it.

    Attributes:
        shape: shape of one raw observation, () for Discrete.
        n_categories: for Discrete spaces the number of values; observations are then
            integer indices, one-hot encoded inside the backbone. None for Box / shapes.
    """

    shape: tuple[int, ...]
    n_categories: int | None = None

    @property
    def flat_dim(self) -> int:
        """Features per observation after flattening (or one-hot encoding)."""
        return self.n_categories if self.n_categories is not None else math.prod(self.shape)

    def describe(self) -> str:
        """``Discrete(n)`` or the shape tuple, for error messages."""
        return f"Discrete({self.n_categories})" if self.n_categories is not None else str(self.shape)


def input_spec(space: gymnasium.spaces.Space | tuple[int, ...]) -> InputSpec:
    """Turn a Box, a Discrete or a shape tuple into an ``InputSpec``; ``ValueError`` otherwise."""
    if isinstance(space, gymnasium.spaces.Discrete):
        if space.start != 0:
            raise InputError(f"Discrete observation spaces must start at 0 for one-hot encoding; got {space}")
        return InputSpec(shape=(), n_categories=int(space.n))
    if isinstance(space, gymnasium.spaces.Box):
        shape = tuple(int(d) for d in space.shape)
    elif isinstance(space, gymnasium.spaces.Space):
        raise InputError(
            f"backbones accept {SUPPORTED_SPACES}; got a {type(space).__name__} space {space}. "
            "Flatten it first (gymnasium.wrappers.FlattenObservation) or build one backbone per part."
        )
    elif isinstance(space, (tuple, list, torch.Size)) and all(
        isinstance(d, int) and not isinstance(d, bool) for d in space
    ):
        shape = tuple(space)
    else:
        raise InputError(f"backbones accept {SUPPORTED_SPACES}; got {space!r}")
    if any(d < 1 for d in shape):
        raise InputError(f"input shape {shape} has an empty dimension; every size must be >= 1")
    return InputSpec(shape=shape)


def check_input(x: torch.Tensor, spec: InputSpec, lead: int, who: str) -> None:
    """Raise ``ValueError`` unless ``x`` has shape (*lead dims, *spec.shape).

    Args:
        x: the raw input tensor.
        spec: what one observation looks like.
        lead: number of leading dims, 1 for (B, ...) and 2 for (B, T, ...).
        who: the backbone's name for the message.
    """
    if x.dim() != lead + len(spec.shape) or tuple(x.shape[lead:]) != spec.shape:
        names = "(B, T" if lead == 2 else "(B"
        expected = names + "".join(f", {d}" for d in spec.shape) + ")"
        what = f" integer indices of {spec.describe()}" if spec.n_categories is not None else ""
        raise InputError(f"{who} expects input of shape {expected}{what}; got {tuple(x.shape)}")


def flat_features(x: torch.Tensor, spec: InputSpec, lead: int, who: str) -> torch.Tensor:
    """(*lead, *obs_shape) raw observations -> (*lead, flat_dim) float features.

    Discrete indices are one-hot encoded. Box values are cast to float as they
    are (no 1/255 scaling: MinAtar grids and RAM vectors are not pixels).
    """
    check_input(x, spec, lead, who)
    if spec.n_categories is not None:
        return F.one_hot(x.long(), spec.n_categories).float()  # (*lead, n)
    x = x.reshape(*x.shape[:lead], -1)  # (*lead, flat_dim)
    return x if x.is_floating_point() and x.dtype != torch.float64 else x.float()
