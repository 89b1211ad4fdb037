"""The WGAN-GP gradient penalty (Gulrajani et al., 2017, eq. 3)."""

from __future__ import annotations

import torch


def interpolate(real: torch.Tensor, fake: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
    """Random points x_hat = eps * real + (1 - eps) * fake, as a leaf that records its gradient.

    Args:
        real, fake: (B, *shape); ``fake`` detached from the generator.
        eps: (B, 1, ...) weights in [0, 1], one per example (Algorithm 1, line 4).
    """
    eps = eps.to(device=real.device, dtype=real.dtype)
    return (eps * real + (1.0 - eps) * fake).requires_grad_(True)  # (B, *shape)


def gradient_penalty(scores: torch.Tensor, x_hat: torch.Tensor, weight: float = 10.0) -> torch.Tensor:
    """lambda * E[(||grad_x D(x_hat)||_2 - 1)^2] from the critic's scores (B,) at the points ``x_hat``.

    The scores may come out of one critic pass over a larger batch that contains
    ``x_hat`` (the training loop scores real, fake and x_hat together), as long as the
    critic scores each example on its own (no batch norm).

    Returns:
        A scalar kept in the graph (``create_graph=True``) so the critic step descends it.
    """
    (grad,) = torch.autograd.grad(scores.sum(), x_hat, create_graph=True)
    # The small constant keeps the norm differentiable where the gradient is exactly zero.
    norm = torch.sqrt(grad.float().flatten(1).pow(2).sum(dim=1) + 1e-12)  # (B,)
    return weight * (norm - 1.0).pow(2).mean()
