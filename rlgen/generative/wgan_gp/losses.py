"""The WGAN-GP gradient penalty (Gulrajani et al., 2017, eq. 3)."""

from __future__ import annotations

from collections.abc import Callable

import torch


def gradient_penalty(
    critic: Callable[[torch.Tensor], torch.Tensor],
    real: torch.Tensor,
    fake: torch.Tensor,
    weight: float = 10.0,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """lambda * E[(||grad_x D(x_hat)||_2 - 1)^2] at random points x_hat between real and fake.

    Args:
        critic: maps (B, *shape) to scores (B,).
        real, fake: (B, *shape); ``fake`` should be detached from the generator.
        weight: lambda.
        generator: RNG for the interpolation weights (the global one when None).

    Returns:
        A scalar kept in the graph (``create_graph=True``) so the critic step descends it.
    """
    eps_shape = (real.shape[0],) + (1,) * (real.dim() - 1)
    eps = torch.rand(eps_shape, generator=generator, device=real.device if generator is None else generator.device)
    eps = eps.to(device=real.device, dtype=real.dtype)
    x_hat = (eps * real + (1.0 - eps) * fake).requires_grad_(True)  # (B, *shape)
    scores = critic(x_hat)
    (grad,) = torch.autograd.grad(scores.sum(), x_hat, create_graph=True)
    # The small constant keeps the norm differentiable where the gradient is exactly zero.
    norm = torch.sqrt(grad.float().flatten(1).pow(2).sum(dim=1) + 1e-12)  # (B,)
    return weight * (norm - 1.0).pow(2).mean()
